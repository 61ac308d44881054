"""`mtvr build-rl CONFIG`: the MTVR-RL pipeline, sources to graded, balanced shards with a card.

    read -> probe/validate -> dedup -> contamination -> grade (K rollouts, pass rate) -> balance -> write

Every stage is a Beam transform from `pipelines.transforms` / `pipelines.grading`; the final rows (at most the
paper's ~110k) are balanced and written in one step, since balancing needs them all. Every rejected row lands in
`<out>/rejected/` and the accounting table (`<out>/accounting.json`) checks in = kept + rejected per stage.
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
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from model.config_error import ConfigError
from mtvr_data.mixing import RL_OUR_CHOICES, RL_TARGETS, balance, scale_targets
from mtvr_data.schema import CotRow, RlRow
from pipelines.accounting import WriteRejected, check_accounting, read_accounting
from pipelines.config import BuildConfig, load_config
from pipelines.dataset_writer import CardFacts, dumps_stable, write_card_and_stats, write_dataset
from pipelines.grading import PrepareAndGrade
from pipelines.report import write_report
from pipelines.stage_settings import GradeSettings
from pipelines.transforms import DEAD

log = logging.getLogger(__name__)

CHAIN = ("read", "probe", "dedup", "contamination", "grade", "balance")
BALANCE_REPORT = "balance.json"


def rl_settings(config: BuildConfig) -> GradeSettings:
    """The build's `grade:` block (typed when the file was read); build-rl and build-cot need one."""
    if config.grade is None:
        raise ConfigError("grade: missing; the build needs the grader: {engine: {kind, settings: {model: ...}}, k: 8}")
    return config.grade


class BalanceAndWrite(beam.DoFn):
    """All rows of one config -> balanced to the scaled mix and written as shards; rejects and tallies out.

    Shared by build-rl and build-cot. Also writes `<out>/<report_name>` (rows per mix key against its
    target), which the card reports.
    """

    def __init__(self, out: str, config_name: str, targets: dict[str, int], seed: int, report_name: str) -> None:
        self.out, self.config_name, self.targets, self.seed = out, config_name, targets, seed
        self.report_name = report_name

    def process(self, rows: list[RlRow | CotRow]):
        result = balance(rows, self.targets, seed=self.seed)
        write_dataset(self.out, self.config_name, result.kept, seed=self.seed)
        report = dumps_stable(result.report_dict()) + "\n"
        (Path(self.out) / self.report_name).write_text(report, encoding="utf-8")
        taken = Counter(r.sample.source for r in rows)
        kept = Counter(r.sample.source for r in result.kept)
        for source in sorted(taken):
            yield (("balance", source, "in"), taken[source])
            yield (("balance", source, "kept"), kept[source])
        for error in result.rejected:
            yield beam.pvalue.TaggedOutput(DEAD, error)


def build_rl(config_path: str | Path, pipeline_args: list[str] | None = None) -> dict[str, Any]:
    """Run the MTVR-RL pipeline of `config_path`; returns the accounting table (also in `<out>/accounting.json`)."""
    config = load_config(config_path)
    grading = rl_settings(config)
    scale, seed = config.balance.scale, config.balance.seed
    targets = scale_targets(RL_TARGETS, scale)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    options = PipelineOptions(pipeline_args or [])
    with beam.Pipeline(options=options) as p:
        graded = p | "PrepareAndGrade" >> PrepareAndGrade(config, grading, out_dir=str(out))
        rows, dead = graded
        balanced = (
            rows
            | "AllRows" >> beam.combiners.ToList()
            | "BalanceAndWrite"
            >> beam.ParDo(BalanceAndWrite(str(out), "rl", targets, seed, BALANCE_REPORT)).with_outputs(
                DEAD, main="tallies"
            )
        )
        dead_all = (dead, balanced[DEAD]) | "AllDeadLetters" >> beam.Flatten()
        tallies = (graded.counts, balanced.tallies) | "AllTallies" >> beam.Flatten()
        _ = (dead_all, tallies) | "Accounting" >> WriteRejected(str(out))
    table = read_accounting(out)
    check_accounting(table, chain=CHAIN)
    grader = grading.facts(config)
    report = json.loads((out / BALANCE_REPORT).read_text(encoding="utf-8"))
    facts = CardFacts(
        scale=scale,
        seed=seed,
        grader=grader,
        pass_rule=json.dumps(dataclasses.asdict(grading.pass_rule)),
        balance={"rl": report},
        deviations=[f"{key}: {why}" for key, why in sorted(RL_OUR_CHOICES.items())],
    )
    stats = {"accounting": table, "grading": grader, "scale": scale, "targets": targets}
    write_card_and_stats(out, "rl", facts, stats)  # keeps build-cot's facts when it wrote into `out` too
    write_report(out)
    log.info("build-rl finished: %s", out)
    return table
