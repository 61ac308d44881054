"""`mtvr build-rl CONFIG`: the MTVR-RL pipeline, sources to graded, balanced shards with a card.

    read -> probe/validate -> dedup -> contamination -> grade (K rollouts, pass rate) -> balance -> write -> commit

Every stage is a Beam transform from `pipelines.transforms` / `pipelines.grading`; balancing and writing run on
the workers, one mix cell and one shard at a time (`pipelines.shard_writing`), into the build's staging folder,
and the launcher commits the build (manifest last) once the accounting adds up. `out` may be a local folder or a
bucket URL (`mtvr_data.storage`). Every rejected row lands in `<out>/rejected/` and the accounting table
(`<out>/accounting.json`) checks in = kept + rejected per stage.
Pipeline options (`--runner`, `--direct_num_workers`, Dataflow flags) pass straight through to Beam.

Source entries with `tools: true` (default: the `grade:` block's `tools`) are read and graded with the clip tool on
their own branch (`grading.PrepareAndGrade`), so one run writes the RL mix's tool rows (`tools=True`, `tool/...`
keys) and its rows without tools. The card and `stats.json` are written by `dataset_writer.write_card_and_stats`,
which keeps build-cot's facts when it wrote into the same folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from model.config_error import ConfigError
from mtvr_data import storage
from mtvr_data.mixing import RL_OUR_CHOICES, VITAL
from pipelines.accounting import ACCOUNTING_FILE, REJECTED_DIR, WriteRejected
from pipelines.config import BuildConfig, load_config
from pipelines.dataset_writer import CardFacts, write_card_and_stats
from pipelines.failure_budget import check_failure_budget
from pipelines.grading import PrepareAndGrade
from pipelines.mix_choice import build_targets
from pipelines.report import write_report
from pipelines.shard_writing import (
    BALANCE_FILE,
    RecordLayout,
    WriteBalancedShards,
    build_out,
    commit_build,
    prepare_staging,
    read_staged,
    records_folder,
)
from pipelines.stage_settings import GradeSettings

log = logging.getLogger(__name__)

CHAIN = ("read", "probe", "dedup", "contamination", "grade", "balance")
BALANCE_REPORT = "balance.json"
#: build-rl's run records in the out folder: `rejected/<stage>.jsonl`, `accounting.json`, `balance.json`.
RECORDS = RecordLayout(rejected=REJECTED_DIR, accounting=ACCOUNTING_FILE, balance=BALANCE_REPORT)


def rl_settings(config: BuildConfig) -> GradeSettings:
    """The build's `grade:` block (typed when the file was read); build-rl and build-cot need one."""
    if config.grade is None:
        raise ConfigError("grade: missing; the build needs the grader: {engine: {kind, settings: {model: ...}}, k: 8}")
    return config.grade


def build_rl(config_path: str | os.PathLike[str], pipeline_args: list[str] | None = None) -> dict[str, Any]:
    """Run the MTVR-RL pipeline of `config_path`; returns the accounting table (also in `<out>/accounting.json`)."""
    storage.configure(pipeline_args)  # the launcher reads and commits through the same file systems as the workers
    config = load_config(config_path)
    grading = rl_settings(config)
    scale, seed = config.balance.scale, config.balance.seed
    mix = build_targets(config, "rl", grading.rollout.tools)  # a source with no cell in the mix fails here
    out = build_out(config.out)
    staging = prepare_staging(out, "rl")
    options = PipelineOptions(pipeline_args or [])
    with beam.Pipeline(options=options) as p:
        graded = p | "PrepareAndGrade" >> PrepareAndGrade(config, grading, out_dir=out)
        rows, dead = graded
        tallies_out, dead_out = rows | "BalanceAndWrite" >> WriteBalancedShards(staging, "rl", mix, seed)
        dead_all = (dead, dead_out) | "AllDeadLetters" >> beam.Flatten()
        tallies = (graded.counts, tallies_out) | "AllTallies" >> beam.Flatten()
        _ = (dead_all, tallies) | "Accounting" >> WriteRejected(records_folder(staging))
    grader = grading.facts(config)
    balance_report = read_staged(staging, BALANCE_FILE)  # read before the commit moves it into place

    def finish(table: dict[str, Any]) -> None:
        facts = CardFacts(
            scale=scale,
            seed=seed,
            grader=grader,
            pass_rule=json.dumps(dataclasses.asdict(grading.pass_rule)),
            balance={"rl": balance_report},
            mix={"rl": mix.describe()},
            deviations=[f"{key}: {why}" for key, why in sorted(RL_OUR_CHOICES.items())] if mix.name == VITAL else [],
        )
        stats = {"accounting": table, "grading": grader, "scale": scale, "mix": mix.describe(), "targets": mix.counts}
        write_card_and_stats(out, "rl", facts, stats)  # keeps build-cot's facts when it wrote into `out` too
        write_report(out)

    table = read_staged(staging, ACCOUNTING_FILE)
    # a failing server never replaces a good dataset: over the budget, nothing is committed (exit 1)
    check_failure_budget(table, "grade", max_fraction=grading.max_failed_fraction, max_count=grading.max_failed)
    commit_build(out, "rl", RECORDS, chain=CHAIN, finish=finish)
    log.info("build-rl finished: %s", out)
    return table
