"""What every export format shares: reading a built folder's rows, the lineage kept on every exported row, media
paths, the "cannot express" signal and writing the output files.

Why one module: the three formats (`export_vital`, `export_verl`, `export_sharegpt`) must read the same rows the
trainers read (through `load_built`, so an unfinished or mixed build is refused and bucket URLs work), keep the same
lineage, and report the rows they cannot express the same way (counted by reason with their ids, never dropped
silently).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config_error import ConfigError
from mtvr_data import storage
from mtvr_data.build_manifest import IncompleteBuild, read_manifest
from mtvr_data.parquet_io import record_to_row, row_to_record
from mtvr_data.schema import CotRow, RlRow, Sample

#: The built configs, and the splits a build writes (in this order).
CONFIGS: tuple[str, ...] = ("cot", "rl")
SPLITS: tuple[str, ...] = ("train", "validation")
#: Columns of a built row that are its content, not its lineage (`lineage_of` leaves them out).
CONTENT_COLUMNS = ("id", "messages")


class Unexpressible(Exception):
    """A row this format cannot carry; `reason` is a short code counted in the export summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def built_configs(folder: str) -> list[str]:
    """The configs (`cot`, `rl`) whose shards the folder's manifest lists; a ConfigError when `folder` is not a
    finished build (no such folder, no manifest, or a pending one)."""
    if not storage.is_url(folder) and not Path(folder).is_dir():
        raise ConfigError(f"{folder}: not a built dataset folder (no such directory)")
    manifest = read_manifest(folder)
    if manifest is None:
        raise ConfigError(
            f"{folder}: not a built dataset folder (no readable manifest.json; build it with mtvr build-rl/build-cot)"
        )
    files = manifest["files"]
    return [c for c in CONFIGS if any(rel.startswith(f"{c}/") and rel.endswith(".parquet") for rel in files)]


def read_rows(folder: str, config: str) -> Iterator[tuple[str, CotRow | RlRow]]:
    """(split, record) of every row of `config`, read with `load_built` (manifest verified first: an unfinished
    or mixed build is a ConfigError naming the file), splits in `SPLITS` order."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from mtvr_data.dataset_loading import load_built

    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # the export's output is its summary (and a one-line error)
    try:
        loaded = load_built(folder, config)
    except IncompleteBuild as exc:
        raise ConfigError(str(exc)) from None
    finally:
        if not quiet:
            enable_progress_bars()
    for split in sorted(loaded, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s)):
        for row in loaded[split]:
            record = row_to_record(config, row)
            assert isinstance(record, CotRow | RlRow)
            yield split, record


def lineage_of(record: CotRow | RlRow) -> dict[str, Any]:
    """Every column of the built row but its id and its conversation: source, task, answer and windows, the
    sample's meta (its origin file and line), and how the row was made (policy and pass rate, or teacher and
    config hash). Kept under one `lineage` key so no name collides with a trainer's own columns (`tools`)."""
    row = record_to_row(record)
    return {k: v for k, v in row.items() if k not in CONTENT_COLUMNS}


def media_path(sample: Sample, video_root: str | None) -> str:
    """The row's media path: as built (relative to its source's videos root) without `video_root`, else joined
    to it (an absolute path or URL)."""
    if video_root is None:
        return sample.video
    if storage.is_url(video_root):
        return storage.join(video_root, sample.video)
    return str(Path(video_root).resolve() / sample.video)


def media_key(sample: Sample) -> str:
    """`video` or `image`: the key VITAL's records (and the ShareGPT placeholders) use for the row's media."""
    return "image" if sample.modality == "image" else "video"


@dataclass(slots=True)
class Skipped:
    """A row a format could not express: its id, config, split and why."""

    id: str
    config: str
    split: str
    reason: str
    detail: str = ""


def write_json(path: str, rows: list[dict[str, Any]]) -> str:
    """A JSON array of `rows` (one row a line, UTF-8 kept), through the storage layer."""
    body = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows) + "\n]\n"
    return storage.write_text(path, body if rows else "[]\n")
