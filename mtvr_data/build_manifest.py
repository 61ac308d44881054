"""A build folder's manifest: the files of the last build that finished, with their sizes, sha256 and row counts.

Why: a rebuild into a finished folder replaces shards, card, stats and records one file after another. Killed half
way, the folder mixes two builds, and `load_dataset` would silently read the mix, and `mtvr publish` upload it. So a
build commits last: it marks `manifest.json` pending before it replaces anything and writes a complete one when
every file is in place. A reader (`load_built`, the trainers, `mtvr publish`) calls `verify_build` first and
refuses a folder whose manifest is missing or pending, lists a file that is missing or differs, or lacks a shard
that is there; the error names the file. A build killed before its commit started (the long part: reading,
probing, grading) leaves the previous complete build untouched and readable.

Paths in the manifest are relative to the folder, `/`-separated, so a folder copied to a bucket (or back) keeps a
valid manifest. Everything goes through `mtvr_data.storage`, so the folder may be local or a URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from mtvr_data import storage

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: The folders whose Parquet files are shards (a shard there that the manifest does not list is an error).
SHARD_FOLDERS: tuple[str, ...] = ("cot", "rl")


class IncompleteBuild(ValueError):
    """A build folder that is unfinished or mixed: no manifest, or files that disagree with it. Names the file."""


def file_entry(path: str, *, parquet: bool | None = None) -> dict[str, Any]:
    """`{bytes, sha256}` of one file read back through storage, plus `rows` for a Parquet file (its footer)."""
    data = storage.read_bytes(path)
    entry: dict[str, Any] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if parquet if parquet is not None else path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        entry["rows"] = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
    return entry


def read_manifest(folder: str) -> dict[str, Any] | None:
    """The manifest of `folder`, or None when it has none (an unfinished build) or it is unreadable."""
    path = storage.join(folder, MANIFEST)
    try:
        data = json.loads(storage.read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def begin_commit(folder: str, config: str) -> dict[str, Any] | None:
    """Mark `folder` unfinished before a build of `config` replaces its files; returns the previous manifest.

    The manifest is rewritten as *pending*: readers refuse the folder until the commit writes a complete one, and
    it keeps the other configs' entries, so a commit killed here and rerun still vouches for their shards (a
    killed `rl` rebuild does not cost a finished `cot`).
    """
    old = read_manifest(folder)
    kept = {
        rel: entry
        for rel, entry in (old or {}).get("files", {}).items()
        if rel.split("/", 1)[0] in SHARD_FOLDERS and rel.split("/", 1)[0] != config
    }
    body = {"version": MANIFEST_VERSION, "pending": config, "files": kept}
    storage.write_text(storage.join(folder, MANIFEST), json.dumps(body, indent=2, sort_keys=True) + "\n")
    return old


def write_manifest(folder: str, files: Mapping[str, Mapping[str, Any]]) -> str:
    """Write `manifest.json` (the last step of a commit): relative path -> entry, keys sorted, stable bytes."""
    body = {"version": MANIFEST_VERSION, "files": {k: dict(files[k]) for k in sorted(files)}}
    return storage.write_text(storage.join(folder, MANIFEST), json.dumps(body, indent=2, sort_keys=True) + "\n")


def shard_paths(folder: str, configs: Iterable[str] = SHARD_FOLDERS) -> list[str]:
    """Every `*.parquet` under the shard folders of `folder`, as relative paths, sorted."""
    out = []
    for config in configs:
        for path in storage.glob(storage.join(folder, config, "*.parquet")):
            out.append(storage.relative(path, folder))
    return sorted(out)


def verify_build(folder: str, *, configs: Iterable[str] | None = None, check_hashes: bool = True) -> dict[str, Any]:
    """The manifest of a complete build in `folder`, or `IncompleteBuild` naming the first file that is wrong.

    With `configs`, only those configs' shards (and the card) are checked, so a reader of `rl` is not refused for a
    `cot` config that has no shards. `check_hashes=False` checks presence and sizes only (cheap on a bucket).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        raise IncompleteBuild(
            f"{storage.join(folder, MANIFEST)} is missing: the build into {folder} did not finish (or was killed "
            "while committing); rerun it (a rerun reuses its cached model results)"
        )
    if manifest.get("pending"):
        raise IncompleteBuild(
            f"{storage.join(folder, MANIFEST)}: a build of {manifest['pending']!r} into {folder} was interrupted "
            "while committing; rerun it (a rerun reuses its cached model results)"
        )
    wanted = tuple(configs) if configs is not None else SHARD_FOLDERS
    files: dict[str, dict[str, Any]] = manifest["files"]
    for rel in shard_paths(folder, wanted):
        if rel not in files:
            raise IncompleteBuild(f"{storage.join(folder, rel)}: not in {MANIFEST}; it belongs to an unfinished build")
    for rel, entry in sorted(files.items()):
        if rel.split("/", 1)[0] in SHARD_FOLDERS and rel.split("/", 1)[0] not in wanted:
            continue
        path = storage.join(folder, rel)
        if not storage.exists(path):
            raise IncompleteBuild(f"{path}: listed in {MANIFEST} but missing")
        if check_hashes:
            found = file_entry(path, parquet=False)
            if found["sha256"] != entry.get("sha256") or found["bytes"] != entry.get("bytes"):
                raise IncompleteBuild(f"{path}: differs from {MANIFEST} (sha256 {found['sha256'][:12]}...)")
        elif storage.size(path) != entry.get("bytes"):
            raise IncompleteBuild(f"{path}: {storage.size(path)} bytes, {MANIFEST} says {entry.get('bytes')}")
    return manifest
