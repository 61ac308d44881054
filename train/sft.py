"""`mtvr train sft`: supervised fine-tuning on MTVR-CoT with TRL's SFTTrainer.

What TRL does: the training loop, accelerate/FSDP/DeepSpeed, checkpoints, resume, logging. What this module adds:
the rows become conversations through the shared prompt builder and frame sampler, tool turns are re-rendered
from their clip spans, and the labels keep assistant tokens only (`train.encoding`). TRL's own dataset
preparation is skipped (`skip_prepare_dataset`): it would apply the chat template without our media and without
masking the tool turns' vision tokens, and its assistant-only mask needs `{% generation %}` markers the
Qwen2.5-VL template does not have. Prompts, frames and processor inputs are the policy's model family's
(`train.modeling.policy_family`, from its config), as the engines build them for the same checkpoint.
"""

from __future__ import annotations

import logging
from typing import Any

from train.config import TrainConfig
from train.data import SftCollator, load_rows, select_rows, sft_dataset
from train.encoding import check_template
from train.modeling import accumulation_steps, freeze_vision, load_model, load_processor, policy_family, world_size
from train.runs import DONE_FILE, cpu_safe, train_and_save

__all__ = ["DONE_FILE", "build_sft_trainer", "resolved_args", "run_sft"]

log = logging.getLogger(__name__)


def resolved_args(config: TrainConfig) -> dict[str, Any]:
    """Trainer arguments: defaults, the config's `args`, and accumulation derived from `global_batch_size`."""
    args = cpu_safe(config.trainer_args())
    if config.global_batch_size is not None:
        args["gradient_accumulation_steps"] = accumulation_steps(
            config.global_batch_size, int(args.get("per_device_train_batch_size", 1)), world_size()
        )
    return args


def build_sft_trainer(config: TrainConfig, *, model: Any = None, processor: Any = None, rows: Any = None) -> Any:
    """A TRL SFTTrainer over the config's CoT rows, or over `rows` (a `datasets.Dataset` of CoT rows) if given."""
    from trl import SFTConfig, SFTTrainer

    processor = processor if processor is not None else load_processor(config.model)
    check_template(processor)
    model = model if model is not None else load_model(config.model, attn_implementation=config.attn_implementation)
    if config.freeze_vision:
        freeze_vision(model)
    if rows is None:
        rows = select_rows(load_rows(config.data, "cot", config.split), tools=config.tools, sources=config.sources)
    if len(rows) == 0:
        raise ValueError(f"no CoT rows in {config.data} with tools={config.tools} sources={config.sources or 'all'}")
    family = policy_family(model)
    dataset = sft_dataset(
        rows,
        processor,
        video_root=config.video_root,
        budget=config.frame_budget(),
        max_length=config.max_length,
        preset=config.prompt,
        family=family,
    )
    args = resolved_args(config)
    args.update(
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        max_length=None,
    )
    sft_args = SFTConfig(**args)
    log.info(
        "SFT: %d rows, family %s, lr %g, per-device batch %d x accumulation %d x %d processes",
        len(rows),
        family.name,
        sft_args.learning_rate,
        sft_args.per_device_train_batch_size,
        sft_args.gradient_accumulation_steps,
        world_size(),
    )
    return SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=dataset,
        data_collator=SftCollator(processor),
        processing_class=processor,
    )


def run_sft(config: TrainConfig) -> dict[str, Any]:
    """Train (resuming from the run's last checkpoint, if any) and save a `from_pretrained` folder."""
    return train_and_save(config, build_sft_trainer)
