"""Temporal grounding (`tg`): a description of a moment; the answer is its start and end in seconds.

Valid: a video sample with a span (every window well formed and inside the video is checked for all tasks by
`schema.validate_sample`). Written as "S - E seconds". Reward: Scale(best IoU over the windows; a, b), with
VITAL's per-source (a, b) (`temporal_iou.IOU_SCALE`, looked up by the row's source, which on benchmark rows is the
benchmark's name). Passes on the RAW best IoU >= `PassRule.tg_min_iou`. Benchmark score: the IoU;
correct = IoU >= 0.5, so a diff of two runs shows grounding flips too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mtvr_data.parsing import parse_span
from mtvr_data.tasks.answer_terms import ANSWER_FORMAT
from mtvr_data.tasks.base import GroundTruth, MetricScore, PassRule, TaskFamily, TaskReward, Window
from mtvr_data.tasks.reading import DEFAULT_READING, Reading
from mtvr_data.temporal_iou import best_iou, format_window, iou_scale_for, scale_iou

if TYPE_CHECKING:
    from mtvr_data.schema import Sample

#: The head of a temporal-grounding question.
TG_QUESTION = 'Find the moment in the video described by: "{question}"'


def validate_span(sample: Sample) -> list[str]:
    """A grounded task needs a span, on a video."""
    out = ["missing_span"] if sample.span is None else []
    return out + (["span_on_image"] if sample.modality != "video" else [])


def windows_of(truth: GroundTruth) -> list[Window]:
    """The truth's windows; a grounded truth without one is a data bug (`ValueError`), never a silent 0."""
    if not truth.windows:
        raise ValueError(f"sample {truth.id}: task {truth.task!r} has no ground-truth span")
    return list(truth.windows)


def span_text(truth: GroundTruth) -> str:
    """The primary span as the prompt asks for it: "S - E seconds", two decimals."""
    start, end = windows_of(truth)[0]
    return f"{start:.2f} - {end:.2f} seconds"


def gold_windows(truth: GroundTruth) -> str:
    return "; ".join(format_window(w) for w in truth.windows)


class TemporalGrounding(TaskFamily):
    task = "tg"
    grounded = True
    answered = False

    def validate(self, sample: Sample) -> list[str]:
        return validate_span(sample)

    def question_head(self, question: str) -> str:
        return TG_QUESTION.format(question=question)

    def answer_format(self, truth: GroundTruth) -> str:
        return ANSWER_FORMAT["span"]

    def expected_answer(self, truth: GroundTruth) -> str:
        return span_text(truth)

    def reward(
        self, truth: GroundTruth, answer: str, *, rule: PassRule, iou_scale: Mapping[str, Window] | None
    ) -> TaskReward:
        windows = windows_of(truth)
        a, b = iou_scale_for(truth.source, iou_scale)
        span = parse_span(answer)
        iou = best_iou(span, windows)
        value = scale_iou(iou, a, b)
        ok = iou >= rule.tg_min_iou
        if span is None:
            return TaskReward(0.0, ok, iou=0.0, span_score=0.0, reason="unparseable")
        return TaskReward(value, ok, iou=iou, span_score=value, parsed=format_window(span))

    def no_answer(self, truth: GroundTruth) -> None:
        windows_of(truth)

    def metric(self, truth: GroundTruth, answer: str, reading: Reading = DEFAULT_READING) -> MetricScore:
        span = parse_span(answer)
        iou = best_iou(span, list(truth.windows))
        return MetricScore(correct=iou >= 0.5, score=iou, parsed=format_window(span) if span else None, iou=iou)

    def missed(self) -> MetricScore:
        return MetricScore(correct=False, score=0.0, parsed=None, iou=0.0)

    def gold(self, truth: GroundTruth) -> str:
        return gold_windows(truth)
