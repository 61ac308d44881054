"""Records <-> Arrow tables <-> Parquet files, validated against the schemas of `mtvr_data.schema`.

Reading checks the file before anything trusts it: a missing column, a column of the wrong type or a
null in a required column raises `SchemaMismatch` naming the column, instead of surfacing later as
a confusing error in a trainer. Harmless physical differences (large_string vs string, int32 vs
int64, as other writers produce) are cast to the schema.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtvr_data import storage
from mtvr_data.schema import (
    COT_SCHEMA,
    ERROR_SCHEMA,
    RL_SCHEMA,
    SAMPLE_SCHEMA,
    Clip,
    CotRow,
    Message,
    RlRow,
    Sample,
    SampleError,
    ToolCall,
)

SCHEMAS: dict[str, pa.Schema] = {"sample": SAMPLE_SCHEMA, "cot": COT_SCHEMA, "rl": RL_SCHEMA, "error": ERROR_SCHEMA}
Record = Sample | CotRow | RlRow | SampleError


class SchemaMismatch(ValueError):
    """A table or file does not match the expected record schema; `column` names the culprit."""

    def __init__(self, column: str, message: str, path: str | os.PathLike[str] | None = None) -> None:
        where = f" of {path}" if path else ""
        super().__init__(f"column {column!r}{where}: {message}")
        self.column = column
        self.message = message
        self.path = path


def kind_of(record: Record) -> str:
    for kind, cls in (("sample", Sample), ("cot", CotRow), ("rl", RlRow), ("error", SampleError)):
        if isinstance(record, cls):
            return kind
    raise TypeError(f"not a record: {type(record).__name__}")


def record_to_row(record: Record) -> dict[str, Any]:
    """A flat dict of one record, in its schema's column names (CoT/RL rows inline their sample)."""
    if isinstance(record, Sample | SampleError):
        return record.to_dict()
    row = record.sample.to_dict()
    for f in dataclasses.fields(record):
        if f.name == "sample":
            continue
        value = getattr(record, f.name)
        row[f.name] = [dataclasses.asdict(m) for m in value] if f.name == "messages" else value
    return row


def row_to_record(kind: str, row: dict[str, Any]) -> Record:
    """The record of `kind` for one row dict (the inverse of `record_to_row`)."""
    if kind == "sample":
        return Sample.from_dict(row)
    if kind == "error":
        return SampleError(**{f.name: row[f.name] for f in dataclasses.fields(SampleError)})
    sample = Sample.from_dict(row)
    if kind == "cot":
        messages = [
            Message(
                role=m["role"],
                content=m["content"] or "",
                tool_calls=[ToolCall(**t) for t in (m["tool_calls"] or [])],
                clip=Clip(**m["clip"]) if m.get("clip") else None,
            )
            for m in row["messages"]
        ]
        extra = {f.name: row[f.name] for f in dataclasses.fields(CotRow) if f.name not in ("sample", "messages")}
        return CotRow(sample=sample, messages=messages, **extra)
    if kind == "rl":
        extra = {f.name: row[f.name] for f in dataclasses.fields(RlRow) if f.name != "sample"}
        return RlRow(sample=sample, **extra)
    raise ValueError(f"unknown record kind {kind!r}; expected one of {sorted(SCHEMAS)}")


def to_table(records: Iterable[Record], kind: str | None = None) -> pa.Table:
    """An Arrow table of `records` with the exact schema of their kind (inferred from the first record)."""
    records = list(records)
    if kind is None:
        if not records:
            raise ValueError("cannot infer the kind of an empty list; pass kind=")
        kind = kind_of(records[0])
    schema = SCHEMAS[kind]
    return pa.Table.from_pylist([record_to_row(r) for r in records], schema=schema)


def validate_table(table: pa.Table, kind: str) -> pa.Table:
    """`table` conformed to the schema of `kind`, or `SchemaMismatch` naming the first bad column.

    Extra columns are an error too: a shard carrying columns nobody defined is a sign of a mixed-up file.
    """
    expected = SCHEMAS[kind]
    names = set(table.column_names)
    for field in expected:
        if field.name not in names:
            raise SchemaMismatch(field.name, f"missing (file has: {', '.join(table.column_names)})")
    extra = [n for n in table.column_names if n not in expected.names]
    if extra:
        raise SchemaMismatch(extra[0], f"not part of the {kind} schema")
    columns = []
    for field in expected:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise SchemaMismatch(
                    field.name, f"expected {field.type}, found {table.column(field.name).type}"
                ) from exc
        if not field.nullable and column.null_count:
            first = pc.index(pc.is_null(column), True).as_py()
            raise SchemaMismatch(
                field.name, f"{column.null_count} null value(s) in a required column (first at row {first})"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=expected)


def write_parquet(path: str | os.PathLike[str], records: Iterable[Record], kind: str | None = None) -> str:
    """Write `records` to one Parquet file (local path or URL, `mtvr_data.storage`) with their kind's schema."""
    with storage.open_write(path) as fh:
        pq.write_table(to_table(records, kind), fh)
    return os.fspath(path)


def read_table(path: str | os.PathLike[str], kind: str) -> pa.Table:
    """A Parquet file (local path or URL) as a table validated against the schema of `kind` (`validate_table`)."""
    path = os.fspath(path)
    try:
        if storage.is_url(path):
            table = pq.read_table(pa.BufferReader(storage.read_bytes(path)))
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaMismatch("*", f"not a readable Parquet file: {exc}", path) from exc
    try:
        return validate_table(table, kind)
    except SchemaMismatch as exc:
        raise SchemaMismatch(exc.column, exc.message, path) from None


def read_parquet(path: str | os.PathLike[str], kind: str) -> list[Record]:
    """The records of a Parquet file, after validating it against the schema of `kind`."""
    return [row_to_record(kind, row) for row in read_table(path, kind).to_pylist()]
