"""Resume for the model stages: every finished piece of model work is kept as one small JSON file on disk.

A build is hours of accelerator time; a worker that is killed (pre-empted VM, OOM, Ctrl-C) must not cost the
work that already finished. So each model result is written the moment it exists, under a key of what decides
it, and a rerun with the same output directory looks the key up before sending anything to an engine.

Why it looks like this:
- Key = (sample id, engine kind, portable model identity, config hash). The identity is a Hub id with its revision
  or a content hash of a local checkpoint (`model.settings.EngineConfig.identity`), never a path, so a moved
  checkout keeps its hits. The config hash (`StageDefinition.config_hash`) covers what decides the model's text: K,
  sampling (the build seed included), rollout limits, tools, and what the model saw: prompt templates, tool
  schemas, frame and clip budgets (the teacher adds its hint wording and routing). Batch sizes or concurrency do
  not, so they can be tuned between runs without losing the cache; the pass rule and rewards do not either, since
  a value is the model's text and is scored when read.
- One file per key (`<out>/cache/<stage>/<first 2 hex of the digest>/<digest>.json`), sharded so that no
  directory holds millions of entries. A file per key needs no lock and no merge: Beam workers in any number of
  processes write their own keys, and a half-finished run leaves exactly its finished keys behind.
- The store is wherever `<out>` is: a local folder or a bucket (`gs://`, `s3://`, ... via `mtvr_data.storage`).
  Writes are whole or nothing on both. Locally: a temporary file in the same directory, then `os.replace`.
  On an object store, which has no rename: one write-once object per key, uploaded in one request, so a reader
  sees the whole object or none; two workers that race on one key write the same bytes. No locks anywhere, so
  any number of Dataflow workers write at once. There is no fsync (one per result would dominate a fast engine);
  after a power loss an entry may be missing or unreadable, and an unreadable entry is treated as a miss and
  recomputed, never trusted.
- The file repeats its key; a lookup whose stored key differs (a digest collision, a file copied by hand) is a
  miss too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mtvr_data import storage

log = logging.getLogger(__name__)

#: 2: values are the model's text (trajectories) for every stage, keys name the model portably and fingerprint the
#: prompts. Entries of version 1 (grades stored as rewards, keyed by a model path) are misses: recomputed, never read.
CACHE_VERSION = 2


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What decides one model result: the sample, the engine kind, the model and the result-relevant config."""

    sample_id: str
    engine: str
    model: str
    config_hash: str

    def to_dict(self) -> dict[str, str]:
        return {
            "sample_id": self.sample_id,
            "engine": self.engine,
            "model": self.model,
            "config_hash": self.config_hash,
        }

    @property
    def digest(self) -> str:
        """The file name: sha256 of the four parts (a list, so no separator inside a part can make two keys equal)."""
        text = json.dumps([self.sample_id, self.engine, self.model, self.config_hash], ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()


class ResultCache:
    """Model results of one stage under `<out>/cache/<stage>/`, one JSON file per `CacheKey` (module docstring).

    Cheap to construct and picklable (it holds only a path string, local or URL), so a Beam DoFn or a model handler
    can carry it to workers. `get` never raises for a bad entry (it is a miss); `put` raises only on a storage error.
    """

    def __init__(self, out_dir: str | os.PathLike[str], stage: str = "grade") -> None:
        self.out_dir = os.fspath(out_dir)
        self.stage = stage

    @property
    def root(self) -> str:
        return storage.join(self.out_dir, "cache", self.stage)

    def path(self, key: CacheKey) -> str:
        digest = key.digest
        return storage.join(self.root, digest[:2], f"{digest}.json")

    def get(self, key: CacheKey) -> dict[str, Any] | None:
        """The value stored for `key`, or None when there is none (or it cannot be trusted: see the docstring)."""
        path = self.path(key)
        try:
            entry = json.loads(storage.read_text(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cache entry %s unreadable (%s): recomputing", path, exc)
            return None
        if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION or entry.get("key") != key.to_dict():
            log.warning("cache entry %s does not belong to %s: recomputing", path, key)
            return None
        value = entry.get("value")
        return value if isinstance(value, dict) else None

    def put(self, key: CacheKey, value: Mapping[str, Any]) -> str:
        """Store `value` (JSON-able) for `key`, whole or not at all (replacing an entry); returns its path."""
        text = json.dumps(
            {"version": CACHE_VERSION, "key": key.to_dict(), "value": dict(value)},
            ensure_ascii=False,
            sort_keys=True,
            allow_nan=False,
        )
        return storage.write_text(self.path(key), text)

    def __contains__(self, key: CacheKey) -> bool:
        return self.get(key) is not None

    def files(self) -> Iterator[str]:
        """Every entry file (temporary files of unfinished local writes left out)."""
        for path in storage.glob(storage.join(self.root, "*", "*.json")):
            if not storage.name(path).startswith("."):
                yield path

    def __len__(self) -> int:
        return sum(1 for _ in self.files())

    def __repr__(self) -> str:
        return f"ResultCache({self.root!r})"
