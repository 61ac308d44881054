"""The one model stage's cache: keys cover what the model saw, cached text is scored on read, and the model is named
portably, so a cached result is never stale, never lost to a moved folder, and never depends on batching."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import model.prompts
import mtvr_data.tools
from mtvr_data.frames import FrameBudget
from mtvr_data.schema import Sample
from pipelines.grading import GradeStage
from pipelines.stage_settings import GradeSettings
from tests.pipelines.test_grading import K, calls, run_grade, scripted, settings_for
from tests.pipelines.test_grading import samples as samples  # noqa: F401  (fixtures)
from tests.pipelines.test_grading import script as script  # noqa: F401

# --- keys ------------------------------------------------------------------------------------------------------------


def key_of(settings: GradeSettings) -> str:
    return GradeStage(call=settings, tools=True).key("sample-1").digest


def test_a_prompt_template_a_tool_schema_and_a_clip_budget_each_change_the_key(monkeypatch) -> None:
    settings = GradeSettings(engine=scripted())
    before = key_of(settings)
    assert key_of(GradeSettings(engine=scripted())) == before  # stable

    monkeypatch.setattr(model.prompts, "VIDEO_HEAD", model.prompts.VIDEO_HEAD + " Watch closely.")
    assert key_of(GradeSettings(engine=scripted())) != before
    monkeypatch.undo()

    schema = mtvr_data.tools.default_tools().schemas()[0]
    original = mtvr_data.tools.default_tools

    class Reworded(mtvr_data.tools.ToolRegistry):  # the same tool, its schema's description reworded
        def schemas(self):
            return [{**s, "description": str(s.get("description", "")) + " (in seconds)"} for s in super().schemas()]

    monkeypatch.setattr(model.prompts, "default_tools", lambda: Reworded(original().tools))
    assert model.prompts.PromptConfig().fingerprint_inputs()["tool_schemas"][0] != schema
    assert key_of(GradeSettings(engine=scripted())) != before
    monkeypatch.undo()

    assert key_of(GradeSettings(engine=scripted(), clip=FrameBudget(max_frames=16, min_frames=2))) != before
    assert key_of(GradeSettings(engine=scripted(), pass_rule={"tg_min_iou": 0.7})) == before  # scored on read


def test_the_model_is_named_by_content_not_by_path(tmp_path: Path) -> None:
    from model.settings import EngineConfig
    from model.tiny_checkpoint import build_tiny_checkpoint

    a = build_tiny_checkpoint(tmp_path / "a" / "tiny")
    b = tmp_path / "b" / "elsewhere"
    shutil.copytree(a, b)
    first = EngineConfig(kind="transformers", settings={"model": str(a)})
    moved = EngineConfig(kind="transformers", settings={"model": str(b)})
    assert first.identity == moved.identity and first.identity.startswith("sha256:")
    assert str(tmp_path) not in first.name
    retrained = tmp_path / "c"
    shutil.copytree(a, retrained)
    weights = next(retrained.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor
    weights.write_bytes(bytes(data))
    assert EngineConfig(kind="transformers", settings={"model": str(retrained)}).identity != first.identity
    hub = EngineConfig(kind="transformers", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "abc"})
    assert hub.identity == "Qwen/Qwen2.5-VL-7B-Instruct@abc"


# --- scoring on read -------------------------------------------------------------------------------------------------


def test_a_reward_change_rescores_cached_grades_with_no_model_call(
    tmp_path, demo_corpus, samples: list[Sample], script, monkeypatch
) -> None:
    import pipelines.model_stage as stage_module
    from mtvr_data.rewards import total_reward

    log = tmp_path / "calls.log"
    settings = settings_for(log, script, keep="all")
    out, videos = tmp_path / "out", demo_corpus / "videos"
    rows, _ = run_grade(samples[:7], settings, videos, out)
    made = len(calls(log))
    assert made > 0 and {r["pass_rate"] for r in rows} == {i / K for i in range(K + 1)}

    def lenient(sample, text, **kwargs):  # a "fixed" reward that now counts every answer as right
        breakdown = total_reward(sample, text, **kwargs)
        return dataclasses.replace(breakdown, detail=dataclasses.replace(breakdown.detail, passed=True))

    monkeypatch.setattr(stage_module, "total_reward", lenient)
    rescored, _ = run_grade(samples[:7], settings, videos, out)
    assert len(calls(log)) == made  # zero model calls: the cached text was scored again
    assert sorted(r["id"] for r in rescored) == sorted(r["id"] for r in rows)
    assert {r["pass_rate"] for r in rescored} == {1.0}


# --- whole builds with the tiny model generating ---------------------------------------------------------------------


def build_config(folder: Path, corpus: Path, tiny: Path, **grade: Any) -> Path:
    """A build-rl config in `folder` over two demo sources, graded by `tiny` at temperature 1 with a build seed."""
    ann, videos = corpus / "annotations", str(corpus / "videos")
    config = {
        "out": "build",
        "contamination": [],
        "sources": [
            {
                "source": "charades_sta",
                "annotations": str(ann / "charades_sta/charades_sta_train.txt"),
                "videos": videos,
            },
            {"source": "nextgqa", "annotations": str(ann / "nextgqa/train.csv"), "videos": videos},
        ],
        "grade": {
            "engine": {"kind": "transformers", "settings": {"model": str(tiny), "device": "cpu"}},
            "k": 2,
            "sampling": {"temperature": 1.0, "max_new_tokens": 12, "seed": 7},
            "rollout": {"tools": False},
            "frames": {"max_frames": 4},
            "keep": "all",
            **grade,
        },
        "balance": {"scale": 1.0, "seed": 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def shard_digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "rl").glob("*"))
    }


def cached_text(out: Path) -> dict[str, str]:
    """Every cache entry's file name -> its bytes (the key and the model's text)."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((out / "cache" / "grade").glob("*/*.json"))}


def grade_row(table: dict[str, Any]) -> dict[str, Any]:
    return next(row for row in table["stages"] if row["stage"] == "grade")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from model.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_batching_and_workers_do_not_change_the_text_or_the_shards(tmp_path, demo_corpus, tiny) -> None:
    from pipelines.build_rl import build_rl

    runs = [
        ({"batching": {"max_batch_size": 1}}, []),
        ({"batching": {"max_batch_size": 3}}, []),
        ({"batching": {"max_batch_size": 8}}, []),
        ({"batching": {"max_batch_size": 3}}, ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
        # streaming (the default) against the old batch-per-loop path, and a gate tighter than one request (n = K
        # sequences) with the longest-expected-first order across two Beam threads
        ({"batching": {"max_batch_size": 3, "streaming": False}}, []),
        (
            {"batching": {"max_batch_size": 2, "in_flight": 1, "ordering": "longest_first"}},
            ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
        ),
    ]
    texts, shards, tables = [], [], []
    for i, (grade, args) in enumerate(runs):
        folder = tmp_path / f"run{i}"
        table = build_rl(build_config(folder, demo_corpus, tiny, **grade), ["--runner=DirectRunner", *args])
        assert grade_row(table)["computed"] > 0 and grade_row(table).get("cached", 0) == 0
        texts.append(cached_text(folder / "build"))
        shards.append(shard_digests(folder / "build"))
        tables.append(table["stages"])
    assert texts[0] and all(t == texts[0] for t in texts[1:])
    assert shards[0] and all(s == shards[0] for s in shards[1:])
    assert all(t == tables[0] for t in tables[1:])  # the accounting too
    distinct = {v.split('"text": ')[1][:40] for v in texts[0].values() if '"text": ' in v}
    assert len(distinct) > 1  # the model really sampled (temperature 1), not one greedy string


def test_moving_the_build_and_the_checkpoint_keeps_every_hit_and_the_same_bytes(tmp_path, demo_corpus, tiny) -> None:
    from pipelines.build_rl import build_rl

    first_ckpt = tmp_path / "one" / "tiny"
    shutil.copytree(tiny, first_ckpt)
    table = build_rl(build_config(tmp_path / "one", demo_corpus, first_ckpt), ["--runner=DirectRunner"])
    computed = grade_row(table)["computed"]
    assert computed > 0
    before = shard_digests(tmp_path / "one" / "build")

    shutil.move(tmp_path / "one", tmp_path / "two")  # the checkout moves: build folder and checkpoint alike
    moved = tmp_path / "two"
    table = build_rl(build_config(moved, demo_corpus, moved / "tiny"), ["--runner=DirectRunner"])
    assert grade_row(table)["cached"] == computed and grade_row(table).get("computed", 0) == 0
    assert shard_digests(moved / "build") == before


def refuse_to_load(engine: Any) -> Any:
    raise AssertionError("a fully cached stage loaded a model")


def test_a_fully_cached_stage_loads_no_model(tmp_path, demo_corpus, samples: list[Sample], script) -> None:
    log = tmp_path / "calls.log"
    settings = settings_for(log, script)
    out, videos = tmp_path / "out", demo_corpus / "videos"
    readable = samples[:7]
    first = run_grade(readable, settings, videos, out)
    again = run_grade(readable, settings, videos, out, factory=refuse_to_load)  # would turn every sample into an error
    assert again == first and not any(d["reason"] == "grading_error" for d in again[1])
