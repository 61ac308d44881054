"""How each benchmark's reference scores it: the reading mode, the headline aggregation and its denominators.

Why one table: a headline number can only stand beside a published one if it is counted the same way. The same
per-question results give 20.0 as a mean over questions and 50.0 as VSI-Bench's mean of task scores. Each
benchmark names the reference it follows (repository, commit, file; `docs/benchmarks.md` has the same table) and
`mtvr_data.eval_metrics.summarize` computes its headline from the per-question results by this rule. The
per-question mean is reported beside it, labelled, wherever the two differ.

| field         | values                                                                                          |
|---------------|-------------------------------------------------------------------------------------------------|
| `aggregation` | `per_question` (mean over questions), `task_mean` (mean of the per-category scores),             |
|               | `options_subset` (the questions with options only; the rest are reported on their own row)       |
| `reading`     | `tasks.reading.Reading`: letter mode (lenient / first_token / exact) and numeric rules            |
| `empty`       | `count` (a question without an answer is wrong and in the denominator) or `drop` (left out of the |
|               | headline's denominator and counted apart)                                                        |
| `unparsed`    | `zero`, or `expected_guess`: a letter answer that does not parse (or is missing) earns 1/n, the   |
|               | expected value of upstream's random guess among n options                                        |
| `thresholds`  | the grounding recalls R@t; `map_thresholds`: the IoU thresholds averaged into mAP                 |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mtvr_data.tasks.reading import Reading

__all__ = ["AGGREGATIONS", "DEFAULT_RULE", "SCORING_RULES", "ScoringRule", "scoring_rule"]

AGGREGATIONS = ("per_question", "task_mean", "options_subset")


def _vsi_task(category: str) -> str:
    """VSI-Bench's 8 tasks: the three `object_rel_direction_{easy,medium,hard}` types are one task."""
    return re.sub(r"^(object_rel_direction)_(easy|medium|hard)$", r"\1", category)


@dataclass(frozen=True)
class ScoringRule:
    """One benchmark's scoring, as its reference does it (module table)."""

    reference: str
    headline: str
    aggregation: str = "per_question"
    reading: Reading = field(default_factory=Reading)
    empty: str = "count"
    unparsed: str = "zero"
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    map_thresholds: tuple[float, ...] = ()
    #: category -> task for `task_mean` (a task that the reference averages from sub-categories).
    task_of: dict[str, str] = field(default_factory=dict)
    #: VSI-Bench: a task made of sub-categories scores the mean of their means (not of their questions).
    subtasks_averaged: bool = False

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.empty not in ("count", "drop") or self.unparsed not in ("zero", "expected_guess"):
            raise ValueError(f"bad empty/unparsed rule: {self.empty!r}, {self.unparsed!r}")

    def task(self, category: str) -> str:
        """The task a category belongs to (itself unless the reference merges it)."""
        if self.subtasks_averaged:
            return _vsi_task(category)
        return self.task_of.get(category, category)

    @property
    def mode(self) -> str:
        """The reading mode's name as reports show it."""
        return self.reading.letters


_MR = "mean over questions"

#: Every benchmark's rule. References are named (repository @ commit, file); `docs/benchmarks.md` lists the
#: deviations that remain.
SCORING_RULES: dict[str, ScoringRule] = {
    "charades-sta": ScoringRule("standard moment retrieval R1@t (QVHighlights/ReXTime `compute_mr_r1`)", _MR),
    "activitynet-mr": ScoringRule("standard moment retrieval R1@t (QVHighlights/ReXTime `compute_mr_r1`)", _MR),
    "vidchapters": ScoringRule(
        "antoyang/VidChapters, VMR evaluation (Moment-DETR `standalone_eval`: R1@0.3-0.9, mAP@0.5:0.95)",
        _MR,
        thresholds=(0.3, 0.5, 0.7, 0.9),
        map_thresholds=tuple(round(0.5 + 0.05 * i, 2) for i in range(10)),
    ),
    "nextgqa": ScoringRule("doc-doc/NExT-GQA, code/TempGQA/eval_ground.py", _MR),
    "rextime": ScoringRule("ReXTime/ReXTime, evaluation/rextime_eval.py", _MR),
    "longvideo-reason": ScoringRule("NVlabs/Long-RL (LongVideo-Reason eval), letter read from the answer", _MR),
    "video-mme": ScoringRule("Video-MME official eval_your_results.py (letter read from the answer)", _MR),
    "video-mmmu": ScoringRule(
        "EvolvingLMMs-Lab/lmms-eval @ 52776048, lmms_eval/tasks/videommmu/utils.py (MMMU parse, open-answer rule)",
        "mean over answered questions (empty responses dropped)",
        reading=Reading(letters="lenient", numbers="mmmu"),
        empty="drop",
    ),
    "mmvu": ScoringRule(
        "tulerfeng/Video-R1, src/eval_bench.py (multiple-choice subset, exact string)",
        "multiple-choice subset (open questions apart)",
        aggregation="options_subset",
        reading=Reading(letters="exact"),
    ),
    "mvbench": ScoringRule(
        "EvolvingLMMs-Lab/lmms-eval @ 1ab9504d, lmms_eval/tasks/mvbench/utils.py (answered questions; 20-task mean)",
        "mean of task accuracies (empty responses dropped)",
        aggregation="task_mean",
        empty="drop",
    ),
    "mlvu": ScoringRule(
        "JUNJIE99/MLVU, evaluation: M-Avg = mean of the multiple-choice task accuracies",
        "M-Avg: mean of task accuracies",
        aggregation="task_mean",
    ),
    "vsi-bench": ScoringRule(
        "vision-x-nyu/thinking-in-space @ e6a72f39, lmms_eval/tasks/vsibench/utils.py",
        "overall: mean of the 8 task scores",
        aggregation="task_mean",
        reading=Reading(letters="first_token", mra="official"),
        subtasks_averaged=True,
    ),
    "longvideobench": ScoringRule(
        "EvolvingLMMs-Lab/lmms-eval @ 3f426f26, lmms_eval/tasks/longvideobench/utils.py (MMMU parse, random guess)",
        "mean over questions, unparsed answers at 1/n",
        unparsed="expected_guess",
    ),
}

DEFAULT_RULE = ScoringRule("this project's reading (no reference)", _MR)


def scoring_rule(benchmark: str) -> ScoringRule:
    """The rule of `benchmark`; a benchmark without one is scored per question, read leniently."""
    return SCORING_RULES.get(benchmark, DEFAULT_RULE)
