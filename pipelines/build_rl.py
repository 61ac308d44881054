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

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from mtvr_data.mixing import RL_OUR_CHOICES, RL_TARGETS, balance, scale_targets
from mtvr_data.schema import CotRow, RlRow
from pipelines.accounting import WriteRejected, check_accounting, read_accounting
from pipelines.config import BuildConfig, load_config
from pipelines.dataset_writer import CardFacts, dumps_stable, write_card_and_stats, write_dataset
from pipelines.grading import GradingSettings, PrepareAndGrade
from pipelines.report import write_report
from pipelines.transforms import DEAD

log = logging.getLogger(__name__)

CHAIN = ("read", "probe", "dedup", "contamination", "grade", "balance")
BALANCE_REPORT = "balance.json"


def rl_settings(config: BuildConfig, base: Path | None = None) -> tuple[GradingSettings, float, int]:
    """The grading settings (config key `grade`) and the balance scale and seed (config key `balance`).

    A grader model given as a path that exists relative to the config's folder (`base`) is resolved there,
    like the config's other paths; anything else is a Hub id or a path the engine resolves itself.
    """
    grade = dict(config.extra.get("grade", {}))
    engine = dict(grade.get("engine") or {})
    settings = dict(engine.get("settings") or {})
    model = settings.get("model")
    if isinstance(model, str) and base is not None and (base / model).exists():
        settings["model"] = str((base / model).resolve())  # a local checkpoint named relative to the config
        grade["engine"] = {**engine, "settings": settings}
    grading = GradingSettings.from_dict(grade)
    balance_cfg = dict(config.extra.get("balance", {}))
    scale = float(balance_cfg.pop("scale", 1.0))
    seed = int(balance_cfg.pop("seed", 0))
    if balance_cfg:
        raise ValueError(f"unknown balance settings: {sorted(balance_cfg)} (known: scale, seed)")
    return grading, scale, seed


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
    grading, scale, seed = rl_settings(config, Path(config_path).resolve().parent)
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
        pass_rule=json.dumps(dict(grading.pass_rule)) or "{}",
        balance={"rl": report},
        deviations=[f"{key}: {why}" for key, why in sorted(RL_OUR_CHOICES.items())],
    )
    stats = {"accounting": table, "grading": grader, "scale": scale, "targets": targets}
    write_card_and_stats(out, "rl", facts, stats)  # keeps build-cot's facts when it wrote into `out` too
    write_report(out)
    log.info("build-rl finished: %s", out)
    return table
