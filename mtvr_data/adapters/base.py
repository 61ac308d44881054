"""The shared base of every source adapter: reading native files record by record, ids, errors, counts.

A subclass says how to walk its files (`records`) and how one native record becomes samples
(`to_samples`); the base owns everything else: decoding (a bad byte, a bad JSON line or a missing
field costs one error record, never the read), stable ids, the record-level checks of
`mtvr_data.schema.validate_sample`, and the counts a summary prints.

Every file is read through `mtvr_data.storage`, so an annotation file (and the side files an adapter finds
beside it) may be a local path or a URL (`s3://...`, `gs://...`). Paths are kept as strings, never as
`pathlib.Path`: `location`, `file_name`, `file_stem`, `file_suffix` and `sibling` are the path helpers that
work on both.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from mtvr_data import storage
from mtvr_data.schema import Sample, SampleError, sample_id, validate_sample
from mtvr_data.timecode import TimeFormatError

log = logging.getLogger(__name__)

#: How far past the annotated duration an end time may go and still be clamped to it. Charades-STA ends
#: overshoot by up to 1.54 s and ReXTime rounds ends up to whole seconds (FORMATS.md); more is an error.
SPAN_TOLERANCE_S = 2.0
#: How far before 0 a start may lie and still be clamped to 0. NExT-GQA's test windows start at -0.1 and -0.2 s
#: (one-decimal times); 0.3 s keeps those with one more 0.1 s step to spare and still refuses a shifted time base.
START_TOLERANCE_S = 0.3
#: Times closer than this are the same time: 2D-TAN's ActivityNet durations are float noise (70.28999999999999
#: for 70.29), and a 1e-14 s overshoot is not a clamp worth recording. `validate_sample` allows the same.
TIME_EPSILON_S = 1e-6
#: Longest question (characters, after cleaning) a sample may carry; longer is `question_too_long` at read time.
#: The longest real question in the benchmarks' Video-R1-eval copies (EasyVideoR1 valid_data, 8 files, 16k rows)
#: is 2,348 characters (VideoMMMU; Video-MME 813, LongVideoBench 770, LongVideo-Reason 475): 8,000 characters
#: (~2,000 tokens) is over three times that, a small part of any prompt budget, and keeps a corrupt or hostile
#: record (a 50 MB "question" once reached the grader) out of prompts, rewards and the grader.
MAX_QUESTION_CHARS = 8_000
RAW_CHARS = 400
#: The UTF-8 byte order mark, as bytes and as the decoded character.
BOM_BYTES = b"\xef\xbb\xbf"
BOM = "\ufeff"
#: Characters removed from questions, options and answers: NUL and the other C0/C1 controls (tab, newline and
#: carriage return stay), DEL, the bidirectional embedding / override / isolate / mark characters (they can make
#: text display in a different order than it is read) and a stray U+FEFF inside the text.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


class AdapterError(Exception):
    """A native record cannot become a sample; `code` is the short reason counted in summaries."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class RawRecord:
    """One native record and where it came from (`file:line` or `file#key`).

    `error` is set instead of `value` when the record could not even be decoded (bad bytes, bad JSON,
    a line that does not match the format); the base turns it into a `SampleError`.
    """

    location: str
    value: Any = None
    raw: str = ""
    error: AdapterError | None = None


def has_bad_bytes(value: Any) -> bool:
    """True if a decoded value holds bytes that were not UTF-8 (lone surrogates from 'surrogateescape')."""
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, dict):
        return any(has_bad_bytes(k) or has_bad_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_bad_bytes(v) for v in value)
    return False


def printable(text: str, limit: int = RAW_CHARS) -> str:
    """`text` made safe to write (undecodable bytes become U+FFFD) and cut to `limit` characters."""
    clean = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return clean if len(clean) <= limit else clean[:limit] + "..."


def clean_text(text: str) -> str:
    """`text` without NUL, other control characters and bidi controls (see `_CONTROL_CHARS`); nothing else changes."""
    return _CONTROL_CHARS.sub("", text)


def strip_bom(text: str) -> str:
    """`text` without a leading byte order mark (the one place every reader drops it)."""
    return text[1:] if text.startswith(BOM) else text


StrPath = str | os.PathLike[str]


def location(path: StrPath) -> str:
    """`path` as the string the adapters keep and print: a URL as written, a local path as `pathlib` spells it
    (so local messages stay what they were); a URL never goes through `Path`."""
    text = os.fspath(path)
    return text if "://" in text else str(Path(text))


def file_name(path: StrPath) -> str:
    """The last part of a path or URL (`charades_sta_test.txt`)."""
    return storage.name(location(path))


def file_stem(path: StrPath) -> str:
    """The file name without its last suffix, as `Path.stem` has it."""
    return PurePosixPath(file_name(path)).stem


def file_suffix(path: StrPath) -> str:
    """The file name's last suffix (`.json`), as `Path.suffix` has it."""
    return PurePosixPath(file_name(path)).suffix


def sibling(path: StrPath, name: str) -> str:
    """The file `name` in the folder holding `path` (a side file next to the annotations), path or URL."""
    text = location(path)
    return storage.join(storage.parent(text), name) if "://" in text else str(Path(text).with_name(name))


def open_binary(path: StrPath) -> IO[bytes]:
    """A binary reader of a path or URL (`FileNotFoundError` when there is nothing there)."""
    return storage.open_read(location(path))


def read_head(path: StrPath, size: int = 4096) -> bytes:
    """The first `size` bytes of a file after a BOM and leading whitespace (format sniffing)."""
    with open_binary(path) as fh:
        data = fh.read(size)
    return data.removeprefix(BOM_BYTES).lstrip(b" \t\r\n")


def _read_text(path: StrPath) -> str:
    """A whole file as text, without its BOM (so JSON parses and a CSV header names its first column)."""
    return strip_bom(storage.read_bytes(location(path)).decode("utf-8", "surrogateescape"))


def iter_lines(path: StrPath) -> Iterator[RawRecord]:
    """Non-blank lines of a text file, decoded one by one so a bad byte costs only its own line."""
    name = file_name(path)
    with open_binary(path) as fh:
        for lineno, data in enumerate(fh, start=1):
            loc = f"{name}:{lineno}"
            if lineno == 1:
                data = data.removeprefix(BOM_BYTES)  # else it becomes part of the first record (a video name)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRecord(
                    loc,
                    raw=printable(data.decode("utf-8", "replace")),
                    error=AdapterError("non_utf8", f"invalid UTF-8 at byte {exc.start} of the line"),
                )
                continue
            text = text.rstrip("\r\n")
            if text.strip():
                yield RawRecord(loc, value=text, raw=printable(text))


def iter_jsonl(path: StrPath) -> Iterator[RawRecord]:
    """Objects of a JSON-lines file; a line that is not a JSON object becomes a `bad_json` record."""
    for rec in iter_lines(path):
        if rec.error is not None:
            yield rec
            continue
        try:
            value = json.loads(rec.value)
        except json.JSONDecodeError as exc:
            yield RawRecord(rec.location, raw=rec.raw, error=AdapterError("bad_json", str(exc)))
            continue
        if not isinstance(value, dict):
            yield RawRecord(rec.location, raw=rec.raw, error=AdapterError("bad_json", "line is not a JSON object"))
            continue
        yield RawRecord(rec.location, value=value, raw=rec.raw)


def load_json(path: StrPath) -> Any:
    """A whole JSON file; raises `AdapterError("bad_json")` naming the position when it does not parse.

    Decoding uses 'surrogateescape' so one record with bad bytes can be reported alone (`check_utf8`)
    instead of failing the file.
    """
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AdapterError("bad_json", f"{file_name(path)} is not valid JSON: {exc}") from exc


def iter_json_items(path: StrPath) -> Iterator[RawRecord]:
    """Records of a JSON file holding either an object keyed by id (`file#key`) or an array (`file#index`).

    A file that does not parse at all yields a single `bad_json` record for the file: nothing in it
    can be trusted, and the error says so rather than the read stopping.
    """
    name = file_name(path)
    try:
        data = load_json(path)
    except AdapterError as exc:
        yield RawRecord(name, raw="", error=exc)
        return
    if isinstance(data, dict):
        items: Iterable[tuple[str, Any]] = data.items()
    elif isinstance(data, list):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        yield RawRecord(name, error=AdapterError("bad_json", "top level is neither an object nor an array"))
        return
    for key, value in items:
        loc = f"{name}#{printable(key, 80)}"
        raw = printable(json.dumps({key: value}, ensure_ascii=False))
        if has_bad_bytes(key) or has_bad_bytes(value):
            yield RawRecord(loc, raw=raw, error=AdapterError("non_utf8", "record holds bytes that are not UTF-8"))
        else:
            yield RawRecord(loc, value=(key, value), raw=raw)


def iter_csv(path: StrPath) -> Iterator[RawRecord]:
    """Rows of a CSV file with a header, as dicts; `file:line` is the row's first physical line."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    name = file_name(path)
    line = reader.line_num + 1
    for row in reader:
        loc = f"{name}:{line}"
        line = reader.line_num + 1
        if not row or not any(cell.strip() for cell in row):
            continue
        raw = printable(",".join(row))
        if has_bad_bytes(row):
            yield RawRecord(loc, raw=raw, error=AdapterError("non_utf8", "row holds bytes that are not UTF-8"))
        elif len(row) != len(header):
            yield RawRecord(
                loc, raw=raw, error=AdapterError("bad_line", f"{len(row)} cells where the header has {len(header)}")
            )
        else:
            yield RawRecord(loc, value=dict(zip(header, row, strict=True)), raw=raw)


def require(record: dict[str, Any], key: str) -> Any:
    """`record[key]`, or `AdapterError("missing_field")` naming the keys the record does have."""
    value = record.get(key) if isinstance(record, dict) else None
    if value is None or (isinstance(value, str) and not value.strip()):
        have = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
        raise AdapterError("missing_field", f"missing field {key!r} (record has: {have})")
    return value


def to_float(value: Any, what: str) -> float:
    """A finite float from a number or numeric string, else `AdapterError("bad_value")`."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise AdapterError("bad_value", f"{what} is not a number: {value!r}") from exc
    if not math.isfinite(out):
        raise AdapterError("bad_value", f"{what} is not finite: {value!r}")
    return out


def fit_span(
    start: float,
    end: float,
    duration: float | None,
    tolerance: float = SPAN_TOLERANCE_S,
    start_tolerance: float = START_TOLERANCE_S,
    *,
    clamp: bool = True,
) -> list[float]:
    """Check a [start, end] window and bring a small overshoot of either end back inside the video.

    `clamp=False` (benchmark readers, `SourceAdapter.clamp_spans`): the window is kept exactly as published, only
    `end_not_after_start` is refused. A benchmark is scored against its published windows (docs/evaluation.md):
    clamping `[12.7, 19.9]` to a 18.58 s video would make an exact prediction of the published window score 0.82.

    end <= start is `end_not_after_start`; a start more than `start_tolerance` seconds before 0 or an end more
    than `tolerance` seconds past the duration is `span_outside_video`. A start within its tolerance is clamped
    to 0 (NExT-GQA's -0.1 s) and an end within its tolerance to the duration: the sources round or overshoot by
    that much (FORMATS.md), and the caller records the published value (`moved` says whether there is one to
    record). An end past the duration by less than `TIME_EPSILON_S` is float noise and is left as published.
    """
    if end <= start:
        raise AdapterError("end_not_after_start", f"span [{start}, {end}] does not end after it starts")
    if not clamp:
        return [float(start), float(end)]
    if start < -start_tolerance:
        raise AdapterError("span_outside_video", f"span [{start}, {end}] starts before 0")
    start = max(start, 0.0)
    if duration is not None:
        if start >= duration:
            raise AdapterError(
                "span_outside_video", f"span [{start}, {end}] starts at or after the end ({duration} s)"
            )
        if end > duration + tolerance:
            raise AdapterError("span_outside_video", f"span [{start}, {end}] ends past the duration {duration} s")
        if end > duration + TIME_EPSILON_S:
            end = duration
    return [float(start), float(end)]


def moved(published: float, fitted: float) -> bool:
    """Whether `fit_span` changed a time by more than float noise (then the published value goes into `meta`)."""
    return abs(published - fitted) > TIME_EPSILON_S


def span_meta(start: float, end: float, span: list[float]) -> dict[str, float]:
    """`original_start` / `original_end` for the ends of a fitted `span` that differ from the published ones."""
    out: dict[str, float] = {}
    if moved(start, span[0]):
        out["original_start"] = start
    if moved(end, span[1]):
        out["original_end"] = end
    return out


class SourceAdapter(ABC):
    """Reads one source's native annotation files and yields `Sample`s or `SampleError`s.

    Subclasses set `name` (the registry key) and implement `records` and `to_samples`. Options given
    to the constructor are the per-source settings a pipeline config can name (split, video extension).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: Longest question a sample may carry (`question_too_long` beyond); a subclass may set its own.
    max_question_chars: ClassVar[int] = MAX_QUESTION_CHARS
    #: Whether a sample's own `meta["origin"]` (the native record it was first read from) is kept; else the origin is
    #: where this adapter read it. Only adapters that read samples already made (`samples`) keep it.
    keeps_origin: ClassVar[bool] = False
    #: Whether spans are fitted to the video (`fit_span`: small overshoots clamped, the published value kept in
    #: `meta`, larger ones refused). Training sources: yes. Benchmark readers: no, their windows are the published
    #: ground truth a score is computed against (`mtvr_data.benchmarks.base.BenchmarkAdapter`).
    clamp_spans: ClassVar[bool] = True

    def __init__(
        self, annotations: str | os.PathLike[str], *, split: str | None = None, video_ext: str = ".mp4"
    ) -> None:
        #: The annotation file: a local path or a URL, as a string (`location`).
        self.annotations: str = location(annotations)
        if not storage.exists(self.annotations):
            raise FileNotFoundError(f"{self.name}: annotation file {self.annotations} does not exist")
        self.split = split or self.guess_split(self.annotations)
        self.video_ext = video_ext
        self.counts: Counter[str] = Counter()
        self._warned: set[str] = set()

    @classmethod
    def row_sources(cls, annotations: StrPath, **options: Any) -> set[str]:
        """The `source` names the samples of `annotations` carry: this adapter's name. An adapter that passes on
        other sources' samples (`samples`) says which, so the build knows their video roots and mix cells."""
        return {cls.name}

    @staticmethod
    def guess_split(path: StrPath) -> str:
        """Split named by the file name's words (train / val / test), defaulting to train."""
        words = set(re.split(r"[^a-z0-9]+", file_stem(path).lower()))
        if "test" in words:
            return "test"
        if words & {"val", "valid", "validation", "dev"}:
            return "val"
        return "train"

    @abstractmethod
    def records(self) -> Iterator[RawRecord]:
        """Every native record of the annotation file(s), in file order."""

    @abstractmethod
    def to_samples(self, record: RawRecord) -> Iterable[Sample]:
        """The samples of one native record; raise `AdapterError` to reject it with a reason."""

    def make_sample(
        self,
        *,
        task: str,
        video: str,
        question: str,
        modality: str = "video",
        options=(),
        answer: str = "",
        answer_type: str = "letter",
        span: list[float] | None = None,
        windows: list[list[float]] | None = None,
        duration: float | None = None,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        meta: dict[str, Any] | None = None,
        upstream_id: str | int | None = None,
    ) -> Sample:
        """Build a sample with its stable id (`upstream_id`: the source's own question id, where it has one that tells
        apart otherwise equal questions: `schema.sample_id`); `windows` defaults to `[span]`.

        Question, options and answer are cleaned (`clean_text`) before the id is made; a question longer than
        `max_question_chars` is `question_too_long`, an option that cleaning leaves empty is `bad_value`.
        """
        question, options, answer = self.clean_texts(question, options, answer)
        if windows is None:
            windows = [list(span)] if span is not None else []
        return Sample(
            id=sample_id(self.name, video, question, options, answer, span, upstream_id),
            source=self.name,
            task=task,
            modality=modality,
            video=video,
            question=question,
            options=options,
            answer=answer,
            answer_type=answer_type,
            span=None if span is None else list(span),
            windows=[list(w) for w in windows],
            split=self.split,
            duration=duration,
            fps=fps,
            width=width,
            height=height,
            meta=json.dumps(meta or {}, ensure_ascii=False, sort_keys=True),
        )

    def clean_texts(self, question: str, options: Iterable[Any], answer: str) -> tuple[str, list[str], str]:
        """Question, options and answer cleaned (`clean_text`), as every adapter's samples are; a question longer than
        `max_question_chars` is `question_too_long`, an option that cleaning leaves empty is `bad_value`."""
        options = [clean_text(str(o)) for o in options]
        question = clean_text(question).strip()
        answer = clean_text(answer)
        if len(question) > self.max_question_chars:
            raise AdapterError(
                "question_too_long",
                f"question of {len(question):,} characters (at most {self.max_question_chars:,}): "
                f"{printable(question, 80)!r}",
            )
        empty = [i for i, o in enumerate(options) if not o.strip()]
        if empty:
            raise AdapterError("bad_value", f"option {empty[0]} is empty once control characters are removed")
        return question, options, answer

    def read(self) -> Iterator[Sample | SampleError]:
        """Every sample and every rejected record of the source; never stops on a bad record."""
        for record in self.records():
            self.counts["records"] += 1
            if record.error is not None:
                yield self._error(record, record.error)
                continue
            try:
                samples = list(self.to_samples(record))
            except AdapterError as exc:
                yield self._error(record, exc)
                continue
            except (TimeFormatError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                yield self._error(record, AdapterError("bad_value", f"{type(exc).__name__}: {exc}"))
                continue
            for i, sample in enumerate(samples):
                loc = record.location if len(samples) == 1 else f"{record.location}[{i}]"
                problems = validate_sample(sample, published_spans=not self.clamp_spans)
                if problems:
                    yield self._error(RawRecord(loc, raw=record.raw), AdapterError(problems[0], ", ".join(problems)))
                    continue
                # Provenance for later stages' error records (not part of the id); a sample read back from a samples
                # file keeps the native record it came from (`keeps_origin`).
                meta = sample.meta_dict
                if not (self.keeps_origin and meta.get("origin")):
                    sample.meta = json.dumps({**meta, "origin": loc}, ensure_ascii=False, sort_keys=True)
                self.counts["samples"] += 1
                yield sample
        if self.counts["records"] == 0:
            # Not an error record (there is no record to blame), but never a silent "0 records" either.
            self.counts["empty_files"] += 1
            log.warning("%s: annotation file %s holds no records", self.name, self.annotations)

    def _error(self, record: RawRecord, exc: AdapterError) -> SampleError:
        self.counts[f"error:{exc.code}"] += 1
        if exc.code == "missing_field" and exc.detail not in self._warned:
            self._warned.add(exc.detail)
            log.warning("%s: %s (first at %s)", self.name, exc.detail, record.location)
        return SampleError(
            source=self.name,
            location=record.location,
            reason=exc.code,
            detail=exc.detail,
            stage="read",
            raw=record.raw,
        )
