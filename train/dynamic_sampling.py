"""Dynamic sampling (DAPO's `filter_groups`, as in verl and EasyVideoR1): keep only groups that carry a gradient.

Why: under GRPO a group whose rewards are all equal gets advantage 0 on every rollout, so it costs a rollout and a
backward and teaches nothing; the demo run logged a zero-variance share of 1.0. After a generation batch is rolled
out, each zero-variance group (an all-unscorable one too) is replaced by a group of a further prompt whose rollouts
do differ, drawn from the training rows and rolled out in rounds, up to `max_rounds` rounds. Groups still flat after
the last round stay (the batch keeps its shape, and they get advantage 0 as before). The share of zero-variance
groups before and after is reported and logged.

It runs on each process's own groups before DA-Aug and before the rewards, so DA-Aug sees the refilled batch and
DGRPO's w(D) is computed on it. The replaced rows are written into the caller's row list in place: TRL computes the
rewards from those rows, so the answer a refilled group is scored against is its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from train.augment import zero_variance
from train.rollouts import PolicyRollouts, RolloutBatch, runs_of_same_id


@dataclass(frozen=True, slots=True)
class DynamicSamplingSettings:
    """`max_rounds`: how many refill rounds (each one rollout call over as many new prompts as groups to replace)."""

    max_rounds: int = 2

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError(f"dynamic_sampling.max_rounds must be >= 1, got {self.max_rounds}")


@dataclass(slots=True)
class FilterReport:
    """What one generation batch's filter did: zero-variance share before and after, rounds run, groups replaced."""

    groups: int
    zero_variance_before: float
    zero_variance_after: float
    rounds: int = 0
    replaced: int = 0
    prompts_drawn: int = 0


class PromptStream:
    """Further training rows, in a seeded random order that restarts when exhausted (one stream per process)."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def take(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            if not self.order:
                self.order = list(range(len(self.dataset)))
                self.rng.shuffle(self.order)
            out.append(dict(self.dataset[self.order.pop()]))
        return out


class GroupFilter:
    """Replaces the zero-variance groups of a rolled-out batch (module docstring). `draw(n)` gives n further rows."""

    def __init__(self, settings: DynamicSamplingSettings, draw: Callable[[int], list[dict[str, Any]]]) -> None:
        self.settings = settings
        self.draw = draw

    def __call__(
        self, rows: list[dict[str, Any]], batch: RolloutBatch, engine: Any, rollouts: PolicyRollouts
    ) -> tuple[RolloutBatch, FilterReport]:
        groups = runs_of_same_id(rows)
        flat = [g for g, (start, size) in enumerate(groups) if zero_variance(batch.trajectories[start : start + size])]
        report = FilterReport(len(groups), len(flat) / max(1, len(groups)), 0.0)
        picks: list[tuple[RolloutBatch, int]] = [(batch, i) for i in range(len(batch))]
        for _ in range(self.settings.max_rounds):
            if not flat:
                break
            report.rounds += 1
            fresh = self.draw(len(flat))
            report.prompts_drawn += len(fresh)
            sizes = [groups[g][1] for g in flat]
            candidate_rows = [
                {**row, "id": f"{row['id']}#refill{report.rounds}.{n}"}
                for n, (row, size) in enumerate(zip(fresh, sizes, strict=True))
                for _ in range(size)
            ]
            candidates = rollouts(candidate_rows, engine)
            still_flat = []
            offset = 0
            for g, size in zip(flat, sizes, strict=True):
                span = range(offset, offset + size)
                offset += size
                if zero_variance([candidates.trajectories[i] for i in span]):
                    still_flat.append(g)
                    continue
                start = groups[g][0]
                for j, i in enumerate(span):
                    picks[start + j] = (candidates, i)
                    rows[start + j] = candidate_rows[i]
                report.replaced += 1
            flat = still_flat
        report.zero_variance_after = len(flat) / max(1, len(groups))
        return (batch if report.replaced == 0 else RolloutBatch.pick(picks)), report
