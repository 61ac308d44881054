"""Reading a built dataset (a local build folder or a Hub dataset id) the way users do: `datasets.load_dataset`.

One function, so every reader gets the same fix: `datasets` caches a local folder under a key that ignores the
files' content, so a rebuilt folder (or another folder with the same name) would load the previous rows. A local
folder is therefore read into a cache of its own, named by a fingerprint of its files (relative path, size and
modification time of each): the same files reuse one cache, changed files get a new one. Unlike forcing a fresh
download on every read, this is also safe when several training processes load the same folder at once: they
prepare one cache under the library's file lock instead of each deleting the cache the others are reading.
A Hub id keeps the library's normal caching and checks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def folder_fingerprint(folder: str | Path) -> str:
    """A hash of every file under `folder` (relative path, size, mtime): what decides a local build's cache."""
    root = Path(folder).resolve()
    digest = hashlib.sha256(str(root).encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.stat()
            digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_built(data: str, config: str, *, split: str | None = None, revision: str | None = None) -> Any:
    """`load_dataset(data, config, split=split)`: a `Dataset` for one split, a `DatasetDict` when split is None."""
    from datasets import config as datasets_config
    from datasets import load_dataset

    local = Path(data).exists()
    if not local:
        return load_dataset(data, config, split=split, revision=revision)
    cache = Path(datasets_config.HF_DATASETS_CACHE) / "mtvr_local" / folder_fingerprint(data)
    return load_dataset(
        str(Path(data).resolve()), config, split=split, cache_dir=str(cache), verification_mode="no_checks"
    )
