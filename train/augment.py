"""DeepVideo-R1's difficulty-aware augmentation (DA-Aug, docs/papers.md), as a step of the trainer's rollouts.

After a generation batch is rolled out, each group's mean reward rbar(x) is compared with the mean over a
replay buffer of the most recent W samples' mean rewards: Delta_R = buffer mean - rbar(x).

- Delta_R > threshold (hard: below the recent average): the sample gets a hint. The policy writes `hint_samples`
  answer-conditioned traces (the teacher's answer note, `model.teacher.hint_for`), the highest-reward one is kept,
  and its first `round(|Delta_R|) + hint_base_steps` reasoning steps (sentences of its first <think>) go into
  the user turn (`model.prompts.build_messages(hint=...)`): a longer part for a larger |Delta_R|.
- Delta_R < -threshold (easy): the sample's prompt frames get Gaussian noise of std
  `noise_std * (|Delta_R| + 1)` 8-bit levels, or (easy: mask) a fraction `mask_ratio * |Delta_R|` of its
  frames blacked out, through the shared frame path (`mtvr_data.frames.FramePerturbation`), seeded so the
  loss's forward sees the frames the rollout saw. The tool's clips are left clean.
- Otherwise the sample is left alone.

Each augmented sample is rolled out again and its G rollouts replace the group's in the batch, so the loss
trains on the augmented prompt (the paper's Fig. 1). The buffer takes the groups' mean rewards of the original
rollouts, gathered over processes so every rank shares one buffer; while it is empty the batch's own mean is
the reference. The defaults and their reasons are in docs/training.md (the scales follow an unverified summary
of an earlier paper version, named as such).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.engine_api import Engine
from model.teacher import TeacherConfig, hint_for
from model.trajectory import Trajectory
from mtvr_data.frames import FramePerturbation
from mtvr_data.parsing import parse_blocks
from train.data import rl_record
from train.rollouts import PolicyRollouts, RolloutBatch, runs_of_same_id

log = logging.getLogger(__name__)

HINT = "(Hint) A good line of reasoning for this question begins: {prefix}"
HINT_UNITS = ("sentence", "word")
EASY_KINDS = ("noise", "mask")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class AugmentSettings:
    """DA-Aug's settings; docs/training.md gives each default's reason."""

    window: int = 100
    threshold: float = 0.25
    hint_samples: int = 4
    hint_unit: str = "sentence"
    hint_base_steps: int = 1
    hint_max_steps: int = 8
    easy: str = "noise"
    noise_std: float = 16.0
    noise_max_std: float = 96.0
    mask_ratio: float = 0.25
    mask_max_ratio: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < 1 or self.hint_samples < 1 or self.hint_base_steps < 0 or self.hint_max_steps < 1:
            raise ValueError("augment: window, hint_samples and hint_max_steps must be >= 1, hint_base_steps >= 0")
        if not self.threshold >= 0:
            raise ValueError(f"augment.threshold must be >= 0, not {self.threshold}")
        if self.hint_unit not in HINT_UNITS:
            raise ValueError(f"augment.hint_unit must be one of {HINT_UNITS}, not {self.hint_unit!r}")
        if self.easy not in EASY_KINDS:
            raise ValueError(f"augment.easy must be one of {EASY_KINDS}, not {self.easy!r}")
        if not (0 <= self.noise_std <= self.noise_max_std and self.mask_ratio >= 0 and 0 < self.mask_max_ratio <= 1):
            raise ValueError("augment: need 0 <= noise_std <= noise_max_std, mask_ratio >= 0, 0 < mask_max_ratio <= 1")


@dataclass(frozen=True)
class Decision:
    """What DA-Aug does with one group: `hint` (with `steps`), `noise`/`mask` (with `strength`), or `none`."""

    action: str
    delta: float
    steps: int = 0
    strength: float = 0.0


def decide(delta: float, settings: AugmentSettings) -> Decision:
    """The action for a group from its Delta_R (buffer mean - group mean); NaN (no scorable rollout): none."""
    if math.isnan(delta) or abs(delta) <= settings.threshold:
        return Decision("none", delta)
    size = abs(delta)
    if delta > 0:
        steps = min(settings.hint_max_steps, round(size) + settings.hint_base_steps)
        return Decision("hint", delta, steps=max(1, steps))
    if settings.easy == "noise":
        return Decision("noise", delta, strength=min(settings.noise_max_std, settings.noise_std * (size + 1)))
    return Decision("mask", delta, strength=min(settings.mask_max_ratio, settings.mask_ratio * size))


class ReplayBuffer:
    """The most recent `window` samples' mean rewards."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)

    def reference(self, current: Sequence[float]) -> float:
        """The buffer's mean, or the current batch's while the buffer is empty (NaN values ignored)."""
        pool = list(self.values) or [v for v in current if not math.isnan(v)]
        return sum(pool) / len(pool) if pool else math.nan

    def push(self, values: Sequence[float]) -> None:
        self.values.extend(v for v in values if not math.isnan(v))


def reasoning_of(text: str) -> str:
    """The first <think> block of a trace (the shared parser's reading), stripped."""
    for block in parse_blocks(text):
        if block.kind == "think":
            return block.content.strip()
    return ""


def hint_prefix(reasoning: str, steps: int, unit: str = "sentence") -> str:
    """The first `steps` reasoning steps (sentences or words) of `reasoning`, as a literal prefix of it."""
    if steps < 1 or not reasoning:
        return ""
    pattern = _SENTENCE_END if unit == "sentence" else re.compile(r"\s+")
    cuts = [m.start() for m in pattern.finditer(reasoning)]
    end = cuts[steps - 1] if steps - 1 < len(cuts) else len(reasoning)
    return reasoning[:end].rstrip()


def group_mean_reward(trajectories: Sequence[Trajectory | None]) -> float:
    """Mean total reward of a group's scorable rollouts (NaN when none is scorable)."""
    values = [t.reward.total for t in trajectories if t is not None and t.reward is not None]
    return sum(values) / len(values) if values else math.nan


def zero_variance(trajectories: Sequence[Trajectory | None]) -> bool:
    """True when a group's scorable rewards are all equal (GRPO's advantages vanish)."""
    values = [t.reward.total for t in trajectories if t is not None and t.reward is not None]
    return len(values) < 2 or max(values) - min(values) < 1e-9


@dataclass
class AugmentReport:
    """What one call did, for the trainer's logs. `all_deltas` spans every process (for the histogram)."""

    decisions: list[Decision] = field(default_factory=list)
    all_deltas: list[float] = field(default_factory=list)
    hints: int = 0
    hint_failed: int = 0
    perturbed: int = 0
    zero_variance_before: float = 0.0
    reference: float = math.nan


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


class DifficultyAugmenter:
    """DA-Aug on a rolled-out generation batch (module docstring). `gather` shares the groups' mean rewards
    between processes (identity on one process)."""

    def __init__(
        self,
        settings: AugmentSettings,
        group_size: int,
        *,
        gather: Callable[[list[float]], list[float]] | None = None,
        teacher: TeacherConfig | None = None,
    ) -> None:
        self.settings = settings
        self.group_size = group_size
        self.buffer = ReplayBuffer(settings.window)
        self.gather = gather or (lambda values: list(values))
        self.teacher = teacher or TeacherConfig()

    def __call__(
        self,
        rows: list[dict[str, Any]],
        batch: RolloutBatch,
        engine: Engine,
        rollouts: PolicyRollouts,
        *,
        step: int = 0,
    ) -> tuple[RolloutBatch, AugmentReport]:
        runs = runs_of_same_id(rows)
        if any(length != self.group_size for _, length in runs):
            raise ValueError(
                f"DA-Aug needs each process to hold whole groups of {self.group_size} rollouts; got runs of "
                f"{sorted({n for _, n in runs})}: make per_device_train_batch_size x steps_per_generation a multiple "
                "of num_generations"
            )
        groups = [batch.trajectories[s : s + n] for s, n in runs]
        means = [group_mean_reward(g) for g in groups]
        everyone = self.gather(means)
        reference = self.buffer.reference(everyone)
        self.buffer.push(everyone)
        report = AugmentReport(
            decisions=[decide(reference - m, self.settings) for m in means],
            all_deltas=[reference - m for m in everyone if not math.isnan(m)],
            zero_variance_before=sum(zero_variance(g) for g in groups) / max(1, len(groups)),
            reference=reference,
        )
        hints = self._hints(rows, runs, report, engine, rollouts)
        perturbations: dict[str, FramePerturbation] = {}
        for (start, _), decision in zip(runs, report.decisions, strict=True):
            if decision.action in ("noise", "mask"):
                sample_id = rows[start]["id"]
                perturbations[sample_id] = FramePerturbation(
                    decision.action, decision.strength, _seed(self.settings.seed, step, sample_id)
                )
        report.perturbed = len(perturbations)
        chosen = [(s, n) for s, n in runs if rows[s]["id"] in hints or rows[s]["id"] in perturbations]
        if not chosen:
            return batch, report
        again_rows = [rows[i] for s, n in chosen for i in range(s, s + n)]
        again = rollouts(again_rows, engine, hints=hints, perturbations=perturbations)
        replaced = {i: j for j, i in enumerate(i for s, n in chosen for i in range(s, s + n))}
        picked = [(again, replaced[i]) if i in replaced else (batch, i) for i in range(len(rows))]
        log.info(
            "DA-Aug: reference %.3f, %d hinted, %d perturbed, %d hints failed, of %d groups",
            reference, report.hints, report.perturbed, report.hint_failed, len(runs),
        )  # fmt: skip
        return RolloutBatch.pick(picked), report

    def _hints(
        self,
        rows: list[dict[str, Any]],
        runs: list[tuple[int, int]],
        report: AugmentReport,
        engine: Engine,
        rollouts: PolicyRollouts,
    ) -> dict[str, str]:
        """Partial best answer-conditioned traces for the hard groups, by sample id."""
        hard = [(start, d) for (start, _), d in zip(runs, report.decisions, strict=True) if d.action == "hint"]
        if not hard:
            return {}
        k = self.settings.hint_samples
        cond_rows = [rows[start] for start, _ in hard for _ in range(k)]
        records = [rl_record(rows[start]) for start, _ in hard]
        notes = {r.sample.id: hint_for(r.sample, bool(r.tools), self.teacher) for r in records}
        traces = rollouts.trajectories(cond_rows, engine, hints=notes)
        hints: dict[str, str] = {}
        for n, ((_, decision), record) in enumerate(zip(hard, records, strict=True)):
            scored = [t for t in traces[n * k : (n + 1) * k] if t.reward is not None]
            best = max(scored, key=lambda t: t.reward.total if t.reward else -math.inf, default=None)
            trace = reasoning_of(best.assistant_text) if best is not None else ""
            prefix = hint_prefix(trace, decision.steps, self.settings.hint_unit)
            if prefix:
                hints[record.sample.id] = HINT.format(prefix=prefix)
            else:
                report.hint_failed += 1
        report.hints = len(hints)
        return hints
