"""Reading a built dataset (a local build folder or a Hub dataset id) the way users do: `datasets.load_dataset`.

One function, so every reader gets the same fix: `datasets` caches a local folder under a key that ignores the
files' content, so a rebuilt folder (or another folder with the same name) would load the previous rows. A local
folder is therefore re-read every time, without checking split sizes against that stale cache; a Hub id keeps the
library's normal caching and checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_built(data: str, config: str, *, split: str | None = None, revision: str | None = None) -> Any:
    """`load_dataset(data, config, split=split)`: a `Dataset` for one split, a `DatasetDict` when split is None."""
    from datasets import load_dataset

    local = Path(data).exists()
    if not local:
        return load_dataset(data, config, split=split, revision=revision)
    return load_dataset(
        str(Path(data).resolve()),
        config,
        split=split,
        download_mode="force_redownload",
        verification_mode="no_checks",
    )
