"""Loading the policy and its processor, its model family, and freezing the vision tower (VITAL trains the language
model only).

The family (`model.families`) is read from the loaded model's config (`model_type`), never from its name: the
trainers build prompts, frames and processor inputs through it exactly as the engines that generate with the same
checkpoint do (Qwen3-VL's frame geometry and time text, Qwen2.5-VL's drawn stamps)."""

from __future__ import annotations

import logging
from typing import Any

from model.families import ModelFamily, family_for_checkpoint

log = logging.getLogger(__name__)

#: Parameter-name markers of the vision tower (Qwen2.5-VL, Qwen3-VL and Qwen3.5: `model.visual.*`), merger included.
VISION_MARKERS: tuple[str, ...] = ("visual.",)


def load_processor(model_id: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_id)


def load_model(model_id: str, *, dtype: Any = None, attn_implementation: str | None = "sdpa") -> Any:
    """`AutoModelForImageTextToText` from a Hub id or folder, in float32 by default. The Auto class picks the
    family's model class from the config (`Qwen3VLForConditionalGeneration` for `qwen3_vl`, ...); a model of no
    known family is refused here (`policy_family`), before any data is prepared for it.

    float32 master weights are what mixed precision needs: the trainer's `bf16` runs the forward in bf16 under
    autocast while the optimizer updates fp32 weights. Loading in bf16 would round most updates at VITAL's
    learning rates (1e-5, 1e-6) away on a single GPU (FSDP and ZeRO-3 keep fp32 copies themselves).
    """
    import torch
    from transformers import AutoModelForImageTextToText

    if dtype is None:
        dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(model_id, **kwargs)
    policy_family(model)
    return model


def policy_family(model: Any) -> ModelFamily:
    """The family of a loaded policy (or its config), from its `model_type`; ValueError for an unknown one."""
    return family_for_checkpoint(model)


def freeze_vision(model: Any) -> int:
    """Stop gradients into the vision tower; returns how many parameters were frozen (0 means none found)."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(marker in name for marker in VISION_MARKERS):
            param.requires_grad_(False)
            frozen += param.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if frozen == 0:
        raise ValueError("freeze_vision: no vision-tower parameters found (expected names containing 'visual.')")
    log.info("vision tower frozen: %d parameters; %d trainable", frozen, trainable)
    return frozen


def accumulation_steps(global_batch_size: int, per_device: int, world_size: int) -> int:
    """Gradient accumulation that gives `global_batch_size` rows per optimizer step; it must divide evenly."""
    per_step = per_device * world_size
    if global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not a multiple of per_device_train_batch_size {per_device} "
            f"x {world_size} processes"
        )
    return global_batch_size // per_step


def world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))
