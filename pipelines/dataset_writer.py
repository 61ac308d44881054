"""The dataset on disk: Parquet shards in the Hugging Face `datasets` layout, the card and `stats.json`.

Layout (what `datasets.load_dataset(out_dir, "cot")` and `(out_dir, "rl")` read through the card's
`configs:` YAML)::

    <out>/README.md
    <out>/stats.json
    <out>/<config>/train-00000-of-00002.parquet
    <out>/<config>/validation-00000-of-00001.parquet
    <out>/manifest.json                       # written last by a build's commit (mtvr_data.build_manifest)

`out` may be a local folder or a bucket URL: every read and write goes through `mtvr_data.storage`.

A row's split is a seeded hash of its sample id (`is_validation`), its shard another (`shard_of`), so the
pipelines write shards in parallel, one shard per worker at a time (`pipelines.shard_writing`), and
`write_dataset` writes the same files in one process. Shards are staged under `<out>/.staging/<config>/` and
put in place by `commit_config`, which marks the manifest pending first and writes it complete last: a reader
never takes a half-replaced folder for a finished one.

Everything written is a function of the rows and the facts only (rows are sorted, no dates, no absolute
paths, fixed Parquet options), so a rerun on the same inputs writes byte-identical files, and a resumed
build can be checked by comparing hashes. `datasets` cannot read a zero-row Parquet file, so an empty split
gets no file and the card lists only the splits that exist; an empty config gets no directory, is left out of
`configs:` and the card says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtvr_data import build_manifest, storage
from mtvr_data.mixing import RL_OUR_CHOICES, mix_key_of
from mtvr_data.parquet_io import read_table, record_to_row, to_table
from mtvr_data.schema import CotRow, RlRow

log = logging.getLogger(__name__)

CONFIGS: tuple[str, ...] = ("cot", "rl")
SPLITS: tuple[str, ...] = ("train", "validation")
ROW_TYPES: dict[str, type] = {"cot": CotRow, "rl": RlRow}
#: Rows per shard when `num_shards` is not given (a shard of CoT rows at this size is a few hundred MB).
MAX_ROWS_PER_SHARD = 50_000
#: Fixed Parquet options: part of what makes reruns byte-identical.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
#: Where a build stages its shards and records before its commit (never matched by the card's globs).
STAGING_DIR = ".staging"
#: Files besides the shards that a build's manifest vouches for: what `load_dataset` and people read first.
META_FILES: tuple[str, ...] = ("README.md", "stats.json")


def shard_name(split: str, index: int, total: int) -> str:
    """`train-00000-of-00003.parquet`: the file name `datasets` and the Hub expect."""
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def is_validation(sample_id: str, fraction: float, seed: int = 0) -> bool:
    """Whether a sample belongs to the validation split: a seeded hash of its id below `fraction`.

    It depends on nothing but (seed, id), so a sample stays in its split across reruns, scales and builds.
    """
    digest = hashlib.sha256(f"validation:{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _sort_key(row: CotRow | RlRow) -> tuple[str, bool, str]:
    # The id orders rows; the full row breaks ties (two chains of one sample), so order never depends on arrival.
    return (row.sample.id, row.tools, json.dumps(record_to_row(row), sort_keys=True, default=str))


def shard_of(sample_id: str, total: int, seed: int = 0) -> int:
    """The shard (0 .. total-1) of a sample: a seeded hash of its id, so any worker places a row alone.

    Shards are filled in parallel (`pipelines.shard_writing`), so a row's shard cannot be its place in one
    sorted list; a hash spreads every mix cell over every shard, so each shard is a sample of the whole set.
    """
    digest = hashlib.sha256(f"shard:{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def plan_shards(rows: int, max_rows_per_shard: int = MAX_ROWS_PER_SHARD, num_shards: int | None = None) -> int:
    """How many shards a split of `rows` rows gets: `num_shards` when set, else enough for `max_rows_per_shard`
    each on average; never more than the rows, at least 1 when there are rows (0 shards for 0 rows)."""
    if rows <= 0:
        return 0
    wanted = num_shards if num_shards else math.ceil(rows / max_rows_per_shard)
    return max(1, min(wanted, rows))


def split_of(sample_id: str, validation_fraction: float, seed: int) -> str:
    """`validation` or `train` for a sample (`is_validation`)."""
    return "validation" if is_validation(sample_id, validation_fraction, seed) else "train"


def staging_folder(out_dir: str | os.PathLike[str], config_name: str) -> str:
    """Where a build of `config_name` stages its shards and records before it commits: `<out>/.staging/<config>`."""
    return storage.join(os.fspath(out_dir), STAGING_DIR, config_name)


def staged_shard_path(staging: str, split: str, index: int) -> str:
    """A staged shard's name: `<staging>/shards/<split>-<index>.parquet` (renumbered without gaps at commit)."""
    return storage.join(staging, "shards", f"{split}-{index:05d}.parquet")


def write_shard(path: str, config_name: str, rows: Iterable[CotRow | RlRow]) -> int:
    """One shard: `rows` sorted (`_sort_key`), with the fixed Parquet options, written whole through storage."""
    ordered = sorted(rows, key=_sort_key)
    with storage.open_write(path) as fh:
        pq.write_table(to_table(ordered, kind=config_name), fh, **PARQUET_OPTIONS)
    return len(ordered)


@dataclass(slots=True)
class ConfigWritten:
    """What a commit put in place for one config: shard paths (local or URL) and row counts per split."""

    config: str
    files: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.rows.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "rows": dict(self.rows),
            "files": {s: [storage.name(p) for p in ps] for s, ps in self.files.items()},
        }


def commit_config(
    out_dir: str | os.PathLike[str],
    config_name: str,
    *,
    records: Mapping[str, str] | None = None,
    clear: Iterable[str] = (),
    finish: Callable[[], Any] | None = None,
) -> ConfigWritten:
    """Put a staged build of `config_name` in place, manifest last (`mtvr_data.build_manifest`).

    1. `manifest.json` is marked pending: from here until step 5 the folder reads as unfinished, never as a mix.
    2. The config's old shards are deleted and the staged ones moved in, renumbered per split without gaps
       (`train-00000-of-00003.parquet`, the names `datasets` and the Hub expect).
    3. `clear` (relative paths of the previous run's records) are deleted, then `records` (relative destination ->
       staged path) moved in.
    4. `finish()` writes what is derived from the shards now in place (card, stats, facts, report).
    5. The manifest is written: this config's shards and the card files read back from storage; another config's
       shards keep their entries from the previous manifest (a shard it did not vouch for is left out, so readers
       of that config refuse it until it is rebuilt).
    The staging folder is removed at the end.
    """
    out = os.fspath(out_dir)
    staging = staging_folder(out, config_name)
    staged = {split: storage.glob(storage.join(staging, "shards", f"{split}-*.parquet")) for split in SPLITS}
    old = build_manifest.begin_commit(out, config_name)
    storage.delete(storage.glob(storage.join(out, config_name, "*.parquet")))
    result = ConfigWritten(config_name)
    for split in SPLITS:
        result.files[split] = []
        result.rows[split] = 0
        for index, path in enumerate(staged[split]):
            target = storage.join(out, config_name, shard_name(split, index, len(staged[split])))
            storage.move(path, target)
            result.files[split].append(target)
    storage.delete([storage.join(out, rel) for rel in clear])
    for rel, path in sorted((records or {}).items()):
        storage.move(path, storage.join(out, rel))
    if finish is not None:
        finish()
    entries: dict[str, dict[str, Any]] = {}
    for split, paths in result.files.items():
        for path in paths:
            entry = build_manifest.file_entry(path)
            entries[storage.relative(path, out)] = entry
            result.rows[split] += entry["rows"]
    previous = (old or {}).get("files", {})
    for rel in build_manifest.shard_paths(out, [c for c in CONFIGS if c != config_name]):
        if rel in previous:
            entries[rel] = previous[rel]
        else:
            log.warning("%s: not vouched for by a finished build; readers of its config will refuse it", rel)
    for rel in META_FILES:
        if storage.exists(storage.join(out, rel)):
            entries[rel] = build_manifest.file_entry(storage.join(out, rel))
    build_manifest.write_manifest(out, entries)
    storage.delete_tree(staging)
    if not storage.is_url(out):  # object stores have no folders; a local `.staging/` left empty goes too
        with contextlib.suppress(OSError):
            os.rmdir(storage.join(out, STAGING_DIR))
    if result.empty:
        log.warning("config %r has no rows: no shards written; the card will say it is empty", config_name)
    else:
        log.info("committed %s: %s", config_name, ", ".join(f"{s} {n} rows" for s, n in result.rows.items()))
    return result


def _refresh_manifest(out: str, rel: str) -> None:
    """After a card or stats file is rewritten outside a build's commit, keep the manifest's entry in step."""
    manifest = build_manifest.read_manifest(out)
    if manifest is not None:
        files = dict(manifest["files"])
        files[rel] = build_manifest.file_entry(storage.join(out, rel))
        build_manifest.write_manifest(out, files)


def write_dataset(
    out_dir: str | os.PathLike[str],
    config_name: str,
    rows: Iterable[CotRow | RlRow],
    *,
    num_shards: int | None = None,
    validation_fraction: float = 0.02,
    seed: int = 0,
    max_rows_per_shard: int = MAX_ROWS_PER_SHARD,
) -> ConfigWritten:
    """Write one config's rows as train/validation shards under `<out_dir>/<config_name>/` and commit them.

    In one process, the same files the pipelines' parallel writer makes (`pipelines.shard_writing`): rows go to a
    split by `is_validation` and to a shard by `shard_of`; shards are staged, then `commit_config` replaces the
    config's previous shards and writes the manifest. `num_shards` sets the train shard count (capped at the row
    count); by default each split gets enough shards for `max_rows_per_shard` rows each on average.
    """
    if config_name not in ROW_TYPES:
        raise ValueError(f"config_name must be one of {CONFIGS}, got {config_name!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    row_type = ROW_TYPES[config_name]
    by_split: dict[str, list[CotRow | RlRow]] = {s: [] for s in SPLITS}
    for row in rows:
        if not isinstance(row, row_type):
            raise TypeError(f"config {config_name!r} takes {row_type.__name__} rows, got {type(row).__name__}")
        by_split[split_of(row.sample.id, validation_fraction, seed)].append(row)
    staging = staging_folder(out_dir, config_name)
    storage.delete_tree(staging)
    for split, split_rows in by_split.items():
        total = plan_shards(len(split_rows), max_rows_per_shard, num_shards if split == "train" else None)
        shards: dict[int, list[CotRow | RlRow]] = {}
        for row in split_rows:
            shards.setdefault(shard_of(row.sample.id, total, seed), []).append(row)
        for index, shard_rows in sorted(shards.items()):
            write_shard(staged_shard_path(staging, split, index), config_name, shard_rows)
    return commit_config(out_dir, config_name)


# --- What is on disk ----------------------------------------------------------------------------------------------


def shard_files(out_dir: str | os.PathLike[str], config_name: str, split: str) -> list[str]:
    """The shards of one config and split in the folder (local or URL), sorted."""
    return storage.glob(storage.join(os.fspath(out_dir), config_name, f"{split}-*-of-*.parquet"))


def summarize_output(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Row counts on disk per config and split, by mix key (`mtvr_data.mixing.mix_key_of`) and by task.

    Read from the shards themselves (validated against their schema), so the card and stats describe what
    was actually written, not what a stage believed it wrote.
    """
    out: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        splits: dict[str, Any] = {}
        for split in SPLITS:
            files = shard_files(out_dir, config, split)
            if not files:
                continue
            cells: Counter[str] = Counter()
            tasks: Counter[str] = Counter()
            total = 0
            for path in files:
                table = read_table(path, config).select(["source", "modality", "task", "tools"])
                for r in table.to_pylist():
                    cells[mix_key_of("tool" if r["tools"] else "text", r["source"], r["modality"])] += 1
                    tasks[r["task"]] += 1
                total += table.num_rows
            splits[split] = {
                "rows": total,
                "shards": len(files),
                "by_cell": dict(sorted(cells.items())),
                "by_task": dict(sorted(tasks.items())),
            }
        out[config] = splits
    return out


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps_stable(value: Any) -> str:
    """JSON with sorted keys and a final newline: the same data always gives the same bytes."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def write_stats(out_dir: str | os.PathLike[str], stats: Mapping[str, Any]) -> str:
    """Write `stats.json` (sorted keys, stable bytes); dataclasses, paths and sets are converted."""
    out = os.fspath(out_dir)
    path = storage.write_text(storage.join(out, "stats.json"), dumps_stable(dict(stats)))
    _refresh_manifest(out, "stats.json")
    return path


# --- The dataset card -----------------------------------------------------------------------------------------------

CARD_TAGS: tuple[str, ...] = ("video", "temporal-grounding", "video-reasoning", "tool-use", "chain-of-thought")
DEFAULT_DEVIATIONS: tuple[str, ...] = (
    "What counts as a 'right' rollout is not published; here it is the pass rule under How it was built: mcq and "
    "open pass at task reward >= min_reward, tg at raw IoU >= tg_min_iou, gqa only when both its IoU >= "
    "gqa_min_iou and its answer term >= gqa_min_answer.",
    "The grader and teacher models are the ones this build names above, not necessarily the paper's "
    "(a model of the policy's size; Gemini 2.5 as teacher).",
)


@dataclass(slots=True)
class CardFacts:
    """The build facts the card reports beside the counts it reads from disk. All optional.

    `grader` / `teacher`: e.g. {"engine": "vllm", "model": ..., "num_rollouts": 8, "temperature": 1.0};
    `thresholds`: task -> reward a rollout needs to pass; `balance`: config -> `Balanced.report_dict()`;
    `contamination`: evaluation set -> rows dropped; `extra`: anything else, shown as JSON.
    """

    pretty_name: str = "MTVR-CoT and MTVR-RL (VITAL recipe, built with mtvr)"
    license: str = "other"
    license_name: str = "mixed-source-licenses"
    scale: float | None = None
    seed: int | None = None
    grader: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    pass_rule: str = ""
    balance: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: config -> the mix it was balanced to (`MixTargets.describe()`: "vital", "none" or the cell mapping).
    mix: dict[str, Any] = field(default_factory=dict)
    contamination: dict[str, int] = field(default_factory=dict)
    deviations: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set by `merge_facts` for a card of several builds: config -> its settings rows (one column each on the card).
    settings_by_config: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, facts: Mapping[str, Any]) -> CardFacts:
        """Facts from a plain mapping; keys that are not fields go to `extra` (shown, never dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in facts.items() if k in names and k != "extra"}
        extra = {**dict(facts.get("extra", {})), **{k: v for k, v in facts.items() if k not in names}}
        return cls(**known, extra=extra)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _front_matter(facts: CardFacts, summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    configs = []
    for config in CONFIGS:
        splits = summary.get(config, {})
        if splits:
            data_files = [{"split": s, "path": f"{config}/{s}-*.parquet"} for s in SPLITS if s in splits]
            configs.append({"config_name": config, "data_files": data_files})
    total = sum(s["rows"] for splits in summary.values() for s in splits.values())
    meta: dict[str, Any] = {"pretty_name": facts.pretty_name, "license": facts.license}
    if facts.license == "other":
        meta["license_name"] = facts.license_name
    meta.update(
        language=["en"],
        task_categories=["video-text-to-text"],
        tags=list(CARD_TAGS),
        size_categories=[_size_category(total)],
        configs=configs,
    )
    return meta


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


#: The card's list of exports (`mtvr export`, docs/export.md) and, per trainer, the command that trains on one.
EXPORTS_SECTION: tuple[str, ...] = (
    "`mtvr export FOLDER --to FORMAT --out DIR` writes this build for trainers people already run (fields and "
    "deviations in the project's docs/export.md). The training commands below were **not run** by this project.",
    "",
    "| format | files | trains with |",
    "|---|---|---|",
    "| `vital` | `MTVR_CoT.json`, `MTVR_Tool_CoT.json`, `MTVR_RL.json`, `MTVR_Tool_RL.json` (VITAL's records and "
    "reward routing keys) | VITAL's stage scripts: SFT on `MTVR_CoT`, DGRPO on `MTVR_RL`, SFT on `MTVR_Tool_CoT`, "
    "DGRPO with the tool on `MTVR_Tool_RL` |",
    "| `verl` | `train.parquet`, `validation.parquet` (rl) | `python3 -m verl.trainer.main_ppo "
    "data.train_files=DIR/train.parquet data.val_files=DIR/validation.parquet "
    "actor_rollout_ref.rollout.multi_turn.enable=True actor_rollout_ref.rollout.multi_turn.tool_config_path=TOOL.yaml "
    "custom_reward_function.path=REWARD.py` |",
    "| `sharegpt` | `mtvr_cot.json`, `dataset_info.json` (cot text chains; tool chains are not expressible) | "
    "`llamafactory-cli train` with `dataset: mtvr_cot`, `dataset_dir: DIR`, `media_dir: VIDEOS`, "
    "`template: qwen2_vl` |",
)


def _body(facts: CardFacts, summary: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        f"# {facts.pretty_name}",
        "",
        "Multi-task video-reasoning data built with the VITAL recipe (arXiv 2508.04416): `cot` holds verified",
        "chains of thought for SFT (text and tool-calling parts), `rl` holds rows graded by policy rollouts for",
        "DGRPO (pass rate, mean reward, difficulty). Videos are not included: rows name them by path.",
        "",
        "Task codes (`task` column): `tg` temporal grounding (the answer is the moment's start and end in seconds), "
        "`gqa` grounded QA (the answer and the moment that shows its evidence), `mcq` multiple choice (an option "
        "letter), `open` an open answer (a number or free text).",
        "",
        "```python",
        "from datasets import load_dataset",
        'cot = load_dataset("<repo or folder>", "cot")',
        'rl = load_dataset("<repo or folder>", "rl")',
        "```",
        "",
        "## Configs and splits",
        "",
    ]
    out += _table(
        ("config", "split", "rows", "shards"),
        [(c, s, v["rows"], v["shards"]) for c in CONFIGS for s, v in summary.get(c, {}).items()],
    )
    for config in CONFIGS:
        if not summary.get(config):
            out += ["", f"The `{config}` config is empty in this build (0 rows): it has no files and no entry in"]
            out += ["`configs:`."]
    out += ["", "Validation rows are chosen by a seeded hash of the sample id, so a sample never changes split."]
    for config in CONFIGS:
        splits = summary.get(config, {})
        if not splits:
            continue
        cells = sorted({cell for s in splits.values() for cell in s["by_cell"]})
        out += ["", f"## Rows of `{config}` by mix key (part/source)", ""]
        out += _table(("mix key", *splits), [(c, *(s["by_cell"].get(c, 0) for s in splits.values())) for c in cells])
    out += ["", "## How it was built", ""]
    if facts.settings_by_config:
        names = list(facts.settings_by_config)
        keys = list(dict.fromkeys(k for rows in facts.settings_by_config.values() for k in rows))
        header = ("setting", *(f"`{n}` build" for n in names))
        out += _table(header, [(k, *(facts.settings_by_config[n].get(k, "-") for n in names)) for k in keys])
    else:
        out += _table(("setting", "value"), list(settings_rows(facts).items()))
    for config, report in sorted(facts.balance.items()):
        out += ["", f"### Balance of `{config}` to {mix_words(facts.mix.get(config, 'vital'))}", ""]
        rows = [(k, r["target"], r["available"], r["kept"], r["shortfall"]) for k, r in sorted(report.items())]
        out += _table(("mix key", "target", "available", "kept", "shortfall"), rows)
    if facts.contamination:
        out += ["", "## Benchmark contamination filter", ""]
        out += _table(("evaluation set", "training rows dropped"), sorted(facts.contamination.items()))
    out += ["", "## Training with other trainers", ""] + list(EXPORTS_SECTION)
    deviations = list(DEFAULT_DEVIATIONS) + list(facts.deviations)
    if summary.get("rl") and facts.mix.get("rl", "vital") == "vital":
        deviations += [f"MTVR-RL `{k}` count is our choice (not published): {v}." for k, v in RL_OUR_CHOICES.items()]
    out += ["", "## Deviations from the paper", ""] + [f"- {d}" for d in deviations]
    out += ["", "## Licenses", "", "Rows derive from public datasets; each source's own license applies to its rows."]
    if facts.extra:
        out += ["", "## Other facts", "", "```json", dumps_stable(facts.extra).rstrip("\n"), "```"]
    return out


def mix_setting(mix: Any) -> str:
    """A mix as its `balance.mix` setting reads: `vital`, `none`, or the mapping as compact JSON."""
    return mix if isinstance(mix, str) else json.dumps(mix, sort_keys=True)


def mix_words(mix: Any) -> str:
    """How the card names the mix a config was balanced to."""
    if mix == "vital":
        return "the paper's mix (`balance.mix: vital`)"
    if mix == "none":
        return "no mix (`balance.mix: none`: every row that passed `keep` is kept)"
    return f"the configured mix (`balance.mix: {mix_setting(mix)}`)"


def settings_rows(facts: CardFacts) -> dict[str, Any]:
    """The "How it was built" rows of one build's facts: setting -> value (settings without a value left out)."""
    settings = [
        *(("mix", mix_setting(m)) for m in facts.mix.values()),  # one build's facts name one config
        ("scale of the paper's mix", facts.scale),
        ("seed", facts.seed),
        ("pass rule", facts.pass_rule or None),
        *((f"grader {k}", v) for k, v in sorted(facts.grader.items())),
        *((f"teacher {k}", v) for k, v in sorted(facts.teacher.items())),
        *((f"threshold ({task})", v) for task, v in sorted(facts.thresholds.items())),
    ]
    return {k: v for k, v in settings if v is not None}


def merge_facts(per_config: Mapping[str, CardFacts]) -> CardFacts:
    """One card's facts for the builds of several configs (config -> that build's facts).

    A single config's facts are returned unchanged. For several, each build keeps its own settings column
    (`settings_by_config`); balance reports (keyed by config already) and contamination counts are joined,
    deviations listed once each in order, and each build's `extra` kept under its config's name.
    """
    if len(per_config) == 1:
        return next(iter(per_config.values()))
    first = next(iter(per_config.values()))
    merged = CardFacts(pretty_name=first.pretty_name, license=first.license, license_name=first.license_name)
    for name, facts in per_config.items():
        merged.settings_by_config[name] = settings_rows(facts)
        merged.balance.update(facts.balance)
        merged.mix.update(facts.mix)
        merged.contamination.update({f"{k} ({name})": v for k, v in facts.contamination.items()})
        merged.deviations += [d for d in facts.deviations if d not in merged.deviations]
        if facts.extra:
            merged.extra[name] = facts.extra
    return merged


def render_card(facts: CardFacts | Mapping[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    """The card text: YAML front matter (`configs:` for each non-empty config) and the facts as markdown."""
    import yaml

    facts = facts if isinstance(facts, CardFacts) else CardFacts.from_mapping(facts)
    meta = yaml.safe_dump(_front_matter(facts, summary), sort_keys=False, allow_unicode=True, width=1000)
    return "---\n" + meta + "---\n\n" + "\n".join(_body(facts, summary)) + "\n"


def write_card(out_dir: str | os.PathLike[str], facts: CardFacts | Mapping[str, Any]) -> str:
    """Write `<out_dir>/README.md` from the shards in the folder and `facts`; call it after `write_dataset`."""
    out = os.fspath(out_dir)
    summary = summarize_output(out)
    if not any(summary.values()):
        log.warning("no shards under %s: the card lists no configs and `load_dataset` will find nothing", out)
    path = storage.write_text(storage.join(out, "README.md"), render_card(facts, summary))
    _refresh_manifest(out, "README.md")
    return path


# --- Card and stats of every build in one folder -------------------------------------------------------------------

#: One build's own record in the output folder (`facts_rl.json`, `facts_cot.json`): its card facts and stats.
FACTS_FILE = "facts_{config}.json"


def facts_path(out_dir: str | os.PathLike[str], config_name: str) -> str:
    return storage.join(os.fspath(out_dir), FACTS_FILE.format(config=config_name))


def write_card_and_stats(
    out_dir: str | os.PathLike[str], config_name: str, facts: CardFacts, stats: Mapping[str, Any]
) -> dict[str, Any]:
    """Record `config_name`'s build facts and stats, then write the card and `stats.json` for every config there.

    build-rl and build-cot may write into one folder, in either order: each keeps its own record in
    `<out>/facts_<config>.json` (replaced by its next run), and `README.md` and `stats.json` are rewritten from all
    records, so the second build never drops the first one's facts (grader, teacher, balance, ...). Another
    config's record counts only while that config has shards on disk, so a record left behind by shards since
    removed is ignored. `stats.json` maps each config to its build's stats. Returns what `stats.json` holds.
    """
    if config_name not in ROW_TYPES:
        raise ValueError(f"config_name must be one of {CONFIGS}, got {config_name!r}")
    out = os.fspath(out_dir)
    storage.write_text(facts_path(out, config_name), dumps_stable({"card": facts, "stats": dict(stats)}))
    summary = summarize_output(out)
    records: dict[str, dict[str, Any]] = {}
    for name in CONFIGS:
        path = facts_path(out, name)
        if (name == config_name or summary.get(name)) and storage.is_file(path):
            records[name] = json.loads(storage.read_text(path))
    write_card(out, merge_facts({name: CardFacts.from_mapping(r["card"]) for name, r in records.items()}))
    all_stats = {name: r["stats"] for name, r in records.items()}
    write_stats(out, all_stats)
    return all_stats
