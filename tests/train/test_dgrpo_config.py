"""DGRPOConfig: VITAL's defaults, typed knobs with help, errors that name the field, the YAML mapping onto it, and
a trainer that reads its knobs from it."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from trl import GRPOConfig

from tests.train.conftest import dgrpo_config
from train.config import DGRPO_ARGS, DGRPO_TOP_LEVEL, TrainConfigError, config_from_dict, load_config
from train.dgrpo_config import DGRPOConfig, grpo_kwargs

OWN_FIELDS = {f.name for f in dataclasses.fields(DGRPOConfig)} - {f.name for f in dataclasses.fields(GRPOConfig)}


def _config(tmp_path, **kwargs):
    return DGRPOConfig(output_dir=str(tmp_path), bf16=False, **kwargs)  # no bf16 on CPU (train.runs.cpu_safe)


def test_the_defaults_are_vitals_settings(tmp_path):
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(DGRPOConfig)
    }
    assert {k: defaults[k] for k in DGRPO_ARGS} == DGRPO_ARGS
    config = _config(tmp_path)
    assert (config.beta, config.num_train_epochs, config.max_completion_length) == (0.01, 1, 7168)
    assert (config.advantage, config.loss, config.lockstep, config.augment, config.dynamic_sampling) == (
        "dgrpo", "grpo", None, False, False,
    )  # fmt: skip


def test_every_own_field_has_help_and_is_set_from_yaml_at_the_top_level_or_under_args():
    assert set(DGRPO_TOP_LEVEL) | {"lockstep"} == OWN_FIELDS
    for f in dataclasses.fields(DGRPOConfig):
        if f.name in OWN_FIELDS or f.name in DGRPO_ARGS:
            assert f.metadata.get("help"), f.name
    assert "DGRPO default (VITAL): 0.01; TRL's: 0.0" in DGRPOConfig.__dataclass_fields__["beta"].metadata["help"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"advantage": "ppo"}, "DGRPOConfig.advantage must be one of ['dgrpo', 'grpo'], got 'ppo'"),
        ({"loss": "dpo"}, "DGRPOConfig.loss must be one of ['grpo', 'reg_grpo'], got 'dpo'"),
        ({"lockstep": "yes"}, "DGRPOConfig.lockstep must be true, false or null"),
        ({"reg_grpo_logp": "max"}, "reg_grpo.logp must be one of"),
        ({"reg_grpo_eps": 0.0}, "reg_grpo.eps must be > 0"),
        ({"dynamic_sampling": True, "dynamic_sampling_max_rounds": 0}, "dynamic_sampling.max_rounds must be >= 1"),
        ({"augment_kwargs": {"threshold": 0.3}}, "augment_kwargs is set but augment is false"),
        ({"augment": True, "augment_kwargs": {"treshold": 0.3}}, "augment_kwargs: unknown keys ['treshold']"),
        (
            {"loss": "reg_grpo", "per_device_train_batch_size": 2, "num_generations": 4, "steps_per_generation": 2},
            "per_device_train_batch_size (2) must be a multiple of num_generations (4)",
        ),
    ],
)
def test_a_bad_knob_is_refused_with_the_field_named(tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        _config(tmp_path, **kwargs)
    assert words in str(info.value)


def test_the_command_line_parses_the_knobs(tmp_path):
    from transformers import HfArgumentParser

    argv = ["--output_dir", str(tmp_path), "--bf16", "false", "--advantage", "grpo", "--lockstep", "false"]
    argv += ["--augment", "true", "--augment_kwargs", '{"window": 7}', "--dynamic_sampling", "true"]
    (config,) = HfArgumentParser(DGRPOConfig).parse_args_into_dataclasses(argv)
    assert (config.advantage, config.lockstep, config.dynamic_sampling) == ("grpo", False, True)
    assert config.augment_settings().window == 7
    assert config.dynamic_sampling_settings().max_rounds == 2


def test_the_yaml_layout_maps_onto_the_fields(tmp_path):
    tree = {
        "kind": "dgrpo", "model": "m", "data": "d", "output_dir": str(tmp_path), "loss": "reg_grpo",
        "reg_grpo": {"logp": "mean"}, "augment": {"threshold": 0.5}, "dynamic_sampling": {"max_rounds": 3},
        "args": {"lockstep": True, "per_device_train_batch_size": 8, "bf16": False},
    }  # fmt: skip
    args = config_from_dict(tree).trainer_args()
    config = DGRPOConfig(**args)
    assert (config.loss, config.reg_grpo_logp, config.beta, config.num_iterations) == ("reg_grpo", "mean", 0.1, 2)
    assert config.augment and config.augment_settings().threshold == 0.5
    assert config.dynamic_sampling_settings().max_rounds == 3 and config.lockstep is True
    plain = GRPOConfig(**grpo_kwargs(args))  # the baseline trainer's arguments: the same, less the DGRPO knobs
    assert (plain.beta, plain.num_iterations, plain.learning_rate) == (0.1, 2, 1e-6)


# --- `args:` keys are checked when the file is read ---------------------------------------------------------


def _write(tmp_path, args, kind="dgrpo"):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"kind": kind, "model": "m", "data": "d", "output_dir": "out", "args": args}))
    return path


@pytest.mark.parametrize(
    ("kind", "args", "words"),
    [
        ("dgrpo", {"learning_rat": 1e-6}, "args.learning_rat: unknown key, not a field of DGRPOConfig; did you mean"),
        ("dgrpo", {"loss": "reg_grpo"}, "args.loss: set `loss` as a top-level key of the config, not under args"),
        ("dgrpo", {"augment_kwargs": {}}, "args.augment_kwargs: set `augment` as a top-level key"),
        ("sft", {"num_generations": 8}, "args.num_generations: unknown key, not a field of SFTConfig"),
    ],
)
def test_an_unknown_args_key_names_the_key_and_the_file(tmp_path, kind, args, words):
    path = _write(tmp_path, args, kind)
    with pytest.raises(TrainConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {words}"), message
    assert "\n" not in message


def test_the_cli_reports_an_unknown_args_key_in_one_line(tmp_path, capsys):
    from pipelines.cli import main

    path = _write(tmp_path, {"max_step": 2})
    assert main(["train", "dgrpo", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err and "args.max_step: unknown key" in err and "did you mean max_steps?" in err


def test_a_recipe_stage_with_an_unknown_args_key_names_the_file_and_the_stage(tmp_path):
    from train.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    stages = [{"name": "rl", "kind": "dgrpo", "args": {"lockstpe": False}}]
    path.write_text(yaml.safe_dump({"model": "m", "data": "d", "output_dir": "runs", "stages": stages}))
    with pytest.raises(TrainConfigError, match=rf"^{path}: stage rl: args.lockstpe: unknown key.*lockstep"):
        load_recipe(path)


# --- the trainer reads its knobs from its DGRPOConfig ---------------------------------------------------------


def test_the_trainer_takes_its_knobs_from_args(demo_dir, tmp_path):
    from train.advantages import GrpoRule
    from train.dgrpo import build_dgrpo_trainer, dgrpo_args

    config = dgrpo_config(
        demo_dir, tmp_path / "knobs", {"lockstep": False}, advantage="grpo", dynamic_sampling={"max_rounds": 3},
        augment={"window": 5}, tools=False,
    )  # fmt: skip
    trainer = build_dgrpo_trainer(config)
    assert isinstance(trainer.args, DGRPOConfig)
    assert isinstance(trainer.advantage_rule, GrpoRule) and trainer.loss_name == "grpo"
    assert trainer.lockstep is False
    assert trainer.group_filter.settings.max_rounds == 3
    assert trainer.augmenter.settings.window == 5 and trainer.augmenter.group_size == 2
    with pytest.raises(TypeError, match=r"DGRPOTrainer needs args=DGRPOConfig\(...\)"):
        dgrpo_args(GRPOConfig(output_dir=str(tmp_path), bf16=False))
