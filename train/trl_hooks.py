"""The private GRPOTrainer methods `train.dgrpo.DGRPOTrainer` overrides, and a check that TRL still has them.

The trainer overrides six underscore methods of TRL's GRPOTrainer. TRL does not promise anything about them, so
a TRL release can rename one (our override is then silently never called), add a parameter (TRL then calls our
override with an argument it does not take) or reorder them (our `super()` calls pass values to the wrong
parameters). pyproject.toml pins TRL to the tested minor range; this check is the second net, for an install
that ignores the pin: `check_trl_hooks` runs when the trainer class is built and stops the run with one message
naming the hook, its recorded and its installed signature, instead of a wrong loss or a traceback hours in.

The recorded signatures are TRL 1.16's. Update them only after re-reading the new TRL method against its override
in train/dgrpo.py.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
#: The TRL releases train/dgrpo.py was checked against: pyproject.toml's `trl` range (a test keeps them equal).
TESTED_TRL = ">=1.16,<1.17"


@dataclass(frozen=True)
class Hook:
    """A base method our override relies on, with its leading parameters as TRL 1.16 spells them, in order.

    `extra_keywords`: further parameters after these are fine if each can be passed by keyword and has a default
    (the override forwards them as `**kwargs`: TRL 1.16's image fields of `_get_per_token_logps_and_entropies`)."""

    name: str
    signature: str  # "self, model, inputs": names of plain (positional-or-keyword) parameters
    extra_keywords: bool = False

    @property
    def params(self) -> tuple[tuple[str, str], ...]:
        return tuple((name.strip(), POSITIONAL.name) for name in self.signature.split(","))


#: TRL 1.16's signatures of the six overridden methods (train/dgrpo.py, `make_dgrpo_trainer_class`).
HOOKS: tuple[Hook, ...] = (
    Hook("_generate", "self, prompts"),
    Hook("_prepare_inputs", "self, generation_batch"),
    Hook("_calculate_rewards", "self, inputs, prompts, completions, completion_ids_list"),
    Hook("_generate_and_score_completions", "self, inputs"),
    Hook(
        "_get_per_token_logps_and_entropies",
        "self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss",
        extra_keywords=True,
    ),
    Hook("_compute_loss", "self, model, inputs"),
)


def _describe(params: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return "(" + ", ".join(name if kind == POSITIONAL.name else f"{name}: {kind}" for name, kind in params) + ")"


def _extra_ok(param: inspect.Parameter) -> bool:
    """A parameter after the recorded ones that the override's `**kwargs` forwarding still serves."""
    if param.kind is inspect.Parameter.VAR_KEYWORD:
        return True
    keyword = param.kind in (POSITIONAL, inspect.Parameter.KEYWORD_ONLY)
    return keyword and param.default is not inspect.Parameter.empty


def hook_problem(base: type, hook: Hook) -> str | None:
    """Why `base.<hook.name>` no longer fits its override, or None when it does."""
    method = getattr(base, hook.name, None)
    if method is None or not callable(method):
        return f"{base.__name__}.{hook.name} is gone (expected {hook.name}{_describe(hook.params)})"
    params = list(inspect.signature(method).parameters.values())
    found = [(p.name, p.kind.name) for p in params]
    extra = params[len(hook.params) :]
    if tuple(found[: len(hook.params)]) == hook.params and (
        not extra or (hook.extra_keywords and all(_extra_ok(p) for p in extra))
    ):
        return None
    allowed = " + optional keyword extras" if hook.extra_keywords else ""
    return (
        f"{base.__name__}.{hook.name} changed from {hook.name}{_describe(hook.params)}{allowed} "
        f"to {hook.name}{_describe(found)}"
    )


def check_trl_hooks(base: type | None = None) -> None:
    """Raise a RuntimeError naming every overridden GRPOTrainer method whose signature is not TRL 1.16's.

    `base` defaults to the installed `trl.GRPOTrainer` (tests pass a fake one)."""
    if base is None:
        from trl import GRPOTrainer

        base = GRPOTrainer
    problems = [p for hook in HOOKS if (p := hook_problem(base, hook)) is not None]
    if problems:
        raise RuntimeError(
            f"the installed TRL ({_trl_version()}) does not fit DGRPOTrainer: {'; '.join(problems)}. "
            "train/dgrpo.py overrides these private methods and must be re-checked against the new TRL "
            f"(then update train/trl_hooks.py), or install the tested TRL: pip install 'trl{TESTED_TRL}'"
        )


def _trl_version() -> str:
    try:
        import trl

        return f"trl {trl.__version__}"
    except ImportError:  # pragma: no cover - the trainer cannot be built without TRL anyway
        return "trl not installed"
