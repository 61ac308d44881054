"""One home per task family: what a task means, in one module each.

| task  | module                 | validate                     | format line / expected answer  | reward / pass      |
|-------|------------------------|------------------------------|--------------------------------|--------------------|
| mcq   | `multiple_choice`      | options, letter names one    | the letter                     | letter, >= 0.5     |
| open  | `open_answer`          | answer present, numbers parse| by answer type                 | answer term        |
| tg    | `temporal_grounding`   | span on a video              | "S - E seconds"                | Scale(IoU), IoU    |
| gqa   | `grounded_qa`          | span + scorable answer       | "From S to E, <answer>"        | span + answer, both|

The answer term by answer type (letter, number, regression, text, ocr), shared by mcq, open and gqa, is
`answer_terms`. The prompt (`model.prompts.question_text`), the teacher (`model.teacher.expected_answer`), record
validation (`schema.validate_sample`), the rewards (`rewards.task_reward`) and the benchmark metrics
(`eval_metrics.score_sample`) all ask the family of the row's task; none of them branches on the task itself.
"""

from __future__ import annotations

from mtvr_data.tasks.base import DEFAULT_PASS_RULE, GroundTruth, MetricScore, PassRule, TaskFamily, TaskReward
from mtvr_data.tasks.grounded_qa import GroundedQA
from mtvr_data.tasks.multiple_choice import MultipleChoice
from mtvr_data.tasks.open_answer import OpenAnswer
from mtvr_data.tasks.reading import DEFAULT_READING, Reading
from mtvr_data.tasks.temporal_grounding import TemporalGrounding

__all__ = [
    "DEFAULT_PASS_RULE",
    "DEFAULT_READING",
    "FAMILIES",
    "GroundTruth",
    "MetricScore",
    "PassRule",
    "Reading",
    "TaskFamily",
    "TaskReward",
    "UnknownTaskError",
    "family",
]

#: Every task family by its task name.
FAMILIES: dict[str, TaskFamily] = {
    f.task: f for f in (MultipleChoice(), OpenAnswer(), TemporalGrounding(), GroundedQA())
}


class UnknownTaskError(ValueError):
    """A task name no family handles."""


def family(task: str) -> TaskFamily:
    """The family of `task`; an unknown task raises `UnknownTaskError` naming the known ones."""
    try:
        return FAMILIES[task]
    except KeyError:
        raise UnknownTaskError(f"unknown task {task!r}; known tasks: {', '.join(FAMILIES)}") from None
