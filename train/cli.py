"""`mtvr train sft|dgrpo|recipe CONFIG [--set key=value ...]`: the training commands of the `mtvr` CLI.

Heavy imports (torch, transformers, TRL) happen when a command runs, so `mtvr --help` stays fast. Launch with
`accelerate launch -m pipelines.cli train ...` (or `accelerate launch $(which mtvr) train ...`) for several
processes; docs/training.md has the commands for 1 GPU, 8 GPUs and several nodes.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def _setup_logging() -> None:
    for name in ("train", "model.rollout"):
        if logging.getLogger(name).getEffectiveLevel() > logging.INFO:  # `mtvr -v` has set DEBUG: kept
            logging.getLogger(name).setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")


def cmd_train(args: argparse.Namespace) -> int:
    from model.engines.vllm_engine import VLLMNotInstalledError
    from train.config import TrainConfigError, load_config
    from train.recipe import load_recipe, run_recipe

    _setup_logging()
    try:
        if args.train_command == "recipe":
            result: Any = run_recipe(load_recipe(args.config, args.set))
        else:
            overrides = list(args.set)
            if getattr(args, "loss", None):
                overrides.append(f"loss={args.loss}")
            if getattr(args, "augment", False):
                overrides.append("augment=true")
            config = load_config(args.config, overrides)
            if config.kind != args.train_command:
                raise TrainConfigError(f"{args.config} is a {config.kind!r} config, not {args.train_command!r}")
            if config.kind == "sft":
                from train.sft import run_sft

                result = run_sft(config)
            else:
                from train.dgrpo import run_dgrpo

                result = run_dgrpo(config)
    except TrainConfigError:
        raise  # a `ConfigError`: `mtvr` prints it as one line and exits 2
    except VLLMNotInstalledError as exc:  # `use_vllm` without the extra: what to install or set, in one line
        raise TrainConfigError(f"{args.config}: {exc}") from None
    print(json.dumps(result, indent=2, default=str))
    return 0


def add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train on the built shards: sft, dgrpo, or the four-stage VITAL recipe")
    train_sub = p.add_subparsers(dest="train_command", required=True, metavar="STAGE")
    helps = {
        "sft": "supervised fine-tuning on MTVR-CoT (TRL SFTTrainer)",
        "dgrpo": "difficulty-aware GRPO on MTVR-RL with the clip tool (TRL GRPOTrainer subclass)",
        "recipe": "VITAL's four stages in order, each from the previous checkpoint, each resumable",
    }
    for name, text in helps.items():
        q = train_sub.add_parser(name, help=text)
        q.add_argument("config", help="the run's YAML config (see configs/train_*.yaml)")
        q.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. args.max_steps=2",
        )
        if name == "dgrpo":
            q.add_argument(
                "--loss",
                choices=["grpo", "reg_grpo"],
                help="TRL's clipped GRPO (default) or DeepVideo-R1's Reg-GRPO (same as --set loss=...)",
            )
            q.add_argument(
                "--augment",
                action="store_true",
                help="DeepVideo-R1's difficulty-aware augmentation, default settings (same as --set augment=true)",
            )
        q.set_defaults(func=cmd_train)
