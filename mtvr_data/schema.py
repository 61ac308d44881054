"""The records every stage exchanges: `Sample`, `CotRow`, `RlRow`, `SampleError`, and their Arrow schemas.

One module defines them so a row means the same thing when it is read from a source, graded, written
to a shard and trained on. Each record is a slotted dataclass (attribute typos fail loudly) with a
matching Arrow schema; `mtvr_data.parquet_io` converts between the two and validates files against
these schemas.

Times are float seconds from the start of the video, always. Adapters convert frames, "mm:ss" and
percentages at the boundary (`mtvr_data.timecode`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

Task = Literal["mcq", "open", "tg", "gqa"]
Modality = Literal["video", "image"]

TASKS: tuple[str, ...] = ("mcq", "open", "tg", "gqa")
MODALITIES: tuple[str, ...] = ("video", "image")
#: How the answer of a row is scored: an option letter, a number (one-decimal / integer match), free text
#: (ROUGE), OCR text (1 - WER), a regression value (relative error), or a span only (temporal grounding).
ANSWER_TYPES: tuple[str, ...] = ("letter", "number", "text", "ocr", "regression", "span")
OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def option_letter(index: int) -> str:
    """Letter of the option at 0-based `index` (A, B, ...); options are always lettered by position."""
    if not 0 <= index < len(OPTION_LETTERS):
        raise ValueError(f"option index {index} outside A-Z")
    return OPTION_LETTERS[index]


def sample_id(
    source: str,
    video: str,
    question: str,
    options: list[str],
    answer: str,
    span: list[float] | None,
    upstream_id: str | int | None = None,
) -> str:
    """Stable id: a hash of what makes the question (source, video, question, options) and its target.

    The same native record gives the same id on every run and machine (no dict ordering, no float repr
    noise: spans are rounded to milliseconds), so ids can key caches, dedup and resumes. `upstream_id` is the
    source's own question id (NExT-QA `qid`, MMVU `id`), given where the source has one that tells apart two
    published questions that are otherwise equal; None leaves the key (and so every older id) as it was.
    """
    span_key = None if span is None else [round(float(t), 3) for t in span]
    parts: list[object] = [source, video, question, list(options), answer, span_key]
    if upstream_id is not None:
        parts.append(str(upstream_id))
    key = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return f"{source}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:16]}"


@dataclass(slots=True)
class Sample:
    """One question about one video (or image), in the unified form every stage reads.

    `span` is the primary ground-truth window for `tg`/`gqa`; `windows` holds every ground-truth window
    (NExT-GQA and QVHighlights give several), with `windows[0] == span`. Probe fields (duration, fps,
    width, height) may come from the annotation and are (re)filled by the probe stage.
    """

    id: str
    source: str
    task: str
    modality: str
    video: str
    question: str
    options: list[str] = field(default_factory=list)
    answer: str = ""
    answer_type: str = "letter"
    span: list[float] | None = None
    windows: list[list[float]] = field(default_factory=list)
    split: str = "train"
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    meta: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Sample:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})

    @property
    def meta_dict(self) -> dict[str, Any]:
        return json.loads(self.meta) if self.meta else {}

    def problems(self) -> list[str]:
        """Reason codes for what makes this sample inconsistent; empty when it is valid."""
        return validate_sample(self)


def validate_sample(s: Sample, *, published_spans: bool | None = None) -> list[str]:
    """Check the invariants of a `Sample`; returns short reason codes (empty list = valid).

    These are the record-level rules (no video access): task/modality/answer type known, every window well
    formed and inside the known duration, and the task's own rules (options, answer, span: its family in
    `mtvr_data.tasks`). `published_spans`: the windows are a benchmark's published ground truth, kept as published
    even where they start before 0 or end past the video (docs/evaluation.md), so only their form is checked;
    None (default): so for a benchmark row (`meta["benchmark"]` set by `mtvr_data.benchmarks`).
    """
    if published_spans is None:
        published_spans = s.split == "test" and '"benchmark"' in (s.meta or "") and "benchmark" in s.meta_dict
    out: list[str] = []
    if s.task not in TASKS:
        out.append("unknown_task")
    if s.modality not in MODALITIES:
        out.append("unknown_modality")
    if s.answer_type not in ANSWER_TYPES:
        out.append("unknown_answer_type")
    if not s.question.strip():
        out.append("empty_question")
    if not s.video:
        out.append("missing_video")
    if s.task in TASKS:
        from mtvr_data.tasks import family  # the task's own rules; imported here, tasks import this module

        out += family(s.task).validate(s)
    for window in ([s.span] if s.span is not None else []) + list(s.windows):
        if len(window) != 2 or not all(isinstance(t, int | float) and math.isfinite(t) for t in window):
            out.append("bad_span")
            break
        if window[1] <= window[0]:
            out.append("end_not_after_start")
            break
        if not published_spans and (window[0] < 0 or (s.duration is not None and window[1] > s.duration + 1e-6)):
            out.append("span_outside_video")
            break
    if s.span is not None and s.windows and list(s.windows[0]) != list(s.span):
        out.append("span_not_first_window")
    return out


@dataclass(slots=True)
class SampleError:
    """A record that could not become a `Sample`: where it was, which stage refused it and why.

    `reason` is a short code tests and reports can count (e.g. `end_not_after_start`); `detail` is the
    sentence for a person; `raw` is the offending input, cut to a few hundred characters.
    """

    source: str
    location: str
    reason: str
    detail: str = ""
    stage: str = "read"
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def for_sample(cls, sample: Sample, stage: str, reason: str, detail: str = "") -> SampleError:
        """The dead letter of a sample refused after read: located by its origin (file:line), `raw` its id."""
        origin = sample.meta_dict.get("origin", sample.id)
        return cls(sample.source, str(origin), reason, detail, stage=stage, raw=sample.id)


@dataclass(slots=True)
class ToolCall:
    """A tool call as the model wrote it; arguments are kept as the JSON text it produced."""

    name: str
    arguments: str


@dataclass(slots=True)
class Clip:
    """What a tool turn returned, by time only (never pixels): re-rendered from the video when trained on."""

    start: float
    end: float
    frame_times: list[float] = field(default_factory=list)


@dataclass(slots=True)
class Message:
    """One chat turn of a CoT row: system, user, assistant (text and tool calls) or tool (a clip)."""

    role: str
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    clip: Clip | None = None


@dataclass(slots=True)
class CotRow:
    """A verified chain of thought for SFT: the sample, the conversation and how it was made."""

    sample: Sample
    messages: list[Message]
    teacher: str
    config_hash: str
    reward: float
    num_tool_calls: int
    answer_conditioned: bool
    tools: bool


@dataclass(slots=True)
class RlRow:
    """A sample graded by K policy rollouts, for DGRPO: pass rate, mean reward and difficulty."""

    sample: Sample
    num_rollouts: int
    pass_rate: float
    mean_reward: float
    difficulty: float
    bucket: str
    policy: str
    tools: bool


# --- Arrow schemas --------------------------------------------------------------------------------------------------

SPAN_TYPE = pa.list_(pa.float64())

SAMPLE_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("task", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("video", pa.string(), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("options", pa.list_(pa.string()), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
    pa.field("answer_type", pa.string(), nullable=False),
    pa.field("span", SPAN_TYPE),
    pa.field("windows", pa.list_(SPAN_TYPE), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("duration", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("meta", pa.string(), nullable=False),
]
SAMPLE_SCHEMA = pa.schema(SAMPLE_FIELDS)

TOOL_CALL_TYPE = pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())])
CLIP_TYPE = pa.struct(
    [pa.field("start", pa.float64()), pa.field("end", pa.float64()), pa.field("frame_times", pa.list_(pa.float64()))]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL_TYPE)),
        pa.field("clip", CLIP_TYPE),
    ]
)

COT_SCHEMA = pa.schema(
    SAMPLE_FIELDS
    + [
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("teacher", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("num_tool_calls", pa.int64(), nullable=False),
        pa.field("answer_conditioned", pa.bool_(), nullable=False),
        pa.field("tools", pa.bool_(), nullable=False),
    ]
)

RL_SCHEMA = pa.schema(
    SAMPLE_FIELDS
    + [
        pa.field("num_rollouts", pa.int64(), nullable=False),
        pa.field("pass_rate", pa.float64(), nullable=False),
        pa.field("mean_reward", pa.float64(), nullable=False),
        pa.field("difficulty", pa.float64(), nullable=False),
        pa.field("bucket", pa.string(), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("tools", pa.bool_(), nullable=False),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("location", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)
