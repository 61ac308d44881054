"""Reg-GRPO: the loss against the formula written out by hand, the zero-variance trap, whole-group micro-batches,
the difficulty weight as the regression target, and runs on the demo shards (scripted and CLI)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math

import pytest
import torch

from mtvr_data.rewards import dgrpo_weight
from tests.train.conftest import demo_paths, dgrpo_config
from train.config import TrainConfigError
from train.dgrpo import build_dgrpo_trainer
from train.reg_grpo import (
    GROUP_KEY,
    RegGrpoSettings,
    check_reg_grpo_args,
    check_whole_groups,
    reg_grpo_loss,
    split_by_group,
)


def _rows(values_per_row: list[list[float]]) -> torch.Tensor:
    width = max(len(v) for v in values_per_row)
    return torch.tensor([v + [0.0] * (width - len(v)) for v in values_per_row])


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1.0] * n + [0.0] * (width - n) for n in lengths])


# --- the formula ----------------------------------------------------------------------------------------------


def test_loss_equals_the_formula_on_a_hand_computed_group():
    # One group of G = 3. Token log-ratios (policy - old) over each response's own tokens:
    #   row 0: 0.1 + 0.2 = 0.3;  row 1: -0.1 (one token; the pad after it is masked);  row 2: 0.05 + 0.05 = 0.1
    old = torch.zeros(3, 2)
    logps = torch.tensor([[0.1, 0.2], [-0.1, 7.0], [0.05, 0.05]])
    mask = _mask([2, 1, 2], 2)
    advantages = torch.tensor([1.2, -0.3, -0.9])
    eps = 1e-4
    terms = reg_grpo_loss(logps, old, mask, advantages, torch.zeros(3, dtype=torch.long), RegGrpoSettings(eps=eps))
    # rho = [0.3, -0.1, 0.1]; mean 0.1; unbiased var = (0.04 + 0.04 + 0) / 2 = 0.04; std = sqrt(0.04 + eps)
    std = math.sqrt(0.04 + eps)
    predicted = [0.2 / std, -0.2 / std, 0.0]
    expected = sum((a - p) ** 2 for a, p in zip([1.2, -0.3, -0.9], predicted, strict=True)) / 3
    assert terms.loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms.groups == 1 and terms.degenerate == 0.0

    # Mean token log-probs instead: rho = [0.15, -0.1, 0.05].
    mean_terms = reg_grpo_loss(logps, old, mask, advantages, torch.zeros(3, dtype=torch.long), RegGrpoSettings("mean"))
    rho = [0.15, -0.1, 0.05]
    m = sum(rho) / 3
    s = math.sqrt(sum((r - m) ** 2 for r in rho) / 2 + 1e-4)
    expected_mean = sum((a - (r - m) / s) ** 2 for a, r in zip([1.2, -0.3, -0.9], rho, strict=True)) / 3
    assert mean_terms.loss.item() == pytest.approx(expected_mean, rel=1e-5)


def test_kl_term_is_added_with_plus_beta_and_groups_are_averaged():
    # Two groups of 2 with rho = [0.2, 0] and [0, 0.4]; A = [1, -1] and [-1, 1] (one token each).
    logps = torch.tensor([[0.2], [0.0], [0.0], [0.4]])
    old = torch.zeros(4, 1)
    ref = torch.tensor([[0.1], [0.0], [0.3], [0.4]])
    mask = torch.ones(4, 1)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    groups = torch.tensor([5, 5, 9, 9])
    terms = reg_grpo_loss(logps, old, mask, adv, groups, RegGrpoSettings(eps=1e-4), ref_logps=ref, beta=0.1)

    def group_term(rho, a):
        m = sum(rho) / 2
        s = math.sqrt(sum((r - m) ** 2 for r in rho) + 1e-4)  # unbiased: divide by G - 1 = 1
        return sum((ai - (r - m) / s) ** 2 for ai, r in zip(a, rho, strict=True)) / 2

    regression = (group_term([0.2, 0.0], [1, -1]) + group_term([0.0, 0.4], [-1, 1])) / 2
    k3 = [math.exp(r - p) - (r - p) - 1 for r, p in zip([0.1, 0.0, 0.3, 0.4], [0.2, 0.0, 0.0, 0.4], strict=True)]
    assert terms.regression.item() == pytest.approx(regression, rel=1e-5)
    assert terms.kl.item() == pytest.approx(sum(k3) / 4, rel=1e-5)
    assert terms.loss.item() == pytest.approx(regression + 0.1 * sum(k3) / 4, rel=1e-5)
    with pytest.raises(ValueError, match="reference"):
        reg_grpo_loss(logps, old, mask, adv, groups, beta=0.1)


def test_a_failed_rollout_leaves_its_group_statistics():
    logps = torch.tensor([[0.3], [-0.1], [0.1], [5.0]])
    mask = torch.tensor([[1.0], [1.0], [1.0], [0.0]])  # row 3 failed: no trained token
    adv = torch.tensor([1.0, -1.0, 0.0, 0.0])
    full = reg_grpo_loss(logps, torch.zeros(4, 1), mask, adv, torch.zeros(4, dtype=torch.long))
    three = reg_grpo_loss(logps[:3], torch.zeros(3, 1), mask[:3], adv[:3], torch.zeros(3, dtype=torch.long))
    assert full.loss.item() == pytest.approx(three.loss.item(), rel=1e-6)


# --- the zero-variance trap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["equal_rho", "equal_rewards", "both"])
@pytest.mark.parametrize("detach_std", [False, True])
def test_loss_and_gradients_stay_finite_in_the_degenerate_cases(case, detach_std):
    torch.manual_seed(0)
    old = torch.randn(4, 3)
    drift = torch.zeros(4, 3) if case in ("equal_rho", "both") else torch.randn(4, 3) * 0.1
    logps = (old + drift).clone().requires_grad_(True)  # equal_rho: pi_theta = pi_old, every rho = 0
    adv = torch.zeros(4) if case in ("equal_rewards", "both") else torch.tensor([1.2, -0.4, 0.4, -1.2])
    terms = reg_grpo_loss(
        logps, old, torch.ones(4, 3), adv, torch.zeros(4, dtype=torch.long), RegGrpoSettings(detach_std=detach_std)
    )
    terms.loss.backward()
    assert math.isfinite(terms.loss.item())
    assert torch.isfinite(logps.grad).all()
    if case == "equal_rho":
        assert terms.degenerate == 1.0
        assert terms.loss.item() == pytest.approx((adv**2).mean().item(), rel=1e-6)
        assert logps.grad.abs().sum() > 0  # it still pushes in the direction of the advantages
    if case == "both":
        assert terms.loss.item() == 0.0


def test_the_trap_without_eps_and_why_eps_goes_inside_the_root():
    """Equal log-ratios: no eps gives non-finite gradients (inf through the ratio, NaN through sqrt(var)); eps
    added to the std keeps them finite but of size 1/eps; inside the root they are of size 1/sqrt(eps)."""
    target = torch.tensor([1.0, -1.0, 0.5, -0.5])

    def grad(normalise):
        rho = torch.zeros(4, requires_grad=True)
        ((target - normalise(rho)) ** 2).mean().backward()
        return rho.grad

    assert not torch.isfinite(grad(lambda r: (r - r.mean()) / r.std())).all()
    assert torch.isnan(grad(lambda r: (r - r.mean()) / torch.sqrt(r.var()))).all()
    outside = grad(lambda r: (r - r.mean()) / (r.std() + 1e-4)).abs().max().item()
    logps = torch.zeros(4, 1, requires_grad=True)
    reg_grpo_loss(logps, torch.zeros(4, 1), torch.ones(4, 1), target, torch.zeros(4, dtype=torch.long)).loss.backward()
    inside = logps.grad.abs().max().item()
    assert outside == pytest.approx(0.5 * 1e4, rel=1e-3)  # (2/G) * max|A| / eps
    assert inside == pytest.approx(0.5 * 1e2, rel=1e-2)  # (2/G) * max|A| / sqrt(eps)


def test_detaching_the_std_changes_the_gradient_but_the_mean_needs_no_choice():
    torch.manual_seed(1)
    old = torch.zeros(4, 2)
    base = torch.randn(4, 2) * 0.3
    adv = torch.tensor([1.0, 0.5, -0.5, -1.0])
    grads = {}
    for detach in (False, True):
        logps = base.clone().requires_grad_(True)
        reg_grpo_loss(
            logps, old, torch.ones(4, 2), adv, torch.zeros(4, dtype=torch.long), RegGrpoSettings(detach_std=detach)
        ).loss.backward()  # noqa: E501
        grads[detach] = logps.grad
    assert not torch.allclose(grads[False], grads[True])
    # Shifting every rho of a group by the same amount changes nothing: the gradient through the mean is zero.
    logps = base.clone().requires_grad_(True)
    shifted = (base + 0.25).clone().requires_grad_(True)
    a = reg_grpo_loss(logps, old, torch.ones(4, 2), adv, torch.zeros(4, dtype=torch.long)).loss
    b = reg_grpo_loss(shifted, old, torch.ones(4, 2), adv, torch.zeros(4, dtype=torch.long)).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_configurations_that_make_the_target_undefined_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="train.reg_grpo"):
        problems = check_reg_grpo_args({"num_iterations": 1, "scale_rewards": "none", "num_generations": 2})
    assert len(problems) == 3
    assert "num_iterations = 1" in caplog.text and "scale_rewards" in caplog.text
    assert check_reg_grpo_args({"num_iterations": 2, "scale_rewards": "group", "num_generations": 8}) == []
    with pytest.raises(ValueError, match="eps"):
        RegGrpoSettings(eps=0.0)
    with pytest.raises(ValueError, match="logp"):
        RegGrpoSettings(logp="max")


# --- whole groups per micro-batch -----------------------------------------------------------------------------


def test_split_by_group_keeps_groups_whole_and_every_column_aligned():
    G, rows = 4, 16
    batch = {
        GROUP_KEY: torch.arange(rows) // G,
        "advantages": torch.arange(rows, dtype=torch.float32),
        "mtvr_media": [f"m{i}" for i in range(rows)],
        "num_items_in_batch": torch.tensor(99),
        "absent": None,
    }
    chunks = split_by_group(batch, 2, G, torch.Generator().manual_seed(3))
    assert len(chunks) == 2
    seen = []
    for chunk in chunks:
        check_whole_groups(chunk[GROUP_KEY], G)
        assert chunk["num_items_in_batch"].item() == 99 and chunk["absent"] is None
        for g, a, m in zip(chunk[GROUP_KEY].tolist(), chunk["advantages"].tolist(), chunk["mtvr_media"], strict=True):
            assert g == int(a) // G and m == f"m{int(a)}"
            seen.append(int(a))
    assert sorted(seen) == list(range(rows))
    with pytest.raises(ValueError, match="multiple of num_generations"):
        split_by_group(batch, 3, G)
    with pytest.raises(RuntimeError, match="partial groups"):
        check_whole_groups(torch.tensor([0, 0, 1]), 2)


# --- in the trainer, on the demo shards -----------------------------------------------------------------------


def _config(demo_dir, out, args=None, **over):
    args = {"max_steps": 2, "learning_rate": 1e-3, **(args or {})}
    return dgrpo_config(demo_dir, out, args, **{"loss": "reg_grpo", **over})


def test_reg_grpo_defaults_and_layout_checks(demo_dir, tmp_path):
    config = dgrpo_config(demo_dir, tmp_path / "d", loss="reg_grpo")
    config.args = {}
    args = config.trainer_args()
    assert (args["beta"], args["num_generations"], args["num_iterations"]) == (0.1, 8, 2)
    plain = dgrpo_config(demo_dir, tmp_path / "e")
    plain.args = {}
    assert plain.trainer_args()["beta"] == 0.01
    with pytest.raises(TrainConfigError, match="loss must be one of"):
        _config(demo_dir, tmp_path / "f", loss="ppo")
    # Valid for TRL (4 rows per generation batch, G = 4) but not for Reg-GRPO (2 rows per micro-batch).
    bad = _config(demo_dir, tmp_path / "g")
    bad.args.update(per_device_train_batch_size=2, num_generations=4, steps_per_generation=2)
    with pytest.raises(ValueError, match="per_device_train_batch_size \\(2\\) must be a multiple"):
        build_dgrpo_trainer(bad)


@pytest.mark.parametrize("rule", ["grpo", "dgrpo"])
def test_reg_grpo_targets_are_the_dgrpo_weighted_advantages(demo_dir, tmp_path, scripted_policy, rule):
    """With the difficulty weight on, each group's regression target is its GRPO advantage times w(D)."""
    trainer = build_dgrpo_trainer(_config(demo_dir, tmp_path / rule, advantage=rule))
    trainer.engine_factory = lambda _: scripted_policy
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    text = [r for r in rows if not r["tools"]][:2]
    batch = [text[0], text[0], text[1], text[1]]
    out = trainer._generate_and_score_completions(batch)
    totals = trainer._gathered_rewards.nansum(dim=1).view(-1, 2)
    plain = (totals - totals.mean(1, keepdim=True)) / (totals.std(1, keepdim=True) + 1e-4)
    w = torch.tensor([dgrpo_weight(d) if rule == "dgrpo" else 1.0 for d in totals.mean(1).tolist()])
    assert torch.allclose(out["advantages"], (plain * w[:, None]).reshape(-1), atol=1e-4)
    assert out[GROUP_KEY].tolist() == [0, 0, 1, 1]
    loss = trainer._compute_loss(trainer.model, out)
    assert math.isfinite(loss.item())
    # At pi_theta = pi_old the prediction is 0, so the regression term is the mean squared target.
    mode = "train" if trainer.model.training else "eval"
    assert trainer._metrics[mode]["reg_grpo/regression"][-1] == pytest.approx(
        (out["advantages"] ** 2).mean().item(), rel=1e-4
    )


def test_reg_grpo_trains_with_two_inner_updates_and_whole_groups(demo_dir, tmp_path, scripted_policy):
    trainer = build_dgrpo_trainer(_config(demo_dir, tmp_path / "train"))
    trainer.engine_factory = lambda _: scripted_policy
    seen = []
    original = trainer._compute_loss

    def spy(model, inputs):
        seen.append(inputs[GROUP_KEY].tolist())
        return original(model, inputs)

    trainer._compute_loss = spy
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert scripted_policy.calls > 0 and len(seen) == 2
    for groups in seen:
        assert sorted(groups) == [0, 0, 1, 1]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(h["loss"]) for h in logs)
    # The second update re-uses the first's rollouts: pi_theta moved, so log-ratios now spread.
    assert logs[0]["reg_grpo/degenerate_share"] == 1.0
    assert logs[1]["reg_grpo/rho_std"] > 0
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in before.items())


def test_cli_runs_reg_grpo_with_augment_on_the_demo_shards(demo_dir, tmp_path):
    """`mtvr train dgrpo --loss reg_grpo --augment` with the tiny checkpoint generating its own rollouts."""
    import yaml

    from pipelines.cli import main

    tree = {
        "kind": "dgrpo",
        **demo_paths(demo_dir),
        "output_dir": str(tmp_path / "cli"),
        "frames": {"max_frames": 4},
        "rollout": {"max_new_tokens": 8, "max_total_tokens": 24},
        "args": {
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "report_to": [],
            "gradient_checkpointing": False,
            "save_strategy": "no",
            "bf16": False,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", "dgrpo", str(path), "--loss", "reg_grpo", "--augment"]) == 0
    done = json.loads((tmp_path / "cli" / "mtvr_train.json").read_text())
    assert done["config"]["loss"] == "reg_grpo" and done["config"]["augment"] is True
    assert math.isfinite(done["metrics"]["train_loss"])
