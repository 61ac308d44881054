"""`samples`: your own rows, in the project's `Sample` schema, as Parquet (what `mtvr samples` writes) or JSON lines.

Why a source of samples at all: rows that no native adapter reads (your own annotations, a cleaned or filtered
copy of a published set, the output of `mtvr samples` edited by hand) can join a build without writing an adapter.
Each row is one `Sample` (`mtvr_data/schema.py`, `Sample.to_dict`): `id`, `source`, `task`, `modality`, `video`,
`question` are required; `options`, `answer`, `answer_type`, `span`, `windows`, `split`, `duration`, `fps`,
`width`, `height`, `meta` (a JSON object, as a string or a mapping) are optional with the schema's defaults.

A row keeps its `id` and its `source`, so a file `mtvr samples` wrote comes back as the same samples, and its rows
fall in their own source's mix cells (`text/charades_sta`, ...). The build finds their sources with `row_sources`
(to give them this entry's `videos` root and to check the mix). A sample's `meta["origin"]` (the native record it
was first read from) is kept; a row without one gets `file:line` or `file#row`.

Every row goes through the base adapter like any native record (`SourceAdapter.read`): the same text cleaning and
question cap, `validate_sample`'s checks, and every failure is a read dead letter with a reason: `bad_json` (a
JSONL line that is not a JSON object), `bad_parquet` (a Parquet file that cannot be read: one record for the
file), `missing_field`, `bad_value` (an unknown field, a value of the wrong type), `non_utf8`, and the schema's
codes. Later stages apply to these rows as to any: media paths stay under `videos` (`path_outside_root`), repeated
ids are `duplicate_id` at dedup, the contamination filter runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

from mtvr_data.adapters.base import (
    AdapterError,
    RawRecord,
    SourceAdapter,
    StrPath,
    file_name,
    file_suffix,
    has_bad_bytes,
    iter_jsonl,
    location,
    printable,
    require,
)
from mtvr_data.adapters.registry import register
from mtvr_data.schema import Sample

#: Fields a row must have (no default in `Sample`).
REQUIRED: tuple[str, ...] = ("id", "source", "task", "modality", "video", "question")
FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(Sample))
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


def is_parquet(path: StrPath) -> bool:
    """Parquet by suffix; anything else is read as JSON lines."""
    return file_suffix(path).lower() in PARQUET_SUFFIXES


def _parquet_rows(path: str) -> Iterator[RawRecord]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtvr_data import storage

    name = file_name(path)
    try:
        table = pq.read_table(pa.BufferReader(storage.read_bytes(path)))
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        yield RawRecord(name, error=AdapterError("bad_parquet", f"{name} is not a readable Parquet file: {exc}"))
        return
    for index, row in enumerate(table.to_pylist()):
        loc = f"{name}#{index}"
        raw = printable(json.dumps(row, ensure_ascii=False, default=str))
        if has_bad_bytes(row):
            yield RawRecord(loc, raw=raw, error=AdapterError("non_utf8", "row holds bytes that are not UTF-8"))
        else:
            yield RawRecord(loc, value=row, raw=raw)


def _text(row: dict[str, Any], key: str, default: str | None = None) -> str:
    value = require(row, key) if default is None else row.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise AdapterError("bad_value", f"{key} must be a string, got {type(value).__name__} {value!r}")
    return value


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdapterError("bad_value", f"{key} must be a finite number or null, got {value!r}")
    return float(value)


def _integer(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError("bad_value", f"{key} must be an integer or null, got {value!r}")
    return value


def _window(value: Any, key: str) -> list[float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in value)
    ):
        raise AdapterError("bad_value", f"{key} must be a [start, end] pair of numbers, got {value!r}")
    return [float(value[0]), float(value[1])]


def _meta(value: Any) -> str:
    if value is None or value == "":
        return "{}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise AdapterError("bad_value", f"meta is not JSON: {exc}") from None
        if isinstance(parsed, dict):
            return value
    raise AdapterError("bad_value", f"meta must be a JSON object (or its text), got {value!r}")


@register
class SamplesSource(SourceAdapter):
    """Rows already in the `Sample` schema (Parquet or JSON lines); see the module docstring."""

    name = "samples"
    description = "your own rows in the Sample schema: Parquet (as `mtvr samples` writes) or JSON lines"
    keeps_origin = True

    @classmethod
    def row_sources(cls, annotations: StrPath, **options: Any) -> set[str]:
        """The `source` values of the file's rows (rows that do not parse name none: they are read errors)."""
        path = location(annotations)
        if is_parquet(path):
            import pyarrow as pa
            import pyarrow.parquet as pq

            from mtvr_data import storage

            try:
                table = pq.read_table(pa.BufferReader(storage.read_bytes(path)), columns=["source"])
            except (pa.ArrowInvalid, OSError, KeyError):
                return set()
            return {s for s in table.column("source").to_pylist() if isinstance(s, str) and s}
        return {
            r.value["source"]
            for r in iter_jsonl(path)
            if r.error is None and isinstance(r.value.get("source"), str) and r.value["source"]
        }

    def records(self) -> Iterator[RawRecord]:
        return _parquet_rows(self.annotations) if is_parquet(self.annotations) else iter_jsonl(self.annotations)

    def to_samples(self, record: RawRecord) -> list[Sample]:
        row = record.value
        unknown = sorted(set(row) - FIELDS)
        if unknown:
            raise AdapterError(
                "bad_value", f"unknown field {unknown[0]!r} (a Sample has: {', '.join(sorted(FIELDS))})"
            )
        values = {key: _text(row, key) for key in REQUIRED}
        options = row.get("options") or []
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise AdapterError("bad_value", f"options must be a list of strings, got {options!r}")
        question, options, answer = self.clean_texts(values["question"], options, _text(row, "answer", ""))
        span = row.get("span")
        windows = row.get("windows")
        if windows is not None and not isinstance(windows, list):
            raise AdapterError("bad_value", f"windows must be a list of [start, end] pairs, got {windows!r}")
        return [
            Sample(
                id=values["id"],
                source=values["source"],
                task=values["task"],
                modality=values["modality"],
                video=values["video"],
                question=question,
                options=options,
                answer=answer,
                answer_type=_text(row, "answer_type", "letter"),
                span=None if span is None else _window(span, "span"),
                windows=[_window(w, "windows") for w in (windows or [])],
                split=_text(row, "split", self.split),
                duration=_number(row, "duration"),
                fps=_number(row, "fps"),
                width=_integer(row, "width"),
                height=_integer(row, "height"),
                meta=_meta(row.get("meta")),
            )
        ]
