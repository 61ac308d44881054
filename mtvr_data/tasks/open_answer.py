"""Open questions (`open`): no options; the answer is a number, a regression value, free text or OCR text.

Valid: a non-empty answer (a number for number / regression answers). Written as the format of its answer type.
Reward and benchmark score: the answer term of its type (`answer_terms`: partial credit in the reward, the
benchmark's own count in the metric). Passes when the reward reaches `PassRule.min_reward`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mtvr_data.tasks.answer_terms import ANSWER_FORMAT, answer_metric, answer_reward, check_truth, validate_answer
from mtvr_data.tasks.base import GroundTruth, MetricScore, PassRule, TaskFamily, TaskReward, Window
from mtvr_data.tasks.reading import DEFAULT_READING, Reading

if TYPE_CHECKING:
    from mtvr_data.schema import Sample


class OpenAnswer(TaskFamily):
    task = "open"

    def validate(self, sample: Sample) -> list[str]:
        return validate_answer(sample)

    def answer_format(self, truth: GroundTruth) -> str:
        return ANSWER_FORMAT[truth.answer_type]

    def expected_answer(self, truth: GroundTruth) -> str:
        return truth.answer

    def reward(
        self, truth: GroundTruth, answer: str, *, rule: PassRule, iou_scale: Mapping[str, Window] | None
    ) -> TaskReward:
        score, parsed = answer_reward(truth, answer)
        return TaskReward(
            score,
            score >= rule.min_reward,
            answer_score=score,
            parsed=parsed,
            reason=None if parsed else "unparseable",
        )

    def no_answer(self, truth: GroundTruth) -> None:
        check_truth(truth)

    def metric(self, truth: GroundTruth, answer: str, reading: Reading = DEFAULT_READING) -> MetricScore:
        score, parsed = answer_metric(truth, answer, reading)
        return MetricScore(correct=score >= 1.0, score=score, parsed=parsed)

    def gold(self, truth: GroundTruth) -> str:
        return truth.answer
