"""What every training run does around its trainer: CPU-safe arguments, resume, save, and the "done" record.

SFT and DGRPO differ in how their trainer is built and nothing else here, so both call `train_and_save`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from train.config import TrainConfig

log = logging.getLogger(__name__)

#: Written into a run's output_dir when it finished: the recipe skips a stage that has it.
DONE_FILE = "mtvr_train.json"


def cpu_safe(args: dict[str, Any]) -> dict[str, Any]:
    """Without a GPU: no bf16 (CPU autocast in bf16 is slow and lossy for the tiny model's tests)."""
    import torch

    if torch.cuda.is_available():
        return args
    return {**args, "bf16": False, "fp16": False}


def last_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder of a run, to resume from; None for a fresh run."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


def write_done(config: TrainConfig, metrics: dict[str, Any], seconds: float) -> None:
    record = {"config": config.to_dict(), "metrics": metrics, "seconds": round(seconds, 1)}
    Path(config.output_dir, DONE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def train_and_save(config: TrainConfig, build: Callable[[TrainConfig], Any]) -> dict[str, Any]:
    """Build the trainer, train (resuming from the run's last checkpoint, if any), save a `from_pretrained`
    folder with the processor, and record the run as done; returns the trainer's final metrics."""
    started = time.monotonic()
    trainer = build(config)
    resume = last_checkpoint(config.output_dir)
    if resume:
        log.info("resuming %s from %s", config.kind.upper(), resume)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(config.output_dir)
        write_done(config, dict(result.metrics), time.monotonic() - started)
    return dict(result.metrics)
