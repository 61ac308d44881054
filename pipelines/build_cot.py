"""`mtvr build-cot CONFIG`: the MTVR-CoT pipeline, sources to verified, balanced chains of thought with a card.

    read -> probe/validate -> dedup -> contamination -> grade (pass rates; keep medium difficulty)
    -> teacher (answer-conditioned chains; text or tool) -> verify + select (one chain per sample) -> balance -> write

The stages are the Beam transforms of `pipelines.transforms`, `pipelines.grading` (`Grade`: the same grading as
build-rl, so with the same `grade:` block both builds share its cached results) and `pipelines.teaching` (`Teach`).
The final rows (at most the paper's ~71k) are balanced to the scaled CoT table per mix cell and written as shards on
the workers, then committed with a manifest (`pipelines.shard_writing`); `out` may be a local folder or a bucket.

build-rl and build-cot may write into ONE output folder (the demo does): each writes only its own config's shards
(`<out>/rl/`, `<out>/cot/`), and build-cot keeps its run records apart from build-rl's (`accounting.json`,
`rejected/<stage>.jsonl`, `balance.json`): its table is `<out>/accounting_cot.json` (in = kept + rejected per stage),
its dead letters `<out>/rejected/cot/<stage>.jsonl`, its balance report `<out>/balance_cot.json`. They are written by
the shared `WriteRejected` into the build's staging folder (`<out>/.staging/cot/records/`) and moved into place by
the commit, so a rerun also drops stage files it no longer has. Each build keeps its card facts and stats in
`<out>/facts_<config>.json`, and the card (`README.md`) and `stats.json` (config -> stats) are rewritten from the
shards and all those records (`dataset_writer.write_card_and_stats`), so they describe both configs whichever
build ran last.

Source entries with `tools: true` are graded with the clip tool (`grading.PrepareAndGrade`). A sample is taught
once, so build-cot refuses a config that lists one annotation file in both a tool and a text entry.
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
from pipelines.accounting import ACCOUNTING_FILE as ACCOUNTING
from pipelines.accounting import REJECTED_DIR, WriteRejected, read_accounting
from pipelines.build_rl import rl_settings
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
from pipelines.stage_settings import GradeSettings, TeachSettings
from pipelines.teaching import Teach

log = logging.getLogger(__name__)

CHAIN = ("read", "probe", "dedup", "contamination", "grade", "teacher", "verify", "balance")
#: build-cot's run records, apart from build-rl's (module docstring).
ACCOUNTING_FILE = "accounting_cot.json"
REJECTED_SUBDIR = "cot"
BALANCE_REPORT = "balance_cot.json"
RECORDS = RecordLayout(
    rejected=f"{REJECTED_DIR}/{REJECTED_SUBDIR}", accounting=ACCOUNTING_FILE, balance=BALANCE_REPORT
)


def read_cot_accounting(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The table the last build-cot run into `out` wrote."""
    return read_accounting(out, ACCOUNTING_FILE)


def rejected_dir(out: str | os.PathLike[str]) -> str:
    """Where build-cot's dead letters are, one `<stage>.jsonl` per stage that rejected something."""
    return storage.join(os.fspath(out), REJECTED_DIR, REJECTED_SUBDIR)


def cot_settings(config: BuildConfig) -> tuple[GradeSettings, TeachSettings]:
    """The build's grading and teacher blocks (typed when the file was read); build-cot needs both."""
    grading = rl_settings(config)
    parts = config.tool_parts(grading.rollout.tools)
    if len(parts) == 2:
        files = {(s.source, s.annotations) for s in parts[True].sources}
        both = sorted(
            f"{source} ({path})" for source, path in files & {(s.source, s.annotations) for s in parts[False].sources}
        )
        if both:
            raise ConfigError(
                f"sources: build-cot teaches each sample once, but these files are listed with tools: true and with "
                f"tools: false: {', '.join(both)}; keep one entry per file"
            )
    if config.teach is None:
        raise ConfigError("teach: missing; build-cot needs the teacher: {engine: {kind, settings: {model: ...}}}")
    return grading, config.teach


def build_cot(config_path: str | os.PathLike[str], pipeline_args: list[str] | None = None) -> dict[str, Any]:
    """Run the MTVR-CoT pipeline of `config_path`; returns the accounting table (`<out>/accounting_cot.json`)."""
    storage.configure(pipeline_args)  # the launcher reads and commits through the same file systems as the workers
    config = load_config(config_path)
    grading, teaching = cot_settings(config)
    scale, seed = config.balance.scale, config.balance.seed
    mix = build_targets(config, "cot", grading.rollout.tools, teaching)  # a source with no cell fails here
    out = build_out(config.out)
    staging = prepare_staging(out, "cot")
    options = PipelineOptions(pipeline_args or [])
    with beam.Pipeline(options=options) as p:
        graded = p | "PrepareAndGrade" >> PrepareAndGrade(config, grading, out_dir=out)
        rl_rows, dead = graded
        to_teach = rl_rows | "GradedSamples" >> beam.Map(lambda row: row.sample)
        taught = to_teach | "Teach" >> Teach(teaching, config.video_roots, out_dir=out)
        cot_rows, teach_dead = taught
        tallies_out, dead_out = cot_rows | "BalanceAndWrite" >> WriteBalancedShards(staging, "cot", mix, seed)
        dead_all = (dead, teach_dead, dead_out) | "AllDeadLetters" >> beam.Flatten()
        tallies = (graded.counts, taught.counts, tallies_out) | "AllTallies" >> beam.Flatten()
        _ = (dead_all, tallies) | "Accounting" >> WriteRejected(records_folder(staging))
    grader = grading.facts(config)
    balance_report = read_staged(staging, BALANCE_FILE)  # read before the commit moves it into place
    deviations = [
        "MTVR-CoT chains come from this build's teacher (see teacher settings), answer-conditioned as in the paper; "
        "a chain is kept only if strictly formatted, right, with every tool call returning frames, and one chain "
        "per sample."
    ]
    if teaching.engine.kind == "oracle":
        deviations.append(
            "DEMO BUILD: the teacher is the `oracle` test engine, which copies the answer from its hint; these "
            "chains show the pipeline works and are not training data."
        )

    def finish(table: dict[str, Any]) -> None:
        facts = CardFacts(
            scale=scale,
            seed=seed,
            grader=grader,
            teacher=teaching.facts(),
            pass_rule=json.dumps(dataclasses.asdict(grading.pass_rule)),
            balance={"cot": balance_report},
            mix={"cot": mix.describe()},
            deviations=deviations,
        )
        stats = {
            "accounting": table,
            "grading": grader,
            "teacher": teaching.facts(),
            "scale": scale,
            "mix": mix.describe(),
            "targets": mix.counts,
        }
        write_card_and_stats(out, "cot", facts, stats)  # keeps build-rl's facts when it wrote into `out` too
        write_report(out)

    table = read_staged(staging, ACCOUNTING)
    # a failing grader or teacher never replaces a good dataset: over a budget, nothing is committed (exit 1)
    check_failure_budget(table, "grade", max_fraction=grading.max_failed_fraction, max_count=grading.max_failed)
    check_failure_budget(table, "teacher", max_fraction=teaching.max_failed_fraction, max_count=teaching.max_failed)
    commit_build(out, "cot", RECORDS, chain=CHAIN, finish=finish)
    log.info("build-cot finished: %s", out)
    return table
