"""Training configs: one YAML file per run (SFT or DGRPO) or per recipe, with VITAL's defaults (docs/papers.md).

    kind: sft                       # sft | dgrpo
    model: Qwen/Qwen2.5-VL-7B-Instruct   # Hub id or local folder (a previous stage's output)
    data: your-org/mtvr             # a built dataset folder or a Hub dataset id
    video_root: /data/videos        # the folder the rows' video paths are relative to
    output_dir: runs/sft-text
    tools: false                    # which part: false = text rows, true = tool rows, null = both
    sources: []                     # restrict to these sources (empty: all)
    freeze_vision: true
    global_batch_size: 256          # per_device x processes x accumulation; accumulation is derived
    frames: {max_frames: 128}       # the whole video's frame budget (mtvr_data.frames.FrameBudget fields)
    args: {learning_rate: 1.0e-5}   # TRL's SFTConfig / train.dgrpo_config.DGRPOConfig fields (checked on load)
    # dgrpo only:
    advantage: dgrpo                # dgrpo | grpo (w = 1)
    loss: grpo                      # grpo (TRL's clipped surrogate) | reg_grpo (DeepVideo-R1)
    reg_grpo: {logp: sum, eps: 1.0e-4, detach_std: false}   # Reg-GRPO's open choices (train.reg_grpo)
    augment: false                  # true or a mapping of train.augment.AugmentSettings: DeepVideo-R1's DA-Aug
    dynamic_sampling: false         # true or {max_rounds: N}: DAPO's filter_groups (train.dynamic_sampling)
    rollout: {max_tool_calls: 2, max_new_tokens: 1024, max_total_tokens: 7168}
    prompt: vital                   # the user turn's words (model.prompts presets): vital (VITAL's exact strings)

Relative paths (model, data, video_root, output_dir) resolve against the YAML file's folder when they exist
there or are output paths, so a config means the same thing from any working directory. `--set key=value`
overrides on the command line use dotted keys (`args.max_steps=2`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, StrictInt, ValidationError

from model.config_error import ConfigError
from model.prompts import DEFAULT_PRESET, check_preset
from model.settings import (
    MAX_NEW_TOKENS,
    MAX_TOTAL_TOKENS,
    TOOL_TIMEOUT_S,
    Block,
    config_error,
    resolve_model,
    resolve_path,
)
from mtvr_data.frames import FrameBudget

#: VITAL's SFT settings (docs/papers.md: lr 1e-5, batch 256, one epoch); bf16 and checkpointing are the GPU defaults.
SFT_ARGS: dict[str, Any] = {
    "learning_rate": 1e-5,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 1,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,  # a float below 1 is a ratio of the total steps
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 1,
    "save_steps": 200,
    "save_total_limit": 2,
    "report_to": ["tensorboard"],
    "gradient_checkpointing": True,
    "bf16": True,
}

#: VITAL's RL settings (docs/papers.md): G = 8, 64 prompts per step, one update per step, lr 1e-6, clip 0.2,
#: token-mean loss, grad clip 1.0, KL 0.01 (TRL's KL is the k3 estimator), temperature 1.0, repetition 1.05.
DGRPO_ARGS: dict[str, Any] = {
    "learning_rate": 1e-6,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 8,
    "num_generations": 8,
    "num_iterations": 1,
    "epsilon": 0.2,
    "beta": 0.01,
    "loss_type": "dapo",
    "max_grad_norm": 1.0,
    "temperature": 1.0,
    "repetition_penalty": 1.05,
    "max_completion_length": MAX_TOTAL_TOKENS,
    "scale_rewards": "group",
    "lr_scheduler_type": "constant",
    "logging_steps": 1,
    "save_steps": 50,
    "save_total_limit": 2,
    "report_to": ["tensorboard"],
    "gradient_checkpointing": True,
    "bf16": True,
}

#: With `loss: reg_grpo`, DeepVideo-R1's settings over DGRPO_ARGS (docs/papers.md: beta 0.1, G 8) and 2 inner updates
#: per rollout batch, since with one every log-ratio is 0 (train.reg_grpo). A run's own `args` still win.
REG_GRPO_ARGS: dict[str, Any] = {"beta": 0.1, "num_generations": 8, "num_iterations": 2}

#: DGRPOConfig fields (train.dgrpo_config) that a YAML file sets as top-level keys, not under `args:` (the layout
#: predates DGRPOConfig, and `loss` also picks REG_GRPO_ARGS): field -> the YAML key that sets it.
DGRPO_TOP_LEVEL: dict[str, str] = {
    "advantage": "advantage",
    "loss": "loss",
    "reg_grpo_logp": "reg_grpo.logp",
    "reg_grpo_eps": "reg_grpo.eps",
    "reg_grpo_detach_std": "reg_grpo.detach_std",
    "augment": "augment",
    "augment_kwargs": "augment",
    "dynamic_sampling": "dynamic_sampling",
    "dynamic_sampling_max_rounds": "dynamic_sampling.max_rounds",
}
LOSS_NAMES = ("grpo", "reg_grpo")

SFT_FRAMES: dict[str, Any] = {"max_frames": 128}
RL_FRAMES: dict[str, Any] = {"max_frames": 64}


class TrainConfigError(ConfigError):
    """A training config that cannot be used; the message names the key."""


class RolloutSettings(Block):
    """The DGRPO rollout loop, with the limits the data stages use (`model.settings`): at most 2 tool calls, 1024
    new tokens per turn, 7168 in all. Temperature and repetition penalty are TRL's (`args`)."""

    max_tool_calls: StrictInt = Field(2, ge=0)
    max_new_tokens: StrictInt = Field(MAX_NEW_TOKENS, ge=1)
    max_total_tokens: StrictInt = Field(MAX_TOTAL_TOKENS, ge=1)
    tool_timeout_s: float = Field(TOOL_TIMEOUT_S, gt=0)


@dataclass
class TrainConfig:
    """One SFT or DGRPO run. `args` holds TRL/transformers trainer arguments over the defaults of `kind`."""

    kind: str
    model: str
    data: str
    output_dir: str
    video_root: str | None = None
    tools: bool | None = None
    sources: list[str] = field(default_factory=list)
    split: str = "train"
    freeze_vision: bool = True
    global_batch_size: int | None = None
    max_length: int | None = None
    frames: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    advantage: str = "dgrpo"
    loss: str = "grpo"
    reg_grpo: dict[str, Any] = field(default_factory=dict)
    augment: bool | dict[str, Any] = False
    dynamic_sampling: bool | dict[str, Any] = False
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    iou_scale: dict[str, list[float]] = field(default_factory=dict)
    attn_implementation: str | None = "sdpa"
    prompt: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        try:
            check_preset(self.prompt)
        except ValueError as exc:
            raise TrainConfigError(f"prompt: {exc}") from None
        if self.kind not in ("sft", "dgrpo"):
            raise TrainConfigError(f"kind must be 'sft' or 'dgrpo', got {self.kind!r}")
        if self.advantage not in ("dgrpo", "grpo"):
            raise TrainConfigError(f"advantage must be 'dgrpo' or 'grpo', got {self.advantage!r}")
        if self.loss not in LOSS_NAMES:
            raise TrainConfigError(f"loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        if not isinstance(self.augment, bool | dict):
            raise TrainConfigError(f"augment must be true/false or a mapping of settings, got {self.augment!r}")
        try:
            self.reg_grpo_settings()
            self.augment_settings()
            self.dynamic_sampling_settings()
        except (TypeError, ValueError) as exc:
            raise TrainConfigError(str(exc)) from exc
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise TrainConfigError(f"global_batch_size must be >= 1, got {self.global_batch_size}")
        if isinstance(self.rollout, dict):
            try:
                self.rollout = RolloutSettings.model_validate(self.rollout)
            except ValidationError as exc:
                raise TrainConfigError(str(config_error(exc, where="rollout", model=RolloutSettings))) from None
        try:
            self.frame_budget()
        except (TypeError, ValueError) as exc:
            raise TrainConfigError(f"frames: {exc}") from exc
        self.check_args()

    def check_args(self) -> None:
        """Refuse an `args` key that the trainer's config class (DGRPOConfig / SFTConfig) does not have, when the
        config is read and its file is known, rather than as a TypeError when the trainer is built.

        Imports TRL, so only when `args` is not empty."""
        if not isinstance(self.args, dict):
            raise TrainConfigError(f"args must be a mapping of trainer arguments, got {self.args!r}")
        if not self.args:
            return
        if self.kind == "dgrpo":
            for key in self.args:
                if key in DGRPO_TOP_LEVEL:
                    raise TrainConfigError(
                        f"args.{key}: set `{DGRPO_TOP_LEVEL[key]}` as a top-level key of the config, not under args"
                    )
        name, known = _trainer_fields(self.kind)
        unknown = sorted(set(self.args) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            more = f" (also unknown: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
            raise TrainConfigError(f"args.{unknown[0]}: unknown key, not a field of {name}{hint}{more}")

    def trainer_args(self) -> dict[str, Any]:
        """The keyword arguments of the trainer's config class: the defaults of `kind`, this config's `args` on
        top, and for DGRPO the top-level DGRPO keys as DGRPOConfig fields (`DGRPO_TOP_LEVEL`)."""
        base = SFT_ARGS if self.kind == "sft" else DGRPO_ARGS
        extra = REG_GRPO_ARGS if self.kind == "dgrpo" and self.loss == "reg_grpo" else {}
        knobs = self.dgrpo_fields() if self.kind == "dgrpo" else {}
        return {**copy.deepcopy(base), **extra, **self.args, **knobs, "output_dir": self.output_dir}

    def dgrpo_fields(self) -> dict[str, Any]:
        """The top-level DGRPO keys as DGRPOConfig fields (the inverse of `DGRPO_TOP_LEVEL`)."""
        reg = self.reg_grpo_settings()
        dynamic = self.dynamic_sampling_settings()
        fields = {
            "advantage": self.advantage,
            "loss": self.loss,
            "reg_grpo_logp": reg.logp,
            "reg_grpo_eps": reg.eps,
            "reg_grpo_detach_std": reg.detach_std,
            "augment": self.augment is not False,
            "augment_kwargs": copy.deepcopy(self.augment) if isinstance(self.augment, dict) else None,
            "dynamic_sampling": dynamic is not None,
        }
        if dynamic is not None:
            fields["dynamic_sampling_max_rounds"] = dynamic.max_rounds
        return fields

    def reg_grpo_settings(self) -> Any:
        from train.reg_grpo import RegGrpoSettings

        return RegGrpoSettings(**self.reg_grpo)

    def augment_settings(self) -> Any:
        """DA-Aug's settings, or None when it is off."""
        from train.augment import AugmentSettings

        if self.augment is False:
            return None
        return AugmentSettings(**(self.augment if isinstance(self.augment, dict) else {}))

    def dynamic_sampling_settings(self) -> Any:
        """Dynamic sampling's settings (`train.dynamic_sampling`), or None when it is off."""
        from train.dynamic_sampling import DynamicSamplingSettings

        if self.dynamic_sampling is False:
            return None
        if not isinstance(self.dynamic_sampling, bool | dict):
            raise ValueError(f"dynamic_sampling must be true/false or a mapping, got {self.dynamic_sampling!r}")
        return DynamicSamplingSettings(**(self.dynamic_sampling if isinstance(self.dynamic_sampling, dict) else {}))

    def frame_budget(self) -> FrameBudget:
        base = SFT_FRAMES if self.kind == "sft" else RL_FRAMES
        return FrameBudget(**{**base, **self.frames})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """What the run was asked to do, for the run's own record (`mtvr_train.json`)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)


def _trainer_fields(kind: str) -> tuple[str, frozenset[str]]:
    """The name of the trainer's config class for `kind` and the keywords it accepts."""
    if kind == "dgrpo":
        from train.dgrpo_config import dgrpo_field_names

        return "DGRPOConfig", dgrpo_field_names()
    from trl import SFTConfig

    return "SFTConfig", frozenset(f.name for f in dataclasses.fields(SFTConfig) if f.init)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise TrainConfigError(f"--set {dotted}: {key} is not a mapping")
    node[keys[-1]] = value


def _scalar(raw: str) -> Any:
    """A `--set` value as YAML, except that `1e-5` is a number (PyYAML's YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.sub=value` strings (values parsed as YAML) applied to a config tree."""
    tree = copy.deepcopy(tree)
    for item in overrides:
        if "=" not in item:
            raise TrainConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), _scalar(raw))
    return tree


def _resolve_paths(tree: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths as every config resolves them (`model.settings`): a model or dataset folder that exists beside the
    config becomes absolute (else it is a Hub id), output and video folders are taken relative to the config."""
    out = dict(tree)
    for key in ("model", "data", "video_root", "output_dir"):
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = resolve_model(base, value) if key in ("model", "data") else resolve_path(base, value)
    return out


def config_from_dict(tree: dict[str, Any], base: Path | None = None) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(tree) - known
    if unknown:
        raise TrainConfigError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    missing = [k for k in ("kind", "model", "data", "output_dir") if not tree.get(k)]
    if missing:
        raise TrainConfigError(f"missing keys {missing}")
    if base is not None:
        tree = _resolve_paths(tree, base)
    return TrainConfig(**tree)


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(tree, dict):
        raise TrainConfigError(f"{path}: expected a mapping at the top level")
    return tree


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """A run's config from its YAML file and `--set` overrides; errors name the file and the key."""
    try:
        tree = apply_overrides(read_yaml(path), overrides or [])
        return config_from_dict(tree, Path(path).resolve().parent)
    except TrainConfigError as exc:
        raise TrainConfigError(f"{path}: {exc}") from None
