"""`DGRPOConfig`: TRL's GRPOConfig with VITAL's defaults and the DGRPO trainer's own knobs, typed and documented.

Every field has a `help` string, so `HfArgumentParser(DGRPOConfig)` gives a command line and `--help` as TRL's
configs do. The YAML layout (`train/config.py`) is unchanged: `args:` holds GRPOConfig fields and `lockstep`,
while `advantage`, `loss`, `reg_grpo`, `augment` and `dynamic_sampling` stay top-level keys, which
`TrainConfig.trainer_args` maps onto the fields below (`train.config.DGRPO_TOP_LEVEL`).

Defaults: the TRL fields VITAL sets are redeclared here with `train.config.DGRPO_ARGS` as their default (that dict
stays the one place the paper's numbers are written, since the YAML path and docs read it), so `DGRPOConfig()`
is VITAL's run; a few TRL defaults differ (beta 0.0, 3 epochs, `max_completion_length` 512...). The knobs of
Reg-GRPO, DA-Aug and dynamic sampling take their defaults from those modules' settings classes for the same reason.
Importing this module imports TRL.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformers.trainer_utils import SchedulerType
from trl import GRPOConfig

from train.augment import AugmentSettings
from train.config import DGRPO_ARGS
from train.dynamic_sampling import DynamicSamplingSettings
from train.reg_grpo import RegGrpoSettings, check_reg_grpo_args

_TRL_FIELDS = {f.name: f for f in dataclasses.fields(GRPOConfig)}


def _vital(name: str) -> Any:
    """A GRPOConfig field with VITAL's value (DGRPO_ARGS) as its default and TRL's help, plus the TRL default."""
    base = _TRL_FIELDS[name]
    value = DGRPO_ARGS[name]
    trl_default = base.default if base.default is not dataclasses.MISSING else base.default_factory()  # type: ignore[misc]
    help_text = f"{base.metadata.get('help', '')} DGRPO default (VITAL): {value!r}; TRL's: {trl_default!r}."
    if isinstance(value, list | dict):
        return field(default_factory=lambda: copy.deepcopy(value), metadata={"help": help_text})
    return field(default=value, metadata={"help": help_text})


def _default_of(settings: type, name: str) -> Any:
    """A settings dataclass's default for `name` (read off its fields: slotted classes have no class attribute)."""
    return next(f.default for f in dataclasses.fields(settings) if f.name == name)


@dataclass
class DGRPOConfig(GRPOConfig):
    """Arguments of `train.dgrpo.DGRPOTrainer`: GRPOConfig's, VITAL's defaults, and the DGRPO-only knobs.

    The trainer reads its knobs from here (`trainer.args`); its constructor's keyword arguments of the same
    meaning, where given, win (tests pass ready-made objects)."""

    _VALID_DICT_FIELDS = [*GRPOConfig._VALID_DICT_FIELDS, "augment_kwargs"]

    # --- VITAL's settings over TRL's defaults (docs/papers.md; train.config.DGRPO_ARGS) ----------------------
    learning_rate: float = _vital("learning_rate")
    num_train_epochs: float = _vital("num_train_epochs")
    per_device_train_batch_size: int = _vital("per_device_train_batch_size")
    num_generations: int | None = _vital("num_generations")
    num_iterations: int = _vital("num_iterations")
    epsilon: float = _vital("epsilon")
    beta: float = _vital("beta")
    loss_type: str = _vital("loss_type")
    max_grad_norm: float = _vital("max_grad_norm")
    temperature: float = _vital("temperature")
    repetition_penalty: float = _vital("repetition_penalty")
    max_completion_length: int | None = _vital("max_completion_length")
    scale_rewards: str = _vital("scale_rewards")
    lr_scheduler_type: SchedulerType | str = _vital("lr_scheduler_type")
    logging_steps: float = _vital("logging_steps")
    save_steps: float = _vital("save_steps")
    save_total_limit: int | None = _vital("save_total_limit")
    report_to: None | str | list[str] = _vital("report_to")
    gradient_checkpointing: bool = _vital("gradient_checkpointing")
    bf16: bool | None = _vital("bf16")
    vllm_importance_sampling_correction: bool = field(
        default=False,
        metadata={
            "help": "TRL's correction for the gap between vLLM's sampling log-probs and the trainer's. DGRPO's "
            "rollouts return no sampling log-probs (the old-policy log-probs are the trainer's own pass), so it is "
            "off, and `use_vllm` refuses it on (train.vllm_rollouts). TRL's default: True."
        },
    )

    # --- DGRPO ----------------------------------------------------------------------------------------------
    advantage: str = field(
        default="dgrpo",
        metadata={
            "help": "Advantage rule applied after TRL's group-normalised advantages (train.advantages.RULES): "
            "'dgrpo' scales each group by VITAL's difficulty weight w(D); 'grpo' is w = 1, TRL's GRPO exactly."
        },
    )
    loss: str = field(
        default="grpo",
        metadata={
            "help": "Policy loss (train.dgrpo.LOSSES): 'grpo' is TRL's clipped surrogate with KL, untouched; "
            "'reg_grpo' is DeepVideo-R1's Reg-GRPO (micro-batches of whole groups; the YAML path then defaults "
            "beta 0.1 and num_iterations 2, train.config.REG_GRPO_ARGS)."
        },
    )
    reg_grpo_logp: str = field(
        default=_default_of(RegGrpoSettings, "logp"),
        metadata={"help": "Reg-GRPO: a response's log-ratio rho is the 'sum' or 'mean' over its own tokens."},
    )
    reg_grpo_eps: float = field(
        default=_default_of(RegGrpoSettings, "eps"),
        metadata={"help": "Reg-GRPO: added to the group's rho variance; keeps the std's gradient finite (> 0)."},
    )
    reg_grpo_detach_std: bool = field(
        default=_default_of(RegGrpoSettings, "detach_std"),
        metadata={"help": "Reg-GRPO: stop the gradient through the group's rho std (the paper leaves it open)."},
    )
    augment: bool = field(
        default=False,
        metadata={
            "help": "DeepVideo-R1's DA-Aug (train.augment): after the rollouts, hint hard groups and perturb easy "
            "ones. Needs whole groups on each process."
        },
    )
    augment_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "DA-Aug's settings over their defaults: fields of train.augment.AugmentSettings (window, "
            "threshold, hint_*, easy, noise_*, mask_*, seed), as a mapping or a JSON string. Only with augment."
        },
    )
    dynamic_sampling: bool = field(
        default=False,
        metadata={
            "help": "DAPO's dynamic sampling (train.dynamic_sampling): replace zero-variance groups by groups of "
            "further prompts before scoring. Needs whole groups on each process."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=_default_of(DynamicSamplingSettings, "max_rounds"),
        metadata={"help": "Dynamic sampling: refill rounds per generation batch (>= 1)."},
    )
    lockstep: bool | None = field(
        default=None,
        metadata={
            "help": "Pair every rank's forwards during generation (train.lockstep), which sharded weights need "
            "when ranks roll out different numbers of turns. None: on when the weights are sharded and the policy "
            "itself generates; true/false force it."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        from train.advantages import RULES
        from train.dgrpo import LOSSES  # here, not at the top: train.dgrpo imports this module when it builds

        if self.advantage not in RULES:
            raise ValueError(f"DGRPOConfig.advantage must be one of {sorted(RULES)}, got {self.advantage!r}")
        losses = ["grpo", *sorted(LOSSES)]
        if self.loss not in losses:
            raise ValueError(f"DGRPOConfig.loss must be one of {losses}, got {self.loss!r}")
        if self.lockstep is not None and not isinstance(self.lockstep, bool):
            raise ValueError(f"DGRPOConfig.lockstep must be true, false or null, got {self.lockstep!r}")
        if not isinstance(self.augment, bool) or not isinstance(self.dynamic_sampling, bool):
            raise ValueError("DGRPOConfig.augment and DGRPOConfig.dynamic_sampling must be true or false")
        try:
            self.reg_grpo_settings()
            self.augment_settings()
            self.dynamic_sampling_settings()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"DGRPOConfig: {exc}") from None
        if self.loss == "reg_grpo":
            check_reg_grpo_args(
                {
                    "num_iterations": self.num_iterations,
                    "scale_rewards": self.scale_rewards,
                    "num_generations": self.num_generations,
                }
            )
        self._check_group_layout()

    def _check_group_layout(self) -> None:
        """Reg-GRPO needs whole groups per micro-batch, DA-Aug and dynamic sampling whole groups per process:
        say so when the config is made, not at the first step."""
        from train.dgrpo import GROUPED_LOSSES

        G, per_device, steps = self.num_generations, self.per_device_train_batch_size, self.steps_per_generation
        if G is None or steps is None:
            return
        if self.loss in GROUPED_LOSSES and per_device % G:
            raise ValueError(
                f"loss {self.loss} normalises within a group, so per_device_train_batch_size ({per_device}) must "
                f"be a multiple of num_generations ({G})"
            )
        if (self.augment or self.dynamic_sampling) and (per_device * steps) % G:
            raise ValueError(
                "augment and dynamic_sampling need whole groups on each process: per_device_train_batch_size x "
                f"steps_per_generation ({per_device} x {steps}) must be a multiple of num_generations ({G})"
            )

    def reg_grpo_settings(self) -> RegGrpoSettings:
        return RegGrpoSettings(logp=self.reg_grpo_logp, eps=self.reg_grpo_eps, detach_std=self.reg_grpo_detach_std)

    def augment_settings(self) -> AugmentSettings | None:
        """DA-Aug's settings, or None when it is off."""
        if not self.augment:
            if self.augment_kwargs:
                raise ValueError("augment_kwargs is set but augment is false; set augment to true")
            return None
        extra = self.augment_kwargs or {}
        if not isinstance(extra, dict):
            raise TypeError(f"augment_kwargs must be a mapping, got {extra!r}")
        allowed = [f.name for f in dataclasses.fields(AugmentSettings)]
        unknown = sorted(set(extra) - set(allowed))
        if unknown:
            raise ValueError(f"augment_kwargs: unknown keys {unknown}; allowed: {', '.join(allowed)}")
        return AugmentSettings(**extra)

    def dynamic_sampling_settings(self) -> DynamicSamplingSettings | None:
        """Dynamic sampling's settings, or None when it is off."""
        if not self.dynamic_sampling:
            return None
        return DynamicSamplingSettings(max_rounds=self.dynamic_sampling_max_rounds)


def dgrpo_field_names() -> frozenset[str]:
    """Every keyword `DGRPOConfig(...)` accepts (TRL's fields and ours)."""
    return frozenset(f.name for f in dataclasses.fields(DGRPOConfig) if f.init)


def grpo_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """DGRPOConfig keyword arguments less the DGRPO-only ones: TRL's plain GRPOConfig on the same settings (the
    baseline the tests and the bench compare DGRPO with)."""
    return {k: v for k, v in kwargs.items() if k in _TRL_FIELDS}
