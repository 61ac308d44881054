"""VITAL's rewards, the pass rule and DGRPO's difficulty weight, as pure functions of text and a `Sample`.

The grader (pass rates of K rollouts), the CoT verifier and `train/` (DGRPO) all call these, so a reward
means the same thing when data is built and when it is trained on. Model output is read only through
`mtvr_data.parsing`, and only the `<answer>` block counts for the task reward.

Total (docs/papers.md): format {0, 1} + tool bonus [0, 1] (with tools only) + task reward. Every task reward is
in [0, 1] except grounded QA, which is the span term PLUS the answer term, in [0, 2] (the paper's rule; the
released code returned only the span term, a bug we do not copy). So the total is <= 2 without tools and
<= 3 with tools for every task but gqa, which can add 1 to either bound.

Temporal IoU and the per-source Scale(IoU; a, b) live in `mtvr_data.temporal_iou` (re-exported here). The
TRL-style callables at the end (`fn(completions, **columns) -> list[float | None]`) wrap the scalar
functions; each concept is computed in exactly one function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from mtvr_data.parsing import check_format, extract_answer, letter_score, parse_grounded, parse_number, parse_span
from mtvr_data.schema import Sample
from mtvr_data.temporal_iou import IOU_SCALE, NO_SCALE, best_iou, format_window, iou_scale_for, scale_iou, temporal_iou
from mtvr_data.text_metrics import rouge_f1, tokenize, word_error_rate

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
    "passed",
    "regression_reward",
    "rouge_reward",
    "sample_from_columns",
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


def mcq_reward(answer_text: str, truth_letter: str, num_options: int | None) -> float:
    """1.0 if the letter the answer commits to (`parsing.parse_letter`) equals the true letter, else 0.0.

    Scored by `parsing.letter_score`, the same rule the benchmark metrics use.

    >>> mcq_reward("The answer is (C).", "C", 4), mcq_reward("C or D", "C", 4), mcq_reward("B, not C", "C", 4)
    (1.0, 0.0, 0.0)
    """
    return letter_score(answer_text, truth_letter, num_options)[0]


#: Enough digits to quantize any finite float (up to ~1.8e308) exactly; the default 28 raises on large values.
_EXACT = Context(prec=400)


def _round(value: float, places: str) -> Decimal:
    # Round the shortest decimal text of the float, half away from zero, so 2.45 -> 2.5 as a person expects
    # (binary float rounding would give 2.4 for some such values, and Python's round() rounds half to even).
    return Decimal(repr(float(value))).quantize(Decimal(places), rounding=ROUND_HALF_UP, context=_EXACT)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def numeric_reward(pred: float | None, truth: float | None) -> float:
    """1.0 if round(pred, 1) == round(truth, 1); else 0.5 if round(pred) == round(truth); else 0.0.

    Rounding is decimal, half away from zero. None or non-finite input scores 0.0.

    >>> numeric_reward(3.04, 3), numeric_reward(2.6, 3), numeric_reward(2.4, 3)
    (1.0, 0.5, 0.0)
    """
    if not (_finite(pred) and _finite(truth)):
        return 0.0
    if _round(pred, "0.1") == _round(truth, "0.1"):
        return 1.0
    return 0.5 if _round(pred, "1") == _round(truth, "1") else 0.0


def rouge_reward(pred: str, truth: str) -> float:
    """(ROUGE-1 F1 + ROUGE-2 F1 + ROUGE-L F1) / 3, Porter-stemmed as VITAL (`text_metrics.rouge_f1`), in [0, 1].

    >>> round(rouge_reward("The man is running.", "the man runs"), 4)  # "running" and "runs" both stem to "run"
    0.7048
    """
    return sum(rouge_f1(pred, truth).values()) / 3.0


def regression_reward(pred: float | None, truth: float | None) -> float:
    """clip(1 - |p - g| / |g|, 0, 1).

    g == 0: the relative error is undefined, so only an exact 0 prediction scores (1.0), anything else 0.0.
    None or non-finite input scores 0.0.

    >>> regression_reward(9.0, 10.0), regression_reward(30.0, 10.0)
    (0.9, 0.0)
    """
    if not (_finite(pred) and _finite(truth)):
        return 0.0
    if truth == 0:
        return 1.0 if pred == 0 else 0.0
    return min(1.0, max(0.0, 1.0 - abs(pred - truth) / abs(truth)))


def ocr_reward(pred: str, truth: str) -> float:
    """clip(1 - WER, 0, 1), WER = word edit distance / reference words (`text_metrics.word_error_rate`).

    >>> ocr_reward("stop here now", "stop there now")
    0.6666666666666667
    """
    return min(1.0, max(0.0, 1.0 - word_error_rate(pred, truth)))


# --- pass rule and the task reward -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassRule:
    """When a rollout counts as right, for pass rates and the medium-difficulty filter (VITAL step 2).

    - mcq / open: task reward >= `min_reward` (a numeric answer right after integer rounding, 0.5, passes).
    - tg: RAW best IoU (before Scale) >= `tg_min_iou`, the usual R@0.5.
    - gqa: the answer term >= `gqa_min_answer` (the right letter, or ROUGE >= 0.5 for free text) AND raw
      best IoU >= `gqa_min_iou`: grounded QA is right only when both the answer and its evidence are.
    """

    min_reward: float = 0.5
    tg_min_iou: float = 0.5
    gqa_min_iou: float = 0.5
    gqa_min_answer: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_reward", "tg_min_iou", "gqa_min_iou", "gqa_min_answer"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"PassRule.{name} must be in [0, 1], got {value!r}")


DEFAULT_PASS_RULE = PassRule()


def passed(
    task: str, *, value: float, iou: float | None, answer_score: float | None, rule: PassRule = DEFAULT_PASS_RULE
) -> bool:
    """Whether a graded rollout passes `rule` for `task` (see `PassRule`)."""
    if task == "tg":
        return iou is not None and iou >= rule.tg_min_iou
    if task == "gqa":
        return (
            iou is not None
            and answer_score is not None
            and iou >= rule.gqa_min_iou
            and (answer_score >= rule.gqa_min_answer)
        )
    return value >= rule.min_reward


@dataclass(frozen=True, slots=True)
class TaskReward:
    """The task reward of one completion and how it came about.

    `value`: the reward (gqa: `span_score + answer_score`); `iou`: raw best IoU (tg/gqa); `span_score`: the
    scaled IoU (tg/gqa); `answer_score`: the answer term (all but tg); `parsed`: what was read from the
    answer, as text; `reason`: why nothing (or only part) could be read - `no_answer` (no/empty `<answer>`),
    `unparseable`, and for gqa `no_span` / `unparseable_answer` when one of the two parts is missing.
    """

    value: float
    passed: bool
    iou: float | None = None
    answer_score: float | None = None
    span_score: float | None = None
    parsed: str | None = None
    reason: str | None = None


def _truth_number(sample: Sample) -> float:
    value = parse_number(sample.answer)
    if value is None:
        raise ValueError(f"sample {sample.id}: {sample.answer_type} answer {sample.answer!r} is not a number")
    return value


def _answer_term(sample: Sample, text: str) -> tuple[float, str | None]:
    """(score, parsed text or None when unparseable) of the answer part, by `sample.answer_type`."""
    kind = sample.answer_type
    if kind == "letter":
        return letter_score(text, sample.answer, len(sample.options) or None)
    if kind in ("number", "regression"):
        value = parse_number(text)
        reward = numeric_reward if kind == "number" else regression_reward
        return reward(value, _truth_number(sample)), None if value is None else f"{value:g}"
    if kind in ("text", "ocr"):
        if not tokenize(text):
            return 0.0, None
        return (rouge_reward if kind == "text" else ocr_reward)(text, sample.answer), text
    raise ValueError(f"sample {sample.id}: answer_type {kind!r} cannot be scored for task {sample.task!r}")


def _windows(sample: Sample) -> list[Sequence[float]]:
    if sample.windows:
        return list(sample.windows)
    if sample.span is not None:
        return [sample.span]
    raise ValueError(f"sample {sample.id}: task {sample.task!r} has no ground-truth span")


def task_reward(
    sample: Sample,
    completion: str,
    *,
    rule: PassRule = DEFAULT_PASS_RULE,
    iou_scale: Mapping[str, tuple[float, float]] | None = None,
) -> TaskReward:
    """The task reward of `completion` (assistant text) for `sample`; only the last `<answer>` block is read.

    - tg: Scale(best IoU of the parsed span over `sample.windows`; a, b of the source).
    - gqa: Scale(best IoU; a, b) + answer term (letter match if the sample has options, else by its
      answer_type, ROUGE for text). Both terms, always.
    - mcq / open: the answer term by answer_type: letter -> `mcq_reward`, number -> `numeric_reward`,
      text -> `rouge_reward`, ocr -> `ocr_reward`, regression -> `regression_reward`.
    A sample whose own truth cannot be scored (a number answer that is not a number, tg without a span)
    raises `ValueError`: that is a data bug, and a silent 0 would bias training.
    """
    answer = extract_answer(completion)
    if sample.task in ("tg", "gqa"):
        windows = _windows(sample)
        a, b = iou_scale_for(sample.source, iou_scale)
    if not answer:
        if sample.task != "tg":
            _answer_term(sample, "")  # checks the truth even when the model gave nothing
        return TaskReward(0.0, False, reason="no_answer")

    if sample.task == "tg":
        span = parse_span(answer)
        iou = best_iou(span, windows)
        value = scale_iou(iou, a, b)
        ok = passed("tg", value=value, iou=iou, answer_score=None, rule=rule)
        if span is None:
            return TaskReward(0.0, ok, iou=0.0, span_score=0.0, reason="unparseable")
        return TaskReward(value, ok, iou=iou, span_score=value, parsed=format_window(span))

    if sample.task == "gqa":
        span, rest = parse_grounded(answer)
        iou = best_iou(span, windows)
        span_score = scale_iou(iou, a, b)
        answer_score, parsed_answer = _answer_term(sample, rest)
        value = span_score + answer_score
        ok = passed("gqa", value=value, iou=iou, answer_score=answer_score, rule=rule)
        reason = None
        if span is None and parsed_answer is None:
            reason = "unparseable"
        elif span is None:
            reason = "no_span"
        elif parsed_answer is None:
            reason = "unparseable_answer"
        parsed = f"{format_window(span) if span else '?'}; {parsed_answer if parsed_answer is not None else '?'}"
        return TaskReward(
            value, ok, iou=iou, answer_score=answer_score, span_score=span_score, parsed=parsed, reason=reason
        )

    score, parsed_answer = _answer_term(sample, answer)
    ok = passed(sample.task, value=score, iou=None, answer_score=score, rule=rule)
    return TaskReward(
        score, ok, answer_score=score, parsed=parsed_answer, reason=None if parsed_answer else "unparseable"
    )


@dataclass(frozen=True, slots=True)
class RewardBreakdown:
    """The total reward of one trajectory and its terms (`detail` explains the task term)."""

    format: float
    tool: float
    task: float
    total: float
    detail: TaskReward


def total_reward(
    sample: Sample,
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
    detail = task_reward(sample, assistant_text, rule=rule, iou_scale=iou_scale)
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

#: Dataset columns the task reward needs; optional ones and their defaults follow.
_REQUIRED_COLUMNS = ("task", "answer_type", "answer", "source")
_OPTIONAL_COLUMNS: dict[str, Any] = {"options": (), "span": None, "windows": (), "id": ""}


def _as_window(value: Any) -> list[float] | None:
    return None if value is None else [float(t) for t in value]


def sample_from_columns(columns: Mapping[str, Sequence[Any]], i: int) -> Sample:
    """Row `i` of TRL's column lists as a `Sample` carrying what the task reward reads."""
    missing = [k for k in _REQUIRED_COLUMNS if k not in columns]
    if missing:
        raise ValueError(f"task reward needs the dataset columns {missing}")

    def col(name: str) -> Any:
        return columns[name][i] if name in columns else _OPTIONAL_COLUMNS[name]

    return Sample(
        id=str(col("id")),
        source=str(col("source")),
        task=str(col("task")),
        modality="video",
        video="",
        question="",
        options=list(col("options") or ()),
        answer=str(col("answer")),
        answer_type=str(col("answer_type")),
        span=_as_window(col("span")),
        windows=[_as_window(w) for w in (col("windows") or ())],
    )


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
            sample = sample_from_columns(columns, i)
            if self.tasks is not None and sample.task not in self.tasks:
                out.append(None)
                continue
            out.append(task_reward(sample, completion_text(completion), iou_scale=self.iou_scale).value)
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
