"""Grounded QA (`gqa`, NExT-GQA and ReXTime): answer a question AND give the moment that shows the evidence.

Valid: a video sample with a span and a scorable answer (a letter naming an option when there are options).
Written as "From S to E, <answer>". Reward: Scale(best IoU; a, b) PLUS the answer term, in [0, 2] (the paper's
rule; the released code returned only the span term, docs/rewards.md). Passes only when both hold: raw best IoU
>= `PassRule.gqa_min_iou` and the answer term >= `PassRule.gqa_min_answer`. Benchmark score: the answer term
(Acc@QA); best IoU and best IoP (NExT-GQA's intersection over the predicted length) go to the aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mtvr_data.parsing import parse_grounded
from mtvr_data.tasks.answer_terms import answer_metric, answer_reward, check_truth, validate_answer
from mtvr_data.tasks.base import GroundTruth, MetricScore, PassRule, TaskFamily, TaskReward, Window
from mtvr_data.tasks.reading import DEFAULT_READING, Reading
from mtvr_data.tasks.temporal_grounding import gold_windows, validate_span, windows_of
from mtvr_data.temporal_iou import best_iop, best_iou, format_window, iou_scale_for, scale_iou

if TYPE_CHECKING:
    from mtvr_data.schema import Sample

GQA_FORMAT = "Answer as 'From S to E, <answer>', where S - E seconds is the moment that shows the evidence."


def _parsed(span: Window | None, answer: str | None) -> str:
    return f"{format_window(span) if span else '?'}; {answer if answer is not None else '?'}"


class GroundedQA(TaskFamily):
    task = "gqa"
    grounded = True

    def validate(self, sample: Sample) -> list[str]:
        return validate_span(sample) + validate_answer(sample)

    def answer_format(self, truth: GroundTruth) -> str:
        return GQA_FORMAT

    def expected_answer(self, truth: GroundTruth) -> str:
        start, end = windows_of(truth)[0]
        return f"From {start:.2f} to {end:.2f}, {truth.answer}"

    def reward(
        self, truth: GroundTruth, answer: str, *, rule: PassRule, iou_scale: Mapping[str, Window] | None
    ) -> TaskReward:
        windows = windows_of(truth)
        a, b = iou_scale_for(truth.source, iou_scale)
        span, rest = parse_grounded(answer)
        iou = best_iou(span, windows)
        span_score = scale_iou(iou, a, b)
        answer_score, parsed_answer = answer_reward(truth, rest)
        ok = iou >= rule.gqa_min_iou and answer_score >= rule.gqa_min_answer
        reason = None
        if span is None and parsed_answer is None:
            reason = "unparseable"
        elif span is None:
            reason = "no_span"
        elif parsed_answer is None:
            reason = "unparseable_answer"
        return TaskReward(
            span_score + answer_score,
            ok,
            iou=iou,
            answer_score=answer_score,
            span_score=span_score,
            parsed=_parsed(span, parsed_answer),
            reason=reason,
        )

    def no_answer(self, truth: GroundTruth) -> None:
        windows_of(truth)
        check_truth(truth)

    def metric(self, truth: GroundTruth, answer: str, reading: Reading = DEFAULT_READING) -> MetricScore:
        span, rest = parse_grounded(answer)
        score, read = answer_metric(truth, rest, reading)
        windows = list(truth.windows)
        return MetricScore(
            correct=score >= 1.0,
            score=score,
            parsed=_parsed(span, read),
            iou=best_iou(span, windows),
            iop=best_iop(span, windows),
        )

    def missed(self) -> MetricScore:
        return MetricScore(correct=False, score=0.0, parsed=None, iou=0.0, iop=0.0)

    def gold(self, truth: GroundTruth) -> str:
        return f"{truth.answer} @ {gold_windows(truth)}"
