"""Benchmark metrics: one model output scored against one `Sample`, and the per-benchmark aggregates.

Why this module exists apart from `rewards`: a reward is a training signal (scaled IoU, ROUGE, partial credit), a
benchmark metric is what a paper reports (R@0.5 counts a hit or not, NExT-GQA's Acc@GQA needs the answer AND the
evidence). Both read the model's text through the same functions (`mtvr_data.parsing`: only the last `<answer>`
block, `letter_score` (the one letter rule), `parse_span`, `parse_grounded`; `mtvr_data.temporal_iou` for IoU), so
an output reads the same when it is trained on and when it is evaluated; only what is counted differs.

Definitions (sources in `docs/evaluation.md`), all reported in percent:

- accuracy: a letter / number / text answer scores 1 or 0, a `regression` answer scores VSI-Bench's mean relative
  accuracy (MRA), read in the benchmark's reference's reading mode. The headline "Acc" is the reference's
  aggregation (`mtvr_data.benchmarks.scoring_rules`: task means, MMVU's multiple-choice subset, LongVideoBench's 1/n
  for an unparsed letter, empty responses dropped where the reference drops them); the plain per-question mean is
  shown beside it where it differs. Also per category (the benchmark's own, from `meta["category"]`).
- every span is scored against the windows as the benchmark published them (benchmark readers never clamp them).
- grounding (Charades-STA, ActivityNet, VidChapters): mIoU and R@{0.3, 0.5, 0.7} = share of samples with
  IoU >= threshold (an IoU exactly at the threshold is a hit, as in the standard moment-retrieval evaluation).
  With several ground-truth windows the best IoU counts.
- grounded QA, NExT-GQA (the official `eval_ground.py`): per ground-truth segment IoU and IoP (intersection over
  the PREDICTED length); with several segments the max IoU and the max IoP are taken independently. Acc@QA,
  Acc@GQA = right answer AND max IoP >= 0.5, mIoP, IoP@{0.3, 0.5}, mIoU, IoU@{0.3, 0.5}.
- grounded QA, ReXTime (the official `rextime_eval.py`): best IoU over windows, mIoU, R@{0.3, 0.5}, Acc, and
  Acc@IoU>=0.5 (right answer AND IoU >= 0.5).

Failed samples (unreadable video, engine error) stay in every denominator as wrong with IoU 0, and are counted
apart (`n_failed`, by reason), so a crash can never raise a score. (Both official scripts skip questions without
a prediction; we do not: a benchmark number must cover the whole benchmark.)

Per-sample results are written as JSON lines sorted by id, so two runs diff row by row (`diff_results`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtvr_data import storage
from mtvr_data.benchmarks.scoring_rules import ScoringRule, scoring_rule
from mtvr_data.parsing import extract_answer
from mtvr_data.schema import Sample
from mtvr_data.tasks import GroundTruth, Reading, family
from mtvr_data.tasks.answer_terms import MRA_THRESHOLDS, mean_relative_accuracy
from mtvr_data.temporal_iou import best_iop, temporal_iop

__all__ = [
    "FAILED",
    "GROUNDING_THRESHOLDS",
    "METRIC_KINDS",
    "MRA_THRESHOLDS",
    "NO_ANSWER",
    "OK",
    "BenchmarkSummary",
    "RowDiff",
    "SampleResult",
    "best_iop",
    "diff_results",
    "failed_result",
    "mean_relative_accuracy",
    "read_results",
    "render_diff",
    "score_sample",
    "summarize",
    "temporal_iop",
    "write_results",
]

#: Status of a per-sample result: an answer was read / the model gave none / the machinery failed.
OK, NO_ANSWER, FAILED = "ok", "no_answer", "failed"
METRIC_KINDS = ("accuracy", "grounding", "grounded_qa")
GROUNDING_THRESHOLDS = (0.3, 0.5, 0.7)
# --- per-sample results ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SampleResult:
    """One benchmark question, answered (or not) in one setting: what was asked, what came back, how it scored.

    `correct`: the answer term (tg: IoU >= 0.5, so a diff of two runs shows grounding flips too). `score`: 1/0,
    or MRA in [0, 1] for regression answers. `iou` (tg, gqa) is the best IoU over the ground-truth windows, `iop`
    (gqa) the best IoP; both are 0.0 for a sample without a readable span and None where they do not apply.
    `status`: ok (an answer was read), no_answer (the model wrote no `<answer>`), failed (`error` says why).
    """

    id: str
    benchmark: str
    setting: str
    task: str
    category: str
    gold: str
    prediction: str | None
    parsed: str | None
    correct: bool
    score: float
    iou: float | None = None
    iop: float | None = None
    windows: list[list[float]] = field(default_factory=list)
    tool_calls: int = 0
    status: str = OK
    finish_reason: str = ""
    error: str | None = None
    #: How many options the question had (0: an open question); the headline rules need it (MMVU's subset,
    #: LongVideoBench's 1/n guess). Results files written before it read as 0.
    num_options: int = 0
    #: The letter reading mode that scored the answer (`tasks.reading.Reading.letters`; "" in older files).
    reading: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> SampleResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


def _base(sample: Sample, truth: GroundTruth, *, benchmark: str, setting: str) -> dict[str, Any]:
    return {
        "id": sample.id,
        "benchmark": benchmark,
        "setting": setting,
        "task": sample.task,
        "category": str(sample.meta_dict.get("category", "") or ""),
        "gold": family(truth.task).gold(truth),
        "windows": [list(w) for w in truth.windows],
        "num_options": truth.num_options,
    }


def _missed(task: str) -> dict[str, float | None]:
    """IoU / IoP of an answer with no span: 0.0 where the task's metric has them, else None."""
    m = family(task).missed()
    return {"iou": m.iou, "iop": m.iop}


def score_sample(
    sample: Sample,
    text: str,
    *,
    benchmark: str,
    setting: str,
    tool_calls: int = 0,
    finish_reason: str = "",
    reading: Reading | None = None,
) -> SampleResult:
    """Score the model's assistant text (every turn joined) for `sample`; only the last `<answer>` block counts.

    The truth is the sample's windows as the benchmark published them (benchmark readers never clamp them).
    `reading`: how the answer is read; None = the benchmark's reference's reading (`scoring_rule(benchmark)`),
    e.g. `Reading()` for the lenient reading of any benchmark. The mode is kept in the result (`reading`).

    The per-sample score is the task family's metric (`mtvr_data.tasks`):
    - mcq / open: the answer term, counted as benchmarks count it (`tasks.answer_terms.answer_metric`).
    - tg: the last valid span of the answer, best IoU over the windows; correct = IoU >= 0.5.
    - gqa: "From S to E, <answer>": best IoU and best IoP of the span, and the answer term of the rest;
      correct = the answer term (Acc@QA), the span is judged by the aggregates.
    A sample whose own truth cannot be scored (a number answer that is not a number) raises `ValueError`.
    """
    truth = GroundTruth.of(sample)
    task = family(truth.task)
    reading = scoring_rule(benchmark).reading if reading is None else reading
    base = _base(sample, truth, benchmark=benchmark, setting=setting)
    base.update(tool_calls=tool_calls, finish_reason=finish_reason, reading=reading.letters)
    answer = extract_answer(text)
    if not answer:
        task.no_answer(truth)
        return SampleResult(
            **base,
            prediction=answer,
            parsed=None,
            correct=False,
            score=0.0,
            **_missed(truth.task),
            status=NO_ANSWER,
        )
    m = task.metric(truth, answer, reading)
    return SampleResult(
        **base, prediction=answer, parsed=m.parsed, correct=m.correct, score=m.score, iou=m.iou, iop=m.iop
    )


def failed_result(sample: Sample, *, benchmark: str, setting: str, reason: str, detail: str = "") -> SampleResult:
    """A sample the machinery could not answer (dead letter, engine error): wrong, IoU 0, with the reason kept."""
    truth = GroundTruth.of(sample)
    return SampleResult(
        **_base(sample, truth, benchmark=benchmark, setting=setting),
        prediction=None,
        parsed=None,
        correct=False,
        score=0.0,
        **_missed(truth.task),
        status=FAILED,
        finish_reason=reason,
        error=f"{reason}: {detail}" if detail else reason,
    )


# --- aggregation -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BenchmarkSummary:
    """The aggregate numbers of one benchmark in one setting (percent), and how many samples they cover.

    `n` counts every result (failed ones included: they are in every denominator); `failed_reasons` says why the
    failed ones failed. `by_category` maps each of the benchmark's categories to {"n", "accuracy"}.
    """

    benchmark: str
    setting: str
    metric: str
    n: int
    n_ok: int
    n_no_answer: int
    n_failed: int
    failed_reasons: dict[str, int]
    metrics: dict[str, float | None]
    by_category: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    #: What the headline metric (the first of `metrics`) is, as the benchmark's reference counts it.
    headline: str = ""
    #: The letter reading mode(s) that produced the per-question scores ("lenient", "first_token", "exact").
    reading: str = ""
    #: The reference the headline follows (repository, commit, file).
    reference: str = ""
    #: Questions left out of the headline's denominator by the reference's rule (empty responses, open questions).
    n_excluded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _pct(values: Iterable[float], n: int) -> float | None:
    return 100.0 * sum(values) / n if n else None


def _rate(flags: Iterable[bool], n: int) -> float | None:
    return _pct((1.0 if f else 0.0 for f in flags), n)


def _iou(r: SampleResult) -> float:
    return r.iou or 0.0


def _iop(r: SampleResult) -> float:
    return r.iop or 0.0


#: The per-question mean, shown beside a headline of another kind.
PER_QUESTION = "Acc (per question)"
#: MMVU's open questions: exact match, a rule-based stand-in for the reference's GPT-4o judge.
OPEN_RULE = "Acc (open, rule-based)"


def _headline_score(r: SampleResult, rule: ScoringRule) -> float:
    """The per-question score the headline counts: LongVideoBench's unparsed-letter rule credits 1/n (the expected
    value of upstream's random guess) to an answer that names no option, including no answer at all."""
    if (
        rule.unparsed == "expected_guess"
        and r.num_options > 0
        and r.status in (OK, NO_ANSWER)
        and r.parsed is None
        and r.gold
    ):
        return 1.0 / r.num_options
    return r.score


def _mean(values: Sequence[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def _task_mean(rows: Sequence[SampleResult], rule: ScoringRule) -> float | None:
    """The mean of the per-task means (MVBench, MLVU, VSI-Bench); VSI-Bench's direction task is the mean of its
    three sub-types' means, as its code computes it."""
    by_task: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        by_task.setdefault(rule.task(r.category or "(none)"), {}).setdefault(r.category or "(none)", []).append(
            _headline_score(r, rule)
        )
    scores = []
    for subs in by_task.values():
        if rule.subtasks_averaged:
            scores.append(sum(_mean(v) or 0.0 for v in subs.values()) / len(subs))
        else:
            scores.append(_mean([x for v in subs.values() for x in v]) or 0.0)
    return sum(scores) / len(scores) if scores else None


def _accuracy_metrics(results: Sequence[SampleResult], rule: ScoringRule) -> tuple[dict[str, float | None], int]:
    """(metrics, questions outside the headline's denominator): the headline first, as "Acc", then the other views
    the reference reports apart."""
    rows = list(results)
    if rule.empty == "drop":
        rows = [r for r in rows if r.status != NO_ANSWER]
    open_rows: list[SampleResult] = []
    if rule.aggregation == "options_subset":
        open_rows = [r for r in rows if r.num_options == 0]
        rows = [r for r in rows if r.num_options > 0]
    if rule.aggregation == "task_mean":
        headline = _task_mean(rows, rule)
    else:
        headline = _mean([_headline_score(r, rule) for r in rows])
    out: dict[str, float | None] = {"Acc": headline}
    if rule.aggregation == "options_subset":
        out[OPEN_RULE] = _mean([r.score for r in open_rows])
    plain = _mean([r.score for r in results])
    if plain != headline or len(rows) != len(results):
        out[PER_QUESTION] = plain
    return out, len(results) - len(rows)


def _grounding_metrics(results: Sequence[SampleResult], rule: ScoringRule) -> dict[str, float | None]:
    """mIoU, R@t for the reference's thresholds and, where it reports one, mAP: with one prediction per query and
    no ranking, a query's AP at threshold t is 1 on a hit and 0 otherwise, so mAP is the mean of R@t over t."""
    n = len(results)
    out: dict[str, float | None] = {"mIoU": _pct((_iou(r) for r in results), n)}
    for t in rule.thresholds:
        out[f"R@{t}"] = _rate((_iou(r) >= t for r in results), n)
    if rule.map_thresholds:
        recalls = [_rate((_iou(r) >= t for r in results), n) for t in rule.map_thresholds]
        out["mAP"] = None if n == 0 else sum(v or 0.0 for v in recalls) / len(recalls)
    return out


def _nextgqa_metrics(results: Sequence[SampleResult]) -> dict[str, float | None]:
    n = len(results)
    return {
        "Acc@QA": _rate((r.correct for r in results), n),
        "Acc@GQA": _rate((r.correct and _iop(r) >= 0.5 for r in results), n),
        "mIoP": _pct((_iop(r) for r in results), n),
        "IoP@0.3": _rate((_iop(r) >= 0.3 for r in results), n),
        "IoP@0.5": _rate((_iop(r) >= 0.5 for r in results), n),
        "mIoU": _pct((_iou(r) for r in results), n),
        "IoU@0.3": _rate((_iou(r) >= 0.3 for r in results), n),
        "IoU@0.5": _rate((_iou(r) >= 0.5 for r in results), n),
    }


def _rextime_metrics(results: Sequence[SampleResult]) -> dict[str, float | None]:
    n = len(results)
    return {
        "mIoU": _pct((_iou(r) for r in results), n),
        "R@0.3": _rate((_iou(r) >= 0.3 for r in results), n),
        "R@0.5": _rate((_iou(r) >= 0.5 for r in results), n),
        "Acc": _rate((r.correct for r in results), n),
        "Acc@IoU>=0.5": _rate((r.correct and _iou(r) >= 0.5 for r in results), n),
    }


def summarize(benchmark: str, setting: str, metric: str, results: Sequence[SampleResult]) -> BenchmarkSummary:
    """The benchmark's numbers over `results` (one benchmark, one setting), by its metric family.

    grounded_qa uses ReXTime's definitions for `benchmark == "rextime"` and NExT-GQA's for any other. Accuracy
    benchmarks put their reference's headline first, as "Acc" (`benchmarks.scoring_rules`: task means, MMVU's
    multiple-choice subset, LongVideoBench's 1/n for an unparsed letter, empty responses dropped where the reference
    drops them), and the plain per-question mean beside it ("Acc (per question)") where the two differ.
    """
    if metric not in METRIC_KINDS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRIC_KINDS}")
    results = sorted(results, key=lambda r: r.id)
    rule = scoring_rule(benchmark)
    excluded = 0
    if metric == "accuracy":
        metrics, excluded = _accuracy_metrics(results, rule)
    elif metric == "grounding":
        metrics = _grounding_metrics(results, rule)
    elif benchmark == "rextime":
        metrics = _rextime_metrics(results)
    else:
        metrics = _nextgqa_metrics(results)
    statuses = Counter(r.status for r in results)
    failed = Counter((r.finish_reason or "failed") for r in results if r.status == FAILED)
    by_category: dict[str, dict[str, float | int | None]] = {}
    if any(r.category for r in results):
        groups: dict[str, list[SampleResult]] = {}
        for r in results:
            if metric == "accuracy" and rule.empty == "drop" and r.status == NO_ANSWER:
                continue  # the same denominators as the headline's
            groups.setdefault(r.category or "(none)", []).append(r)
        for name in sorted(groups):
            group = groups[name]
            # accuracy benchmarks average the score the headline counts (MRA is partial; LongVideoBench's 1/n);
            # the others count right answers
            value = _mean([_headline_score(r, rule) for r in group]) if metric == "accuracy" else None
            if value is None:
                value = _rate((r.correct for r in group), len(group))
            by_category[name] = {"n": len(group), "accuracy": value}
    return BenchmarkSummary(
        benchmark=benchmark,
        setting=setting,
        metric=metric,
        n=len(results),
        n_ok=statuses[OK],
        n_no_answer=statuses[NO_ANSWER],
        n_failed=statuses[FAILED],
        failed_reasons=dict(sorted(failed.items())),
        metrics=metrics,
        by_category=by_category,
        headline=rule.headline,
        reading=", ".join(sorted({r.reading for r in results if r.reading})) or rule.mode,
        reference=rule.reference,
        n_excluded=excluded,
    )


# --- results files and their diff ------------------------------------------------------------------------------------


def write_results(path: str | os.PathLike[str], results: Iterable[SampleResult]) -> str:
    """JSON lines, one result per line, sorted by id, keys sorted: the same results give the same bytes. `path` is a
    local path or a URL (`mtvr_data.storage`), written whole or not at all."""
    rows = sorted(results, key=lambda r: r.id)
    text = "".join(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    return storage.write_text(path, text)


def read_results(path: str | os.PathLike[str]) -> list[SampleResult]:
    """A results file (local path or URL) back as `SampleResult`s (blank lines skipped)."""
    lines = storage.read_text(path).splitlines()
    return [SampleResult.from_dict(json.loads(line)) for line in lines if line.strip()]


@dataclass(frozen=True, slots=True)
class RowDiff:
    """A sample whose outcome differs between two runs: `kind` is changed, only_a or only_b."""

    id: str
    kind: str
    correct_a: bool | None = None
    correct_b: bool | None = None
    iou_a: float | None = None
    iou_b: float | None = None
    status_a: str | None = None
    status_b: str | None = None


def _iou_changed(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(a - b) > tol


def diff_results(a: Iterable[SampleResult], b: Iterable[SampleResult], *, iou_tol: float = 1e-9) -> list[RowDiff]:
    """Rows (by id) whose correctness or IoU changed from `a` to `b`, and rows present in only one; sorted by id."""
    left, right = {r.id: r for r in a}, {r.id: r for r in b}
    out: list[RowDiff] = []
    for key in sorted(set(left) | set(right)):
        ra, rb = left.get(key), right.get(key)
        if ra is None or rb is None:
            r = ra or rb
            assert r is not None
            kind = "only_a" if rb is None else "only_b"
            side = {"correct_a": r.correct, "iou_a": r.iou, "status_a": r.status}
            if kind == "only_b":
                side = {"correct_b": r.correct, "iou_b": r.iou, "status_b": r.status}
            out.append(RowDiff(key, kind, **side))
        elif ra.correct != rb.correct or _iou_changed(ra.iou, rb.iou, iou_tol):
            out.append(RowDiff(key, "changed", ra.correct, rb.correct, ra.iou, rb.iou, ra.status, rb.status))
    return out


def render_diff(diffs: Sequence[RowDiff]) -> str:
    """The diff as a fixed-width table a person reads (and a line saying there is none)."""
    if not diffs:
        return "no differences in correctness or IoU"

    def iou(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ok(v: bool | None) -> str:
        return "-" if v is None else ("yes" if v else "no")

    lines = [f"{'id':<36} {'kind':<8} {'correct A':>9} {'correct B':>9} {'IoU A':>7} {'IoU B':>7}"]
    for d in diffs:
        lines.append(
            f"{d.id:<36} {d.kind:<8} {ok(d.correct_a):>9} {ok(d.correct_b):>9} {iou(d.iou_a):>7} {iou(d.iou_b):>7}"
        )
    changed = Counter(d.kind for d in diffs)
    lines.append(f"{len(diffs)} rows differ: " + ", ".join(f"{k} {v}" for k, v in sorted(changed.items())))
    return "\n".join(lines)
