"""DeepVideo-R1's Reg-GRPO loss (docs/papers.md), registered as the trainer's `reg_grpo` loss.

Reg-GRPO regresses the group-normalised reward advantage A_i onto the group-normalised sequence log-ratio:

    rho_i     = sum over the response's own tokens of (log pi_theta - log pi_old)      (`logp: sum`)
    A_theta_i = (rho_i - mean(rho)) / sqrt(var(rho) + eps)                              (one group of G)
    loss      = mean over groups of (1/G) sum_i (A_i - A_theta_i)^2  +  beta * KL(pi_theta || pi_ref)

A_i is the advantage the trainer already computed: TRL's group-normalised reward advantage, times DGRPO's w(D)
when the `dgrpo` advantage rule is on, so VITAL's difficulty weight and DeepVideo-R1's loss combine. The KL is
TRL's per-token k3 estimate, averaged over each response's tokens and then over responses, with +beta (the paper
prints a minus sign; docs/papers.md explains why that is a slip).

The choices the paper leaves open are `RegGrpoSettings` fields, each with its reason (docs/training.md):
- `logp: sum` (the paper's "sequence level") or `mean` (per token, so long responses do not dominate rho);
- `eps` inside the square root, not added to the std: at pi_theta = pi_old every rho is 0 and var = 0. Without
  eps, (rho - mean) / std has infinite gradients and sqrt(var)'s backward is NaN (measured, torch 2.14). eps added
  to the std keeps them finite but of size 1/eps; sqrt(var + eps) has a finite derivative at 0 and gradients of
  size 1/sqrt(eps) (tests/train/test_reg_grpo.py). eps = 1e-4 sets the scale below which log-ratio spreads are
  treated as noise: a spread of 1e-2 nats per response counts fully, much smaller ones are shrunk to zero;
- `detach_std`: whether gradients flow through the group's std. The mean needs no such choice: the gradient
  through mean(rho) is exactly zero, because both A and A_theta sum to zero within a group.
- inner updates: TRL's `num_iterations` (default 2 with this loss; `train.config`), the number of optimiser
  steps taken on one rollout batch. With 1, every rho is 0 at its only update, so the regression target is
  undefined (the loss is mean(A^2) and its gradient is A / sqrt(eps) in the direction of plain policy
  gradient); `check_reg_grpo_args` warns.

A group needs all its members in the same micro-batch (A_theta is a within-group normalisation), so the trainer
keeps groups whole when it splits a generation batch (`train.dgrpo`, `split_by_group`) and each row carries its
group index (`GROUP_KEY`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

GROUP_KEY = "mtvr_group"
LOGP_MODES = ("sum", "mean")


@dataclass(frozen=True)
class RegGrpoSettings:
    """The open choices of Reg-GRPO (see the module docstring for each default's reason)."""

    logp: str = "sum"
    eps: float = 1e-4
    detach_std: bool = False

    def __post_init__(self) -> None:
        if self.logp not in LOGP_MODES:
            raise ValueError(f"reg_grpo.logp must be one of {LOGP_MODES}, not {self.logp!r}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"reg_grpo.eps must be > 0 (it keeps the std's gradient finite), not {self.eps}")


@dataclass(frozen=True)
class RegGrpoTerms:
    """The loss and its parts, for logging: `degenerate` = share of groups whose rho spread is below sqrt(eps)."""

    loss: torch.Tensor
    regression: torch.Tensor
    kl: torch.Tensor
    rho_std: torch.Tensor
    degenerate: float
    groups: int


def sequence_log_ratio(
    logps: torch.Tensor, old_logps: torch.Tensor, mask: torch.Tensor, mode: str = "sum"
) -> torch.Tensor:
    """rho per response: the summed (or mean) log-ratio over the tokens the policy wrote (mask 1)."""
    diff = ((logps - old_logps) * mask).sum(-1)
    if mode == "mean":
        return diff / mask.sum(-1).clamp(min=1.0)
    return diff


def reg_grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    groups: torch.Tensor,
    settings: RegGrpoSettings = RegGrpoSettings(),
    *,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
) -> RegGrpoTerms:
    """Reg-GRPO on a micro-batch of whole groups ([B, T] log-probs and mask, [B] advantages and group ids).

    Rows with no trained token (a failed rollout) are left out of their group's statistics and of the loss; a
    group with fewer than two such rows has no std and adds nothing. Finite for any input: all-equal rho
    (pi_theta = pi_old) and all-equal rewards (A = 0) included.
    """
    mask = mask.to(logps.dtype)
    valid = mask.sum(-1) > 0
    rho = sequence_log_ratio(logps, old_logps, mask, settings.logp)
    _, index = torch.unique(groups, return_inverse=True)
    n_groups = int(index.max().item()) + 1 if index.numel() else 0
    w = valid.to(rho.dtype)
    count = torch.zeros(n_groups, dtype=rho.dtype, device=rho.device).index_add_(0, index, w)
    usable = count >= 2
    mean = torch.zeros_like(count).index_add_(0, index, rho * w) / count.clamp(min=1)
    centred = (rho - mean[index]) * w
    var = torch.zeros_like(count).index_add_(0, index, centred**2) / (count - 1).clamp(min=1)
    std = torch.sqrt(var + settings.eps)
    if settings.detach_std:
        std = std.detach()
    predicted = centred / std[index]
    row_weight = w * usable[index].to(rho.dtype) / count.clamp(min=1)[index]
    used = int(usable.sum().item())
    squared = (advantages.to(rho.dtype) - predicted) ** 2
    regression = (squared * row_weight).sum() / max(used, 1)
    kl = torch.zeros((), dtype=rho.dtype, device=rho.device)
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta != 0 needs the reference model's log-probs")
        per_token = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_row = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        kl = (per_row * w).sum() / w.sum().clamp(min=1.0)
    raw_std = torch.sqrt(var.detach())
    degenerate = float((raw_std[usable] < math.sqrt(settings.eps)).float().mean().item()) if used else 0.0
    return RegGrpoTerms(
        loss=regression + beta * kl,
        regression=regression.detach(),
        kl=kl.detach(),
        rho_std=raw_std[usable].mean() if used else torch.zeros(()),
        degenerate=degenerate,
        groups=used,
    )


def check_reg_grpo_args(args: Mapping[str, Any]) -> list[str]:
    """Warnings for trainer arguments under which Reg-GRPO's regression target is undefined or not the paper's."""
    problems = []
    if int(args.get("num_iterations", 1)) < 2:
        problems.append(
            "num_iterations = 1: each rollout batch gets one update, at which pi_theta = pi_old, so every "
            "log-ratio is 0 and A_theta is 0/0; the loss stays finite (eps) but regresses onto nothing. "
            "Use num_iterations >= 2 (the default with loss reg_grpo)."
        )
    if args.get("scale_rewards", "group") not in ("group", True):
        problems.append(
            f"scale_rewards = {args.get('scale_rewards')!r}: the advantages are not divided by the group's "
            "reward std, so the target is not Reg-GRPO's normalised advantage."
        )
    if int(args.get("num_generations", 8)) < 3:
        problems.append("num_generations < 3: a group's std of rho rests on at most 2 responses.")
    for problem in problems:
        log.warning("Reg-GRPO: %s", problem)
    return problems


def regrpo_loss_for_trainer(trainer: Any, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """The `reg_grpo` entry of `train.dgrpo.LOSSES`: policy, old and reference log-probs from the trainer's
    video-aware pass, the loss above, scaled for gradient accumulation as TRL scales its own."""
    prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
    completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
    logps, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, completion_ids.size(1))
    old = inputs.get("old_per_token_logps")
    old = logps.detach() if old is None else old
    group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
    check_whole_groups(inputs[GROUP_KEY], group)
    advantages = inputs["advantages"]
    if advantages.dim() > 1:
        advantages = advantages.squeeze(-1)
    terms = reg_grpo_loss(
        logps,
        old,
        mask,
        advantages,
        inputs[GROUP_KEY],
        trainer.reg_grpo,
        ref_logps=inputs.get("ref_per_token_logps"),
        beta=trainer.beta,
    )
    mode = "train" if trainer.model.training else "eval"
    metrics = trainer._metrics[mode]
    gather = trainer.accelerator.gather
    metrics["reg_grpo/regression"].append(gather(terms.regression.reshape(1)).mean().item())
    metrics["reg_grpo/rho_std"].append(gather(terms.rho_std.detach().reshape(1).to(logps.device)).mean().item())
    metrics["reg_grpo/degenerate_share"].append(terms.degenerate)
    if trainer.beta != 0.0:
        metrics["kl"].append(gather(terms.kl.reshape(1)).mean().item())
    normalizer = trainer.current_gradient_accumulation_steps if mode == "train" else 1.0
    return terms.loss / normalizer


def split_by_group(
    batch: dict[str, Any], num_chunks: int, group_size: int, generator: torch.Generator | None = None
) -> list[dict[str, Any]]:
    """A generation batch shuffled by whole groups and cut into `num_chunks` micro-batches of whole groups.

    TRL shuffles rows, which scatters a group over micro-batches; Reg-GRPO normalises within a group, so it
    shuffles groups instead. Rows must come grouped (G consecutive rows per prompt, as TRL's sampler gives them)
    and each micro-batch must hold a whole number of groups.
    """
    rows = len(batch[GROUP_KEY])
    if rows % group_size or (rows // group_size) % num_chunks:
        raise ValueError(
            f"{rows} rows do not split into {num_chunks} micro-batches of whole groups of {group_size}: make "
            "per_device_train_batch_size a multiple of num_generations"
        )
    n_groups = rows // group_size
    order = torch.randperm(n_groups, generator=generator)
    index = (order[:, None] * group_size + torch.arange(group_size)[None, :]).reshape(-1)
    chunk = rows // num_chunks

    def take(value: Any, lo: int, hi: int) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        picked = index[lo:hi]
        if isinstance(value, torch.Tensor):
            return value[picked.to(value.device)]
        if isinstance(value, list):
            return [value[i] for i in picked.tolist()]
        return value

    return [{k: take(v, i * chunk, (i + 1) * chunk) for k, v in batch.items()} for i in range(num_chunks)]


def check_whole_groups(groups: torch.Tensor, group_size: int) -> None:
    """Raise unless every group id in a micro-batch appears exactly `group_size` times."""
    _, counts = torch.unique(groups, return_counts=True)
    if bool((counts != group_size).any()):
        raise RuntimeError(
            f"Reg-GRPO got a micro-batch with partial groups (sizes {sorted(set(counts.tolist()))}, G = {group_size})"
        )
