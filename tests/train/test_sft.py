"""SFT with TRL's SFTTrainer on the demo's MTVR-CoT and the tiny checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model.families import get_family
from tests.train.conftest import TRAIN_FAMILIES, demo_paths, policy_model
from train.config import config_from_dict
from train.runs import DONE_FILE
from train.sft import build_sft_trainer, run_sft


def _config(demo_dir: Path, out: Path, **over):
    tree = {
        "kind": "sft",
        **demo_paths(demo_dir),
        "output_dir": str(out),
        "tools": None,
        "frames": {"max_frames": 4},
        "args": {
            "max_steps": 1,
            "per_device_train_batch_size": 2,
            "report_to": [],
            "gradient_checkpointing": False,
            "save_strategy": "no",
            "warmup_steps": 0,
            "logging_steps": 1,
        },
    }
    for key, value in over.items():
        if key == "args":
            tree["args"].update(value)
        else:
            tree[key] = value
    return config_from_dict(tree)


@pytest.mark.parametrize("family", TRAIN_FAMILIES)
def test_one_step_gives_a_finite_loss_and_keeps_the_vision_tower_frozen(demo_dir, tmp_path, tiny_checkpoints, family):
    model_path = policy_model(demo_dir, tiny_checkpoints, family)
    trainer = build_sft_trainer(_config(demo_dir, tmp_path / "one", model=model_path))
    # The rows are encoded through the policy's family: its media fields only (no Qwen2.5-VL temporal field on
    # Qwen3-VL), and video frames at the family's geometry (sides in patches, pairs of frames).
    item = trainer.train_dataset[0]
    fields = set(get_family(family).media_fields)
    assert "pixel_values_videos" in item and set(item) - {"input_ids", "labels"} <= fields
    model = trainer.model
    vision = {n: p.detach().clone() for n, p in model.named_parameters() if "visual." in n}
    language = {n: p.detach().clone() for n, p in model.named_parameters() if "language_model" in n}
    assert vision and language
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in vision.items())
    assert any(not torch.equal(params[n], v) for n, v in language.items())


def test_sft_on_four_rows_halves_the_loss(demo_dir, tmp_path):
    from train.data import load_rows

    rows = load_rows(str(demo_dir / "build"), "cot").filter(lambda r: not r["tools"] and r["modality"] == "video")
    rows = rows.select(range(4))
    config = _config(
        demo_dir,
        tmp_path / "fit",
        tools=False,
        args={
            "max_steps": 36,
            "learning_rate": 3e-3,
            "per_device_train_batch_size": 4,
            "lr_scheduler_type": "constant",
        },
    )
    trainer = build_sft_trainer(config, rows=rows)
    assert len(trainer.train_dataset) == 4
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 36
    assert losses[-1] < 0.5 * losses[0], losses


def test_run_writes_a_checkpoint_that_loads_with_from_pretrained(demo_dir, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "run"
    metrics = run_sft(_config(demo_dir, out, args={"max_steps": 2}))
    assert math.isfinite(metrics["train_loss"])
    model = AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    done = json.loads((out / DONE_FILE).read_text())
    assert done["config"]["kind"] == "sft" and done["metrics"]["train_loss"] == pytest.approx(metrics["train_loss"])


def test_no_rows_for_the_selection_is_a_clear_error(demo_dir, tmp_path):
    with pytest.raises(ValueError, match="no CoT rows"):
        build_sft_trainer(_config(demo_dir, tmp_path / "none", sources=["no_such_source"]))
