"""Balance to the mix and write the shards on the workers, then commit the build: shared by build-rl and build-cot.

Why it looks like this: at the paper's size (110k RL rows, 72k CoT rows with messages) collecting every row into
one element and balancing and writing it on one worker is a single-worker step whose memory grows with the dataset,
and on Dataflow it would write the shards onto that worker's scratch disk. So:

    rows -> key by mix cell (source x task x tools) -> GroupByKey -> balance one cell (`mtvr_data.mixing.balance`,
    the same ranking and the same rows as balancing everything at once) -> kept rows -> key by (split, shard)
    (`dataset_writer.split_of` / `shard_of`, shard count from the kept rows per split, a side input)
    -> GroupByKey -> one shard written through `mtvr_data.storage` by the worker that holds it.

No worker holds more than one cell, or one shard, at a time. Each cell's balance report (small) is collected into
`balance.json`. Everything is written under the build's staging folder (`<out>/.staging/<config>/`): shards,
dead letters, the accounting table and the balance report. `commit_build` then checks the accounting, and only
then puts the build in place (`dataset_writer.commit_config`: manifest marked pending first, written complete
last), so a build that fails or is killed before its commit leaves the previous complete build readable. The
launcher reads back through storage only, so it needs no shared disk with the workers.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from mtvr_data import storage
from mtvr_data.mixing import KeyReport, MixTargets, balance, mix_key
from mtvr_data.schema import CotRow, RlRow
from pipelines.accounting import ACCOUNTING_FILE, REJECTED_DIR, check_accounting
from pipelines.dataset_writer import (
    MAX_ROWS_PER_SHARD,
    ConfigWritten,
    commit_config,
    dumps_stable,
    plan_shards,
    shard_of,
    split_of,
    staged_shard_path,
    staging_folder,
    write_shard,
)
from pipelines.transforms import DEAD

log = logging.getLogger(__name__)

KEPT = "kept"
REPORTS = "reports"
#: The staging sub-folder of a build's run records (dead letters, accounting table, balance report).
RECORDS_DIR = "records"
#: The balance report's name inside the staging records.
BALANCE_FILE = "balance.json"


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """Where one build's run records go in the out folder (build-rl and build-cot keep theirs apart)."""

    rejected: str  # folder of `<stage>.jsonl` dead letters, relative to out
    accounting: str  # the accounting table's file name
    balance: str  # the balance report's file name


class _BalanceCellFn(beam.DoFn):
    """(mix cell, its rows) -> the rows kept for its target, the rest as dead letters; tallies; the cell report.

    The target is resolved here, where the cell's rows are all at hand: a fraction is of the rows the cell has."""

    def __init__(self, targets: MixTargets, seed: int) -> None:
        self.targets, self.seed = targets, seed

    def process(self, keyed: tuple[str, Iterable[CotRow | RlRow]]) -> Iterator[Any]:
        key, rows = keyed
        rows = list(rows)
        target = self.targets.target(key, len(rows))
        result = balance(rows, {key: target} if target is not None else {}, seed=self.seed)
        taken: Counter[str] = Counter()
        kept: Counter[str] = Counter()
        for row in result.kept:
            kept[row.sample.source] += 1
            yield beam.pvalue.TaggedOutput(KEPT, row)
        for error in result.rejected:
            yield beam.pvalue.TaggedOutput(DEAD, error)
        taken.update(kept)
        taken.update(e.source for e in result.rejected)
        for source in sorted(taken):
            yield (("balance", source, "in"), taken[source])
            yield (("balance", source, "kept"), kept[source])
        yield beam.pvalue.TaggedOutput(REPORTS, (key, result.report[key].to_dict()))


def as_mix_targets(targets: Mapping[str, int] | MixTargets) -> MixTargets:
    """`targets` as `MixTargets` (a plain cell -> count mapping is a mix of counts, already scaled)."""
    return targets if isinstance(targets, MixTargets) else MixTargets("mapping", counts=dict(targets))


def _write_report(reports: list[tuple[str, dict[str, Any]]], targets: MixTargets, path: str) -> str:
    """The balance report of every cell that had rows, plus the cells of the mix that had none (all short)."""
    merged = dict(reports)
    for key in targets.cells:
        target = targets.target(key, 0) or 0
        if key not in merged:
            merged[key] = KeyReport(key, target, 0, 0, 0).to_dict()
            if target:
                log.warning("balance: %s short of its target by %d (target %d, 0 available)", key, target, target)
    return storage.write_text(path, dumps_stable({k: merged[k] for k in sorted(merged)}))


class WriteBalancedShards(beam.PTransform[beam.PCollection, tuple[beam.PCollection, beam.PCollection]]):
    """Rows of one config -> balanced per mix cell and written as staged shards; `(tallies, dead letters)` out.

    `staging` is the build's staging folder (`dataset_writer.staging_folder`); shards go to `<staging>/shards/`,
    the balance report to `<staging>/records/balance.json`.
    """

    def __init__(
        self,
        staging: str,
        config_name: str,
        targets: Mapping[str, int] | MixTargets,
        seed: int,
        *,
        validation_fraction: float = 0.02,
        max_rows_per_shard: int = MAX_ROWS_PER_SHARD,
    ) -> None:
        super().__init__()
        self.staging, self.config_name, self.targets, self.seed = staging, config_name, as_mix_targets(targets), seed
        self.validation_fraction, self.max_rows_per_shard = validation_fraction, max_rows_per_shard

    def expand(self, rows: beam.PCollection):
        staging, config_name, seed = self.staging, self.config_name, self.seed
        fraction, max_rows = self.validation_fraction, self.max_rows_per_shard
        cells = (
            rows
            | "ByCell" >> beam.Map(lambda r: (mix_key(r), r))
            | "GroupByCell" >> beam.GroupByKey()
            | "BalanceCell"
            >> beam.ParDo(_BalanceCellFn(self.targets, seed)).with_outputs(KEPT, DEAD, REPORTS, main="tallies")
        )
        by_split = cells[KEPT] | "BySplit" >> beam.Map(lambda r: (split_of(r.sample.id, fraction, seed), r))
        totals = (
            by_split
            | "SplitOnes" >> beam.Map(lambda kv: (kv[0], 1))
            | "RowsPerSplit" >> beam.CombinePerKey(sum)
            | "ShardsPerSplit" >> beam.MapTuple(lambda split, n: (split, plan_shards(n, max_rows)))
        )

        def to_shard(kv: tuple[str, CotRow | RlRow], shards: Mapping[str, int]) -> tuple[tuple[str, int], Any]:
            split, row = kv
            return (split, shard_of(row.sample.id, shards[split], seed)), row

        def write(keyed: tuple[tuple[str, int], Iterable[CotRow | RlRow]]) -> tuple[str, int]:
            (split, index), shard_rows = keyed
            path = staged_shard_path(staging, split, index)
            return path, write_shard(path, config_name, shard_rows)

        _ = (
            by_split
            | "ByShard" >> beam.Map(to_shard, shards=beam.pvalue.AsDict(totals))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.Map(write)
        )
        report_path = storage.join(staging, RECORDS_DIR, BALANCE_FILE)
        _ = (
            cells[REPORTS]
            | "AllReports" >> beam.combiners.ToList()
            | "WriteReport" >> beam.Map(_write_report, self.targets, report_path)
        )
        return cells["tallies"], cells[DEAD]


def prepare_staging(out: str, config_name: str) -> str:
    """The build's empty staging folder (what a killed run staged is removed: this run writes it anew)."""
    staging = staging_folder(out, config_name)
    storage.delete_tree(staging)
    storage.makedirs(staging)
    return staging


def records_folder(staging: str) -> str:
    """Where `WriteRejected` writes a staged build's dead letters and accounting table."""
    return storage.join(staging, RECORDS_DIR)


def read_staged(staging: str, name: str) -> Any:
    """A JSON record the pipeline wrote under the staging folder (`accounting.json`, `balance.json`)."""
    return json.loads(storage.read_text(storage.join(records_folder(staging), name)))


def commit_build(
    out: str,
    config_name: str,
    layout: RecordLayout,
    *,
    chain: Iterable[str],
    finish: Callable[[dict[str, Any]], Any],
) -> ConfigWritten:
    """Check the staged accounting, then put the staged build in place with its records; `finish(table)` writes the
    card, stats, facts and report between the shards' move and the manifest (`dataset_writer.commit_config`)."""
    staging = staging_folder(out, config_name)
    records = records_folder(staging)
    table = read_staged(staging, ACCOUNTING_FILE)
    check_accounting(table, chain=tuple(chain))  # a build that lost rows never replaces a good one
    staged_rejected = storage.glob(storage.join(records, REJECTED_DIR, "*.jsonl"))
    moves = {storage.join(layout.rejected, storage.name(p)): p for p in staged_rejected}
    moves[layout.accounting] = storage.join(records, ACCOUNTING_FILE)
    moves[layout.balance] = storage.join(records, BALANCE_FILE)
    old = storage.glob(storage.join(out, layout.rejected, "*.jsonl"))
    clear = [storage.relative(p, out) for p in old] + [layout.accounting, layout.balance]
    return commit_config(out, config_name, records=moves, clear=clear, finish=lambda: finish(table))


def build_out(config_out: str) -> str:
    """The build's out folder as a string: a URL kept as written, a local path made absolute."""
    return config_out if storage.is_url(config_out) else os.path.abspath(config_out)
