"""Reading a built dataset (a local build folder, a bucket URL or a Hub dataset id) the way users do: `load_dataset`.

One function, so every reader (the trainers, the demo, users) gets the same checks and fixes:

- A build folder is read only when it holds a finished build: its manifest must be there and agree with the
  shards of the config read and with the card (`mtvr_data.build_manifest.verify_build`). A half-replaced folder
  (a rebuild killed while committing) is refused with the file named, never read as a mix of two builds.
- `datasets` caches a local folder under a key that ignores the files' content, so a rebuilt folder (or another
  folder with the same name) would load the previous rows. A folder is therefore read into a cache of its own,
  named by its manifest (every shard's sha256): the same build reuses one cache, a rebuild gets a new one. This is
  also safe when several training processes load the same folder at once: they prepare one cache under the
  library's file lock instead of each deleting the cache the others are reading.
- A bucket URL (`s3://`, `gs://`, ... through `mtvr_data.storage`) is verified, then the card and the shards are
  downloaded once into a local folder named by the manifest, and read from there (every config's shards: `datasets`
  resolves the data files of every config the card lists). (`datasets` could
  read buckets through fsspec, but that needs a second client stack per store, `s3fs` / `gcsfs`, configured apart
  from Beam's; one I/O layer keeps one set of endpoints and credentials.)
- A Hub id keeps the library's normal caching and checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mtvr_data import storage
from mtvr_data.build_manifest import MANIFEST, verify_build


def build_fingerprint(manifest: dict[str, Any], config: str) -> str:
    """A hash of what a reader of `config` sees: the manifest entries of its shards and of the card (`config=""`:
    of every file the manifest lists)."""
    files = {k: v for k, v in manifest["files"].items() if not config or k.startswith(f"{config}/") or "/" not in k}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def is_build_folder(data: str) -> bool:
    """A local folder or a bucket URL (a build), as opposed to a Hub dataset id."""
    return storage.is_url(data) or Path(data).exists()


def _download(folder: str, manifest: dict[str, Any], target: Path) -> Path:
    """The files a verified bucket build's manifest lists, copied once into `target` (the manifest last)."""
    done = target / MANIFEST
    if done.is_file():
        return target
    for rel in sorted(manifest["files"]):
        storage.copy_to_local(storage.join(folder, rel), str(target / rel))
    storage.write_text(str(done), json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # last: marks it complete
    return target


def load_built(data: str, config: str, *, split: str | None = None, revision: str | None = None) -> Any:
    """`load_dataset(data, config, split=split)`: a `Dataset` for one split, a `DatasetDict` when split is None.

    `data` is a build folder (local or URL: verified first, `IncompleteBuild` when unfinished) or a Hub id.
    """
    from datasets import config as datasets_config
    from datasets import load_dataset

    if not is_build_folder(data):
        return load_dataset(data, config, split=split, revision=revision)
    root = Path(datasets_config.HF_DATASETS_CACHE) / "mtvr_local"
    if storage.is_url(data):
        manifest = verify_build(data)  # every config the card lists must be whole: all of them are downloaded
        local = str(_download(data, manifest, root / "downloads" / build_fingerprint(manifest, "")))
    else:
        manifest = verify_build(data, configs=[config])
        local = str(Path(data).resolve())
    cache = root / build_fingerprint(manifest, config) / hashlib.sha256(os.fsencode(local)).hexdigest()[:8]
    return load_dataset(local, config, split=split, cache_dir=str(cache), verification_mode="no_checks")
