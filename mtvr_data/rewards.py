"""VITAL's rewards, the pass rate and DGRPO's difficulty weight, as pure functions of text and a ground truth.

The grader (pass rates of K rollouts), the CoT verifier and `train/` (DGRPO) all call these, so a reward
means the same thing when data is built and when it is trained on. Model output is read only through
`mtvr_data.parsing`, and only the `<answer>` block counts for the task reward.

Total (docs/papers.md): format {0, 1} + tool bonus [0, 1] (with tools only) + task reward. Every task reward is
in [0, 1] except grounded QA, which is the span term PLUS the answer term, in [0, 2] (the paper's rule; the
released code returned only the span term, a bug we do not copy). So the total is <= 2 without tools and
<= 3 with tools for every task but gqa, which can add 1 to either bound.

What each task's reward and pass rule are lives with the task, in `mtvr_data.tasks` (one module per task family,
the answer terms by answer type in `tasks.answer_terms`); this module adds the format and tool terms and sums
them. Temporal IoU and the per-source Scale(IoU; a, b) live in `mtvr_data.temporal_iou` (re-exported here). The
TRL-style callables at the end (`fn(completions, **columns) -> list[float | None]`) wrap the scalar
functions; each concept is computed in exactly one function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtvr_data.parsing import check_format, extract_answer
from mtvr_data.schema import Sample
from mtvr_data.tasks import DEFAULT_PASS_RULE, GroundTruth, PassRule, TaskReward, family
from mtvr_data.tasks.answer_terms import mcq_reward, numeric_reward, ocr_reward, regression_reward, rouge_reward
from mtvr_data.temporal_iou import IOU_SCALE, NO_SCALE, best_iou, iou_scale_for, scale_iou, temporal_iou

__all__ = [
    "DEFAULT_PASS_RULE",
    "IOU_SCALE",
    "MAX_COUNTED_TOOL_CALLS",
    "NO_SCALE",
    "TOOL_BONUS_PER_CALL",
    "PassRule",
    "RewardBreakdown",
    "TaskReward",
    "TaskRewardFn",
    "GroundTruth",
    "best_iou",
    "completion_text",
    "dgrpo_weight",
    "format_reward",
    "format_reward_fn",
    "iou_scale_for",
    "make_task_reward_fn",
    "mcq_reward",
    "numeric_reward",
    "ocr_reward",
    "pass_rate",
    "regression_reward",
    "rouge_reward",
    "scale_iou",
    "task_reward",
    "temporal_iou",
    "tool_bonus",
    "tool_bonus_fn",
    "total_reward",
]

TOOL_BONUS_PER_CALL = 0.5
MAX_COUNTED_TOOL_CALLS = 2
# --- the terms -------------------------------------------------------------------------------------------------------


def format_reward(text: str) -> float:
    """1.0 if the whole trajectory's assistant text is well formed (`parsing.check_format`, final=True), else 0.0.

    >>> format_reward("<think>a</think><answer>B</answer>"), format_reward("B")
    (1.0, 0.0)
    """
    return 1.0 if check_format(text, final=True) is None else 0.0


def tool_bonus(num_successful_calls: int) -> float:
    """0.5 per tool call that returned frames, at most 2 counted: 0.5 * min(n, 2), in [0, 1].

    A negative count is a caller bug and raises `ValueError`.
    """
    if num_successful_calls < 0:
        raise ValueError(f"num_successful_calls must be >= 0, got {num_successful_calls}")
    return TOOL_BONUS_PER_CALL * min(num_successful_calls, MAX_COUNTED_TOOL_CALLS)


# --- pass rule and the task reward -----------------------------------------------------------------------------------


def task_reward(
    truth: GroundTruth | Sample,
    completion: str,
    *,
    rule: PassRule = DEFAULT_PASS_RULE,
    iou_scale: Mapping[str, tuple[float, float]] | None = None,
) -> TaskReward:
    """The task reward of `completion` (assistant text) against `truth`; only the last `<answer>` block is read.

    `truth` is a `GroundTruth` (what the trainers build from dataset columns) or a `Sample` (its truth is taken).
    The reward and the pass rule are the task family's (`mtvr_data.tasks`):
    - tg: Scale(best IoU of the parsed span over the windows; a, b of the source).
    - gqa: Scale(best IoU; a, b) + the answer term. Both terms, always.
    - mcq / open: the answer term by answer type (letter, number, regression, text, ocr).
    A truth that cannot be scored (a number answer that is not a number, tg without a span) raises
    `ValueError`, also when the model gave no answer: that is a data bug, and a silent 0 would bias training.
    """
    truth = GroundTruth.of(truth)
    task = family(truth.task)
    answer = extract_answer(completion)
    if not answer:
        task.no_answer(truth)
        return TaskReward(0.0, False, reason="no_answer")
    return task.reward(truth, answer, rule=rule, iou_scale=iou_scale)


@dataclass(frozen=True, slots=True)
class RewardBreakdown:
    """The total reward of one trajectory and its terms (`detail` explains the task term)."""

    format: float
    tool: float
    task: float
    total: float
    detail: TaskReward


def total_reward(
    truth: GroundTruth | Sample,
    assistant_text: str,
    *,
    num_successful_tool_calls: int,
    tools: bool,
    rule: PassRule = DEFAULT_PASS_RULE,
    iou_scale: Mapping[str, tuple[float, float]] | None = None,
) -> RewardBreakdown:
    """format + tool bonus + task reward; without tools the tool term is 0 whatever the count.

    `assistant_text` is every assistant turn of the trajectory joined (tool turns left out). The terms are
    not gated on each other (VITAL adds them): a right answer in a malformed output still earns its task
    reward, and loses the format point.
    """
    fmt = format_reward(assistant_text)
    tool = tool_bonus(num_successful_tool_calls) if tools else 0.0
    detail = task_reward(truth, assistant_text, rule=rule, iou_scale=iou_scale)
    return RewardBreakdown(fmt, tool, detail.value, fmt + tool + detail.value, detail)


# --- pass rate and DGRPO ---------------------------------------------------------------------------------------------


def pass_rate(passed_flags: Sequence[bool]) -> float:
    """Fraction of rollouts that passed; an empty list raises `ValueError` (no rollouts is not difficulty 0)."""
    if len(passed_flags) == 0:
        raise ValueError("pass_rate of zero rollouts")
    return sum(1 for p in passed_flags if p) / len(passed_flags)


def dgrpo_weight(group_mean_reward: float) -> float:
    """DGRPO's difficulty weight w = 0.5 * clamp(2 - D, 0, 1) + 0.5, D = the group's mean total reward.

    In [0.5, 1]: hard groups (D <= 1) keep full weight, easy ones (D >= 2) half. The trainer multiplies each
    group's normalised advantages by it, A_k = w * (r_k - mean) / (std + eps) (VITAL's code form, docs/papers.md),
    in `train.advantages.DgrpoRule`.

    >>> dgrpo_weight(0.0), dgrpo_weight(1.5), dgrpo_weight(3.0)
    (1.0, 0.75, 0.5)
    """
    if not math.isfinite(group_mean_reward):
        raise ValueError(f"group mean reward must be finite, got {group_mean_reward}")
    return 0.5 * min(1.0, max(0.0, 2.0 - group_mean_reward)) + 0.5


# --- TRL reward callables --------------------------------------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The assistant text of one TRL completion: a string, or a message list whose assistant turns are joined.

    Tool turns are left out (their text is not the model's); message content may be a string or a list of
    `{"type": "text", "text": ...}` parts.
    """
    if isinstance(completion, str):
        return completion
    messages = [completion] if isinstance(completion, Mapping) else list(completion)
    parts: list[str] = []
    for message in messages:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return "\n".join(parts)


def format_reward_fn(completions: list[Any], **_: Any) -> list[float | None]:
    """TRL reward: `format_reward` of each completion's assistant text (applies to every row)."""
    return [format_reward(completion_text(c)) for c in completions]


format_reward_fn.__name__ = "format_reward"


def tool_bonus_fn(
    completions: list[Any],
    num_successful_tool_calls: list[int] | None = None,
    tools: list[bool] | None = None,
    **_: Any,
) -> list[float | None]:
    """TRL reward: `tool_bonus` from a `num_successful_tool_calls` column (the rollout loop supplies it).

    None for rows whose `tools` column is False (the term does not exist without tools). A missing count
    column raises: a silent 0 would hide a misconfigured rollout.
    """
    if num_successful_tool_calls is None:
        raise ValueError("tool_bonus_fn needs a num_successful_tool_calls column from the rollout function")
    flags = tools if tools is not None else [True] * len(completions)
    return [tool_bonus(int(n)) if flag else None for n, flag in zip(num_successful_tool_calls, flags, strict=True)]


tool_bonus_fn.__name__ = "tool_bonus"


class TaskRewardFn:
    """TRL reward callable: `task_reward(...).value` per row, with IoU scales and a task filter.

    Rows whose task is not in `tasks` get None (the reward does not apply to them), so one callable per task
    family can be logged separately.

    >>> fn = make_task_reward_fn(tasks=("mcq",))
    >>> fn(["<answer>B</answer>", "<answer>1-2</answer>"], task=["mcq", "tg"], answer_type=["letter", "span"],
    ...    answer=["B", ""], source=["x", "y"], options=[["p", "q"], []], span=[None, [1.0, 2.0]])
    [1.0, None]
    """

    def __init__(
        self,
        *,
        iou_scale: Mapping[str, tuple[float, float]] | None = None,
        tasks: Sequence[str] | None = None,
        name: str = "task_reward",
    ) -> None:
        self.iou_scale = dict(iou_scale) if iou_scale is not None else None
        self.tasks = None if tasks is None else frozenset(tasks)
        self.__name__ = name  # TRL logs each reward function under its __name__

    def __call__(self, completions: list[Any], **columns: Any) -> list[float | None]:
        out: list[float | None] = []
        for i, completion in enumerate(completions):
            truth = GroundTruth.from_columns(columns, i)
            if self.tasks is not None and truth.task not in self.tasks:
                out.append(None)
                continue
            out.append(task_reward(truth, completion_text(completion), iou_scale=self.iou_scale).value)
        return out


def make_task_reward_fn(
    *,
    iou_scale: Mapping[str, tuple[float, float]] | None = None,
    tasks: Sequence[str] | None = None,
    name: str = "task_reward",
) -> TaskRewardFn:
    """A TRL task-reward callable with custom IoU scales (looked up before `IOU_SCALE`) or a task filter.

    The pass rule does not change a reward's value, so it is not a parameter here (the grader uses `passed`).
    """
    return TaskRewardFn(iou_scale=iou_scale, tasks=tasks, name=name)
