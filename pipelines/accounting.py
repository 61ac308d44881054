"""Dead letters to `<out>/rejected/`, and the table that says where every input went.

The table is built from the dead letters and the stages' tallies of elements in and kept
(`pipelines.transforms.StageOutput.counts`), both counted on PCollections, not from Beam metrics alone
(some runners report metrics as approximate or attempted counts). For every stage it holds

    in = kept + rejected,   rejected = the sum over reasons,

overall and per source; `check_accounting` asserts both, so a stage that drops an element without a dead
letter shows up as a broken sum instead of a quietly smaller dataset.

Files written:

- `<out>/rejected/<stage>.jsonl`: one `SampleError` per line (the fields of `schema.ERROR_SCHEMA`),
  sorted by source, location, reason and raw, so two runs give the same bytes;
- `<out>/accounting.json`: the table (`build_table`'s format), which `render_accounting` prints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam

from mtvr_data import storage
from mtvr_data.schema import SampleError

ACCOUNTING_FILE = "accounting.json"
REJECTED_DIR = "rejected"
#: The order stages are listed in; stages not named here follow, alphabetically.
STAGE_ORDER = ("read", "probe", "dedup", "contamination", "grade", "teacher", "verify", "select", "balance", "write")
#: An accounting entry: ((kind, stage, source, reason), count); kind is "in", "kept" or "rejected", and
#: reason is "" except for rejections.
Entry = tuple[tuple[str, str, str, str], int]


class AccountingError(AssertionError):
    """A stage whose counts do not add up: some element was neither kept nor sent to the dead letters."""


def _stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage), "") if stage in STAGE_ORDER else (len(STAGE_ORDER), stage)


def _counts() -> dict[str, Any]:
    return {"in": 0, "kept": 0, "rejected": 0, "by_reason": {}}


#: Tally kinds of the model stages: results read from the cache and results the model computed (resume you see).
RESUME_KINDS = ("cached", "computed")


def build_table(entries: Iterable[Entry]) -> dict[str, Any]:
    """The accounting table from summed entries.

    Format: `{"stages": [{"stage", "in", "kept", "rejected", "by_reason": {reason: n},
    "by_source": {source: {"in", "kept", "rejected", "by_reason"}}}, ...], "rejected": total}`,
    stages in pipeline order, reasons and sources sorted. A model stage's rows (and sources) also hold `cached` and
    `computed`: how many results came from the result cache and how many the model produced in this run.
    """
    stages: dict[str, dict[str, Any]] = {}
    for (kind, stage, source, reason), n in sorted(entries):  # arrival order is the runner's: never shown
        row = stages.setdefault(stage, {"stage": stage, **_counts(), "by_source": {}})
        per_source = row["by_source"].setdefault(source, _counts())
        for target in (row, per_source):
            target[kind] = target.get(kind, 0) + n
            if kind == "rejected":
                target["by_reason"][reason] = target["by_reason"].get(reason, 0) + n
    for row in stages.values():
        for target in (row, *row["by_source"].values()):
            target["by_reason"] = dict(sorted(target["by_reason"].items()))
            if any(kind in row for kind in RESUME_KINDS):  # a model stage: both counts, zero included
                for kind in RESUME_KINDS:
                    target.setdefault(kind, 0)
        row["by_source"] = dict(sorted(row["by_source"].items()))
    ordered = [stages[s] for s in sorted(stages, key=_stage_rank)]
    return {"stages": ordered, "rejected": sum(row["rejected"] for row in ordered)}


def check_accounting(table: dict[str, Any], chain: Sequence[str] = ()) -> None:
    """Raise `AccountingError` unless in = kept + rejected (and rejected = sum by reason) for every stage
    and source; with `chain`, also that each listed stage takes in what the one before it kept."""
    problems = []
    for row in table["stages"]:
        for name, c in [("all sources", row), *row["by_source"].items()]:
            if c["in"] != c["kept"] + c["rejected"]:
                problems.append(
                    f"{row['stage']} ({name}): in {c['in']} != kept {c['kept']} + rejected {c['rejected']}"
                )
            if c["rejected"] != sum(c["by_reason"].values()):
                problems.append(f"{row['stage']} ({name}): rejected {c['rejected']} != the sum by reason")
    by_stage = {row["stage"]: row for row in table["stages"]}
    for before, after in zip(chain, chain[1:], strict=False):
        kept = by_stage.get(before, {}).get("kept", 0)
        took = by_stage.get(after, {}).get("in", 0)
        if kept != took:
            problems.append(f"{after} took in {took} rows but {before} kept {kept}")
    if problems:
        raise AccountingError("accounting does not add up:\n  " + "\n  ".join(problems))


def render_accounting(table: dict[str, Any]) -> str:
    """The table as text for a terminal: one line per stage (a model stage with its cached and computed results),
    then its rejections by reason."""
    lines = [f"{'stage':<26}{'in':>9}{'kept':>9}{'rejected':>10}{'cached':>9}{'computed':>10}"]
    for row in table["stages"]:
        resume = ""
        if any(kind in row for kind in RESUME_KINDS):
            resume = f"{row.get('cached', 0):>9}{row.get('computed', 0):>10}"
        lines.append(f"{row['stage']:<26}{row['in']:>9}{row['kept']:>9}{row['rejected']:>10}{resume}")
        for reason, n in row["by_reason"].items():
            lines.append(f"  {reason:<42}{n:>10}")
    lines.append(f"{'rejected in all':<44}{table['rejected']:>10}")
    return "\n".join(lines)


def read_accounting(out_dir: str | os.PathLike[str], name: str = ACCOUNTING_FILE) -> dict[str, Any]:
    """The table a run wrote to `<out_dir>/accounting.json` (build-cot's: `name="accounting_cot.json"`)."""
    return json.loads(storage.read_text(storage.join(os.fspath(out_dir), name)))


def _write_text(path: str, text: str) -> None:
    """Written whole through `mtvr_data.storage`, so `out` may be a local folder or a bucket (gs://...)."""
    storage.write_text(path, text)


def _write_stage(keyed: tuple[str, Iterable[SampleError]], out_dir: str) -> str:
    stage, errors = keyed
    rows = sorted((e.to_dict() for e in errors), key=lambda d: (d["source"], d["location"], d["reason"], d["raw"]))
    path = storage.join(out_dir, REJECTED_DIR, f"{stage}.jsonl")
    _write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    return path


def _write_table(entries: list[Entry], out_dir: str) -> dict[str, Any]:
    table = build_table(entries)
    _write_text(storage.join(out_dir, ACCOUNTING_FILE), json.dumps(table, indent=2) + "\n")
    return table


class WriteRejected(beam.PTransform[tuple[beam.PCollection, beam.PCollection], beam.PCollection]):
    """`(dead_letters, tallies)` -> a one-element PCollection holding the accounting table.

    Writes each stage's dead letters to `<out>/rejected/<stage>.jsonl` and the table to
    `<out>/accounting.json`. `dead_letters` are `SampleError`s with `stage` set; `tallies` are the
    `((stage, source, "in" | "kept"), n)` elements of the stages' `StageOutput.counts`, flattened.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.out_dir = os.fspath(out_dir)

    def expand(self, inputs) -> beam.PCollection:
        dead, tallies = inputs
        out_dir = self.out_dir
        _ = (
            dead
            | "ByStage" >> beam.Map(lambda e: (e.stage, e))
            | "GroupByStage" >> beam.GroupByKey()
            | "WriteStage" >> beam.Map(_write_stage, out_dir)
        )
        rejected = dead | "KeyRejected" >> beam.Map(lambda e: (("rejected", e.stage, e.source, e.reason), 1))
        counted = tallies | "KeyTallies" >> beam.Map(lambda t: ((t[0][2], t[0][0], t[0][1], ""), t[1]))
        return (
            (rejected, counted)
            | "Entries" >> beam.Flatten()
            | "Sum" >> beam.CombinePerKey(sum)
            | "All" >> beam.combiners.ToList()
            | "WriteTable" >> beam.Map(_write_table, out_dir)
        )
