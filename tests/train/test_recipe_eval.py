"""The recipe's `eval:` block (train.recipe_eval): the learning demo's recipe, a step a stage, 4 held-out questions."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from train.config import TrainConfigError
from train.recipe import load_recipe, run_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def learn_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learning demo's inputs (`pipelines.learn_demo.prepare`): random model, practice shards, held-out set."""
    from pipelines.learn_demo import prepare

    out = tmp_path_factory.mktemp("learn_demo")
    with contextlib.redirect_stdout(io.StringIO()):
        prepare(out)
    return out


def _eval_config(demo: Path, where: Path) -> Path:
    """configs/eval_learn_demo.yaml with its demo folder moved to `demo` (the file's own paths are `../demo/...`)."""
    text = (CONFIGS / "eval_learn_demo.yaml").read_text(encoding="utf-8").replace("../demo/", f"{demo}/")
    path = where / "eval_learn_demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _overrides(demo: Path, out: Path, eval_config: Path, *extra: str) -> list[str]:
    return [
        f"model={demo / 'tiny-random'}",
        f"data={demo / 'practice'}",
        f"video_root={demo / 'corpus' / 'videos'}",
        f"output_dir={out}",
        f"eval.config={eval_config}",
        *extra,
    ]


def test_recipe_with_eval_writes_a_row_per_checkpoint_and_the_reward_plot(learn_demo, tmp_path, capsys):
    out = tmp_path / "run"
    tiny = [  # 2 questions of each of the 2 benchmarks; DGRPO with G = 2, short turns, its one step saved (the plot)
        "eval.cap=2",
        "by_kind.dgrpo.args.save_steps=1",
        "by_kind.dgrpo.args.per_device_train_batch_size=4",
        "by_kind.dgrpo.args.num_generations=2",
        "by_kind.dgrpo.rollout.max_new_tokens=8",
    ]
    recipe = load_recipe(
        CONFIGS / "recipe_demo.yaml", _overrides(learn_demo, out, _eval_config(learn_demo, tmp_path), *tiny)
    )
    for stage in recipe.stages:
        stage.args["max_steps"] = 1  # the stages' own max_steps win over by_kind's; the test wants one step each
    results = run_recipe(recipe)

    learning = json.loads((out / "learning.json").read_text(encoding="utf-8"))
    checkpoints = ["start", "sft-text", "dgrpo-text", "sft-tool", "dgrpo-tool"]
    assert [r["checkpoint"] for r in learning["rows"] if r["setting"] == "tool_off"] == checkpoints
    assert {r["setting"] for r in learning["rows"]} == {"tool_off", "tool_on"}
    for row in learning["rows"]:
        assert row["n"] == 4
        assert 0.0 <= row["format_reward"] <= 1.0 and 0.0 <= row["task_reward"] <= 2.0
        assert set(row["metrics"]) == {"charades-sta mIoU", "longvideo-reason Acc"}
        assert (row["tool_call_rate"] is None) == (row["setting"] == "tool_off")
    start = learning["rows"][0]
    assert start["model"] == str(learn_demo / "tiny-random") and start["format_reward"] == 0.0  # random weights
    # each row's evaluation is `mtvr eval`'s own output folder
    assert (out / "eval" / "dgrpo-tool" / "table.json").is_file()
    assert results["learning"] == str(out / "learning.json")

    table = (out / "learning.md").read_text(encoding="utf-8")
    assert table.count("| start |") == 2 and "| dgrpo-tool |" in table and "format reward" in table
    assert table.split("\n", 2)[2] in capsys.readouterr().out  # printed at the end
    assert {p["stage"] for p in learning["dgrpo_rewards"]} == {"dgrpo-text", "dgrpo-tool"}
    assert (out / "dgrpo_reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"config": "eval_learn_demo.yaml", "tool": "on"}, "eval: unknown keys ['tool']"),
        ({"config": "eval_learn_demo.yaml", "tools": "sometimes"}, "eval.tools must be one of"),
        ({"config": "eval_learn_demo.yaml", "cap": 0}, "eval.cap must be a positive integer"),
        ({"config": "no_such_eval.yaml"}, "eval.config: no such file"),
        ("eval_learn_demo.yaml", "eval takes a mapping"),
    ],
)
def test_a_bad_eval_block_is_refused_when_the_recipe_is_read(block, message):
    with pytest.raises(TrainConfigError, match=re.escape(message)):
        load_recipe(CONFIGS / "recipe_demo.yaml", [f"eval={json.dumps(block)}"])


def test_stage_gains_over_all_questions_and_per_benchmark():
    """A stage's gain is its row minus the row before it; per benchmark too, where the tasks' changes can cancel."""
    from train.recipe_eval import stage_gains

    def row(name: str, tg: float, mcq: float) -> dict:
        return {"checkpoint": name, "setting": "tool_off", "task_reward": (tg + mcq) / 2,
                "task_reward_by_benchmark": {"tg": tg, "mcq": mcq}}  # fmt: skip

    rows = [row("start", 0.0, 0.0), row("sft", 0.2, 0.3), row("dgrpo", 0.4, 0.1)]
    assert stage_gains(rows) == pytest.approx({"sft": 0.25, "dgrpo": 0.0})
    assert stage_gains(rows, benchmark="tg") == pytest.approx({"sft": 0.2, "dgrpo": 0.2})
    assert stage_gains(rows, benchmark="mcq") == pytest.approx({"sft": 0.3, "dgrpo": -0.2})
    assert stage_gains(rows, setting="tool_on") == {}
