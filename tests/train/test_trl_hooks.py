"""The six private GRPOTrainer methods DGRPOTrainer overrides still exist with TRL 1.16's signatures, the installed
TRL is in pyproject's pinned range, and a changed hook stops the trainer with a message that says what changed."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from train.trl_hooks import HOOKS, TESTED_TRL, check_trl_hooks, hook_problem

ROOT = Path(__file__).resolve().parents[2]

#: TRL 1.16.0's signatures, written out by hand: what train/dgrpo.py's overrides were written against.
RECORDED_1_16: dict[str, str] = {
    "_generate": "self, prompts",
    "_prepare_inputs": "self, generation_batch",
    "_calculate_rewards": "self, inputs, prompts, completions, completion_ids_list",
    "_generate_and_score_completions": "self, inputs",
    # after compute_aux_loss: the image fields, which the override forwards as **image_fields
    "_get_per_token_logps_and_entropies": "self, model, input_ids, attention_mask, logits_to_keep, batch_size, "
    "compute_entropy, compute_aux_loss, pixel_values, image_grid_thw, num_images, pixel_attention_mask, "
    "spatial_shapes, num_tiles, image_sizes, token_type_ids, mm_token_type_ids, image_position_ids",
    "_compute_loss": "self, model, inputs",
}


def _names(hook: str) -> list[str]:
    return [name.strip() for name in RECORDED_1_16[hook].split(",")]


def _grpo_trainer() -> type:
    from trl import GRPOTrainer

    return GRPOTrainer


def _signature(method: Any) -> list[tuple[str, str]]:
    return [(p.name, p.kind.name) for p in inspect.signature(method).parameters.values()]


@pytest.mark.parametrize("name", sorted(RECORDED_1_16))
def test_each_overridden_hook_has_trl_1_16s_signature(name):
    base = _grpo_trainer()
    assert hasattr(base, name), f"trl.GRPOTrainer.{name} is gone: re-check train/dgrpo.py against the new TRL"
    expected = [(p, "POSITIONAL_OR_KEYWORD") for p in _names(name)]
    found = _signature(getattr(base, name))
    assert found == expected, (
        f"trl.GRPOTrainer.{name} changed from {expected} to {found}: train/dgrpo.py overrides it and must be "
        "re-checked against the new TRL (then update train/trl_hooks.py and this test)"
    )


def test_the_checker_records_the_same_signatures_as_this_test():
    assert {h.name for h in HOOKS} == set(RECORDED_1_16)
    for hook in HOOKS:
        recorded = _names(hook.name)
        names = [name for name, _ in hook.params]
        # The checker may stop at the parameters the override names, if it allows the rest as keyword extras.
        assert names == (recorded[: len(names)] if hook.extra_keywords else recorded), hook.name


def test_the_hooks_are_exactly_the_trl_methods_the_trainer_overrides():
    """A new override of a TRL method has to be recorded here and in train/trl_hooks.py, or it is not checked."""
    from train.dgrpo import make_dgrpo_trainer_class

    base = _grpo_trainer()
    trainer_class = make_dgrpo_trainer_class()
    overridden = {
        name
        for name in vars(trainer_class)
        if name.startswith("_") and not name.startswith("__") and hasattr(base, name)
    }
    assert overridden == {h.name for h in HOOKS}


def test_the_installed_trl_passes_the_check():
    check_trl_hooks()  # raises on a mismatch
    assert all(hook_problem(_grpo_trainer(), hook) is None for hook in HOOKS)


def test_installed_trl_is_inside_pyprojects_pinned_range():
    import trl

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    trl_reqs = [Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "trl"]
    assert len(trl_reqs) == 1
    pinned = trl_reqs[0].specifier
    assert pinned == SpecifierSet(TESTED_TRL), f"pyproject pins trl{pinned}, train/trl_hooks.py says {TESTED_TRL}"
    assert pinned.contains(trl.__version__), f"installed trl {trl.__version__} is outside the tested range {pinned}"
    # The range is one minor release: a new minor must be tested (and the hooks re-checked) before it is allowed.
    assert not pinned.contains("1.17.0") and pinned.contains("1.16.9")


# --- the check fails, and says why, when a hook changes ------------------------------------------------------


def _fake_base(**methods: Any) -> type:
    """GRPOTrainer's six hooks with TRL 1.16's signatures, with `methods` replacing (or, as None, removing) some."""

    def make(params: list[str]) -> Any:
        # A function with exactly these parameters; from `batch_size` on they are optional, as in TRL.
        optional = params.index("batch_size") if "batch_size" in params else len(params)
        spelled = [p if i < optional else f"{p}=None" for i, p in enumerate(params)]
        namespace: dict[str, Any] = {}
        exec(f"def hook({', '.join(spelled)}): pass", namespace)
        return namespace["hook"]

    body = {name: make(_names(name)) for name in RECORDED_1_16}
    body.update({name: fn for name, fn in methods.items() if fn is not None})
    for name in [n for n, fn in methods.items() if fn is None]:
        del body[name]
    return type("GRPOTrainer", (), body)


def test_the_fake_base_with_1_16_signatures_passes():
    check_trl_hooks(_fake_base())


def test_an_extra_optional_image_field_is_accepted_but_a_required_parameter_is_not():
    def logps_with_video(
        self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
        compute_aux_loss=False, pixel_values=None, video_grid_thw=None,
    ):  # fmt: skip
        pass

    check_trl_hooks(_fake_base(_get_per_token_logps_and_entropies=logps_with_video))

    def loss_with_step(self, model, inputs, step):
        pass

    with pytest.raises(RuntimeError) as info:
        check_trl_hooks(_fake_base(_compute_loss=loss_with_step))
    message = str(info.value)
    assert "GRPOTrainer._compute_loss changed from _compute_loss(self, model, inputs)" in message
    assert "to _compute_loss(self, model, inputs, step)" in message
    assert "train/dgrpo.py" in message and "re-checked against the new TRL" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("hook", "replacement", "words"),
    [
        ("_generate", None, "GRPOTrainer._generate is gone (expected _generate(self, prompts))"),
        (
            "_calculate_rewards",
            lambda self, inputs, prompts, completion_ids_list, completions: None,  # reordered
            "to _calculate_rewards(self, inputs, prompts, completion_ids_list, completions)",
        ),
        (
            "_get_per_token_logps_and_entropies",
            lambda self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False: (
                None
            ),  # compute_aux_loss removed
            "_get_per_token_logps_and_entropies changed from",
        ),
        ("_prepare_inputs", lambda self, *, generation_batch: None, "generation_batch: KEYWORD_ONLY"),
    ],
    ids=["removed", "reordered", "parameter-dropped", "keyword-only"],
)
def test_each_kind_of_change_is_reported_with_the_hook_named(hook, replacement, words):
    with pytest.raises(RuntimeError, match="does not fit DGRPOTrainer") as info:
        check_trl_hooks(_fake_base(**{hook: replacement}))
    assert words in str(info.value)
    assert "pip install 'trl>=1.16,<1.17'" in str(info.value)


def test_building_the_trainer_class_on_a_changed_trl_stops_with_the_message(monkeypatch):
    """Users meet the check when the trainer class is built, not only in this test file."""
    import train.dgrpo as dgrpo

    real = _grpo_trainer()

    def changed_generate(self, prompts, images):
        pass

    changed = type("GRPOTrainer", (real,), {"_generate": changed_generate})
    monkeypatch.setattr(dgrpo, "_trl_grpo_trainer", lambda: changed)
    with pytest.raises(RuntimeError, match=r"_generate changed from _generate\(self, prompts\) to .*images"):
        dgrpo.make_dgrpo_trainer_class()
