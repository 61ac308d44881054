"""Advantage rules: how a group's rewards rescale the library's group-normalised advantages.

The trainer lets TRL compute the plain GRPO advantage (r - mean) / (std + eps) per group, then applies a rule.
`grpo` leaves it as it is, so a run with it is TRL's GRPO exactly; `dgrpo` multiplies each group by VITAL's
difficulty weight w(D), D = the group's mean total reward (`mtvr_data.rewards.dgrpo_weight`, the code form of
docs/papers.md). A rule is a small object so the next methods (DeepVideo-R1's DA-Aug changes prompts, Reg-GRPO the
loss) plug in beside it without copying the trainer.

Unscorable rollouts (every reward None) are NaN in `rewards` and left out of D; a group with no scorable rollout
gets weight 1 (its advantages are 0 anyway).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from mtvr_data.rewards import dgrpo_weight


class AdvantageRule(Protocol):
    """Per-group weights for [groups, G] total rewards (NaN = unscorable); advantages are multiplied by them."""

    name: str

    def weights(self, rewards: torch.Tensor) -> torch.Tensor: ...


class GrpoRule:
    """Plain GRPO: every group keeps weight 1."""

    name = "grpo"

    def weights(self, rewards: torch.Tensor) -> torch.Tensor:
        return torch.ones(rewards.shape[0], dtype=torch.float32, device=rewards.device)


class DgrpoRule:
    """VITAL's DGRPO: w = 0.5 * clamp(2 - D, 0, 1) + 0.5 per group (hard groups keep full weight, easy ones half)."""

    name = "dgrpo"

    def weights(self, rewards: torch.Tensor) -> torch.Tensor:
        means = torch.nanmean(rewards.float(), dim=1).tolist()
        values = [1.0 if math.isnan(d) else dgrpo_weight(d) for d in means]
        return torch.tensor(values, dtype=torch.float32, device=rewards.device)


RULES: dict[str, type[GrpoRule] | type[DgrpoRule]] = {"grpo": GrpoRule, "dgrpo": DgrpoRule}


def make_rule(name: str) -> AdvantageRule:
    try:
        return RULES[name]()
    except KeyError:
        raise ValueError(f"unknown advantage rule {name!r}; known: {sorted(RULES)}") from None


def apply_rule(
    rule: AdvantageRule, rewards: torch.Tensor, advantages: torch.Tensor, group_size: int, local: slice
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the local advantages times their group's weight, the per-group weights).

    `rewards` are the gathered totals of every process ([N], grouped by consecutive `group_size`); `advantages`
    are this process's slice `local` of the gathered advantages, as TRL returns them.
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    weights = rule.weights(rewards.view(-1, group_size))
    per_row = weights.repeat_interleave(group_size)[local].to(advantages.device, advantages.dtype)
    return advantages * per_row, weights


def zero_variance_share(rewards: torch.Tensor) -> float:
    """Share of groups ([groups, G] totals, NaN = unscorable) whose scorable rewards are all equal: their GRPO
    advantages vanish (DeepVideo-R1's "vanishing advantage" ratio)."""
    if rewards.numel() == 0:
        return 0.0
    flat = []
    for row in rewards.float().tolist():
        values = [v for v in row if not math.isnan(v)]
        flat.append(len(values) < 2 or max(values) - min(values) < 1e-9)
    return sum(flat) / len(flat)
