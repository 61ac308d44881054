"""`mtvr train sft|dgrpo|recipe` from the command line, and the recipe's chaining and skipping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from tests.train.conftest import demo_paths
from train.config import TrainConfigError, apply_overrides, load_config
from train.recipe import VITAL_STAGES, load_recipe, run_recipe
from train.runs import DONE_FILE

SMALL = {
    "frames": {"max_frames": 4},
    "rollout": {"max_new_tokens": 12, "max_total_tokens": 40},
    "args": {"max_steps": 1, "save_strategy": "no", "gradient_checkpointing": False, "report_to": []},
}


def test_recipe_chains_four_stages_and_a_rerun_skips_the_finished_ones(demo_dir, tmp_path):
    path = tmp_path / "recipe.yaml"
    stages = [
        {**s, "args": {"per_device_train_batch_size": 2 if s["kind"] == "sft" else 4, "num_generations": 2}}
        if s["kind"] == "dgrpo"
        else {**s, "args": {"per_device_train_batch_size": 2}}
        for s in VITAL_STAGES
    ]
    path.write_text(yaml.safe_dump({**demo_paths(demo_dir), "output_dir": "runs", "common": SMALL, "stages": stages}))
    recipe = load_recipe(path)
    assert [Path(s.output_dir).name for s in recipe.stages] == ["sft-text", "dgrpo-text", "sft-tool", "dgrpo-tool"]
    assert recipe.stages[0].model == str(demo_dir / "tiny")
    assert [s.model for s in recipe.stages[1:]] == [s.output_dir for s in recipe.stages[:-1]]
    assert Path(recipe.stages[0].output_dir).parent == tmp_path / "runs"  # relative to the YAML's folder
    assert [s.tools for s in recipe.stages] == [False, False, True, True]

    first = run_recipe(recipe)
    assert all(isinstance(v, dict) for v in first.values()), first
    for stage in recipe.stages:
        assert (Path(stage.output_dir) / DONE_FILE).is_file()
        assert (Path(stage.output_dir) / "model.safetensors").is_file()
    # Kill after stage 2: its marker and the later stages' outputs gone; the rerun redoes only what is missing.
    (Path(recipe.stages[3].output_dir) / DONE_FILE).unlink()
    second = run_recipe(recipe)
    assert second["sft-text"] == second["dgrpo-text"] == second["sft-tool"] == "skipped"
    assert isinstance(second["dgrpo-tool"], dict)


def test_cli_trains_sft_and_dgrpo_from_config_files(demo_dir, tmp_path, capsys):
    for kind in ("sft", "dgrpo"):
        path = tmp_path / f"{kind}.yaml"
        args = {**SMALL["args"], "per_device_train_batch_size": 2}
        if kind == "dgrpo":
            args.update(per_device_train_batch_size=4, num_generations=2)
        path.write_text(
            yaml.safe_dump({**demo_paths(demo_dir), **SMALL, "kind": kind, "output_dir": kind, "args": args})
        )
        assert main(["train", kind, str(path), "--set", "args.max_steps=1"]) == 0
        out = capsys.readouterr().out  # the trainer's progress logs, then the final metrics as indented JSON
        metrics = json.loads(out[out.rfind("{\n") :])
        assert metrics["train_loss"] == metrics["train_loss"]  # a number, not NaN
        assert (tmp_path / kind / DONE_FILE).is_file()


def test_config_errors_name_the_key(demo_dir, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**demo_paths(demo_dir), "kind": "sft", "output_dir": "x", "learning_rate": 1}))
    assert main(["train", "sft", str(path)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and str(path) in err and len(err.strip().splitlines()) == 1
    path.write_text(yaml.safe_dump({**demo_paths(demo_dir), "kind": "dgrpo", "output_dir": "x"}))
    assert main(["train", "sft", str(path)]) == 2
    capsys.readouterr()
    # vLLM rollouts asked for where vLLM is not installed: what to install or set, in one line
    assert main(["train", "dgrpo", str(path), "--set", "args.use_vllm=true"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mtvr[vllm]" in err[0] and str(path) in err[0]
    with pytest.raises(TrainConfigError, match="advantage"):
        load_config(path, ["advantage=ppo"])
    with pytest.raises(TrainConfigError, match="key=value"):
        apply_overrides({}, ["oops"])
    assert apply_overrides({"args": {"a": 1}}, ["args.b=2e-3", "tools=null"]) == {
        "args": {"a": 1, "b": 0.002},
        "tools": None,
    }


def test_by_kind_reaches_only_the_stages_of_that_kind(demo_dir, tmp_path):
    path = tmp_path / "recipe.yaml"
    tree = {**demo_paths(demo_dir), "output_dir": str(tmp_path / "runs"), "common": {"args": {"save_steps": 7}}}
    path.write_text(yaml.safe_dump(tree))
    recipe = load_recipe(path, ["by_kind.dgrpo.args.max_completion_length=99", "by_kind.sft.args.save_steps=9"])
    by_name = {Path(stage.output_dir).name: stage for stage in recipe.stages}
    assert [by_name[n].args.get("max_completion_length") for n in ("sft-text", "dgrpo-text", "dgrpo-tool")] == [
        None,
        99,
        99,
    ]
    assert by_name["sft-tool"].args["save_steps"] == 9 and by_name["dgrpo-text"].args["save_steps"] == 7
    with pytest.raises(TrainConfigError, match="by_kind"):
        load_recipe(path, ["by_kind.ppo.args.x=1"])
