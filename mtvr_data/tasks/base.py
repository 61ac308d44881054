"""What every task family shares: the ground truth a score is computed against, the pass rule, the result types,
and the interface each family implements.

Why a `GroundTruth` and not a `Sample`: a reward or a metric needs the answer, its type, the options' count and the
windows, nothing else. The trainers only have dataset columns; building a half-filled `Sample` (empty video,
empty question) from them to call a reward made the reward's real inputs invisible. `GroundTruth.of` accepts a
`Sample` or a `GroundTruth`, and `GroundTruth.from_columns` reads TRL's column lists.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mtvr_data.tasks.reading import DEFAULT_READING, Reading

if TYPE_CHECKING:
    from mtvr_data.schema import Sample

__all__ = [
    "DEFAULT_PASS_RULE",
    "GroundTruth",
    "MetricScore",
    "PassRule",
    "TaskFamily",
    "TaskReward",
]

Window = tuple[float, float]

#: Dataset columns a ground truth needs; optional ones and their defaults follow.
REQUIRED_COLUMNS = ("task", "answer_type", "answer", "source")
OPTIONAL_COLUMNS: dict[str, Any] = {"options": (), "span": None, "windows": (), "id": ""}


def _window(value: Sequence[float]) -> Window:
    return float(value[0]), float(value[1])


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The truth one answer is scored against: task, answer and its type, how many options, every window.

    `windows[0]` is the primary span (`Sample.span`); a sample with a span but no `windows` list has one window.
    `source` picks the grounding reward's Scale(IoU; a, b).
    """

    task: str
    answer: str
    answer_type: str
    source: str = ""
    num_options: int = 0
    windows: tuple[Window, ...] = ()
    id: str = ""

    @property
    def span(self) -> Window | None:
        return self.windows[0] if self.windows else None

    @classmethod
    def of(cls, value: GroundTruth | Sample) -> GroundTruth:
        """`value` itself if it is a `GroundTruth`, else the truth held by a `Sample`."""
        if isinstance(value, GroundTruth):
            return value
        windows = list(value.windows) or ([value.span] if value.span is not None else [])
        return cls(
            task=value.task,
            answer=value.answer,
            answer_type=value.answer_type,
            source=value.source,
            num_options=len(value.options),
            windows=tuple(_window(w) for w in windows),
            id=value.id,
        )

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]], i: int) -> GroundTruth:
        """Row `i` of TRL's column lists (`task`, `answer_type`, `answer`, `source`; optional `options`, `span`,
        `windows`, `id`). A missing required column raises `ValueError` naming it."""
        missing = [k for k in REQUIRED_COLUMNS if k not in columns]
        if missing:
            raise ValueError(f"task reward needs the dataset columns {missing}")

        def col(name: str) -> Any:
            return columns[name][i] if name in columns else OPTIONAL_COLUMNS[name]

        windows = [w for w in (col("windows") or ()) if w is not None]
        if not windows and col("span") is not None:
            windows = [col("span")]
        return cls(
            task=str(col("task")),
            answer=str(col("answer")),
            answer_type=str(col("answer_type")),
            source=str(col("source")),
            num_options=len(col("options") or ()),
            windows=tuple(_window(w) for w in windows),
            id=str(col("id")),
        )


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


@dataclass(frozen=True, slots=True)
class MetricScore:
    """What a benchmark counts for one answer: `correct` (the answer term is right; tg: IoU >= 0.5), `score` (1/0,
    MRA for regression, IoU for tg), `iou` / `iop` where the task has spans, and `parsed` (what was read)."""

    correct: bool
    score: float
    parsed: str | None
    iou: float | None = None
    iop: float | None = None


class TaskFamily(ABC):
    """Everything one task means, in one place: what a valid record is, how its answer must be written (the
    prompt's format line and the teacher's expected answer), how an answer is read, the reward and the pass rule,
    and the per-sample benchmark metric.

    Families are stateless singletons, looked up by task name (`mtvr_data.tasks.family`).
    """

    #: The `Sample.task` value this family handles.
    task: ClassVar[str]
    #: Whether the ground truth has windows (a span reward and IoU metrics).
    grounded: ClassVar[bool] = False
    #: Whether the answer holds more than a span (an answer term: a letter, a number, text).
    answered: ClassVar[bool] = True

    @abstractmethod
    def validate(self, sample: Sample) -> list[str]:
        """Reason codes for what is wrong with `sample` for this task (record level, no video access)."""

    def question_head(self, question: str) -> str:
        """The question as the prompt states it (temporal grounding wraps the description)."""
        return question

    @abstractmethod
    def answer_format(self, truth: GroundTruth) -> str:
        """The prompt's last line: how the answer must be written so the parser reads it."""

    @abstractmethod
    def expected_answer(self, truth: GroundTruth) -> str:
        """The right answer written exactly as `answer_format` asks (the teacher's hint; what the parser reads)."""

    @abstractmethod
    def reward(
        self, truth: GroundTruth, answer: str, *, rule: PassRule, iou_scale: Mapping[str, Window] | None
    ) -> TaskReward:
        """The task reward of a non-empty `<answer>` text."""

    @abstractmethod
    def no_answer(self, truth: GroundTruth) -> None:
        """Check that `truth` itself can be scored (raises `ValueError` if not) when the model gave no answer."""

    @abstractmethod
    def metric(self, truth: GroundTruth, answer: str, reading: Reading = DEFAULT_READING) -> MetricScore:
        """The benchmark's per-sample score of a non-empty `<answer>` text, read as the benchmark's reference reads
        it (`reading`: letter mode and numeric rules; spans are always read by VITAL's rule)."""

    def missed(self) -> MetricScore:
        """The metric of a question left without an answer (no `<answer>`, or the machinery failed): wrong, and
        IoU / IoP 0 where the task's metric has them, so a failure stays in every denominator."""
        return MetricScore(correct=False, score=0.0, parsed=None)

    @abstractmethod
    def gold(self, truth: GroundTruth) -> str:
        """The truth as one line of a results file."""
