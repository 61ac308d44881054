"""`FrameCache`: open readers and finished samplings, kept for the next request about the same video.

A rollout asks for the whole video, then for one or two clips of it, from tool calls running in worker
threads; a teacher and K policy rollouts ask for the same clips again. Opening a video (decord reads the
container's packet index) and seeking cost more than the frames themselves, so the cache keeps

- the file's header facts (size, codec), per (path, mtime, size);
- open frame sources (a decord reader at one output size, or ffmpeg's packet index), per file and size;
- finished `Frames`, per (file, start, end, budget, backend).

One least-recently-used order over all three, bounded by bytes (a source counts its estimated resident
memory, a result its frames) and by the number of open sources (each decord reader holds a file and a
thread). Thread-safe: a lock guards the table, a per-key lock makes concurrent requests for a source that is
not open yet open it once, and each source has its own lock for decoding (decord readers are not
thread-safe). Results are shared: their arrays are marked read-only, and callers get a shallow copy of the
`Frames` whose array they must copy before writing to it.

The cache knows a result only by the `CachedFrames` protocol (its pixel array, times and size), so that it does
not import `mtvr_data.frames`, which imports it.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 512 * 2**20
DEFAULT_MAX_SOURCES = 8
T = TypeVar("T")


class CachedFrames(Protocol):
    """What the cache needs of a result (`mtvr_data.frames.Frames`): its pixels, its frame times, its size."""

    frames: np.ndarray
    times: list[float]

    @property
    def nbytes(self) -> int: ...


R = TypeVar("R", bound=CachedFrames)


@dataclass(slots=True)
class _Entry:
    kind: str  # "facts" | "source" | "result"
    value: Any
    nbytes: int


class FrameCache:
    """A small thread-safe LRU of open frame sources and sampled frames (see the module docstring)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, *, max_sources: int = DEFAULT_MAX_SOURCES) -> None:
        if max_bytes < 0 or max_sources < 1:
            raise ValueError("max_bytes must be >= 0 and max_sources >= 1")
        self.max_bytes = max_bytes
        self.max_sources = max_sources
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._creating: dict[Hashable, threading.Lock] = {}
        self._bytes = 0
        self._sources = 0
        self.hits = 0
        self.misses = 0
        self.opened = 0
        self.evicted = 0

    # --- public -----------------------------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes currently accounted to the cache (sources by estimate)."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Drop everything (open readers close once no request still uses them)."""
        with self._lock:
            self._entries.clear()
            self._bytes = self._sources = 0

    def stats(self) -> dict[str, int]:
        """Counters for logs and metrics: result hits/misses, sources opened, entries evicted, bytes held."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "opened": self.opened,
                "evicted": self.evicted,
                "entries": len(self._entries),
                "bytes": self._bytes,
            }

    # --- used by mtvr_data.frames -----------------------------------------------------------------------------

    def get_result(self, key: Hashable) -> Any:
        """A shallow copy of the cached Frames for `key` (sharing its read-only array), or None."""
        with self._lock:
            entry = self._entries.get(("result", key))
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(("result", key))
            self.hits += 1
            frames = entry.value
        return _shallow_copy(frames)

    def put_result(self, key: Hashable, frames: R) -> R:
        """Store a result (its array becomes read-only) and return the caller's copy of it."""
        frames.frames.setflags(write=False)
        self._put(("result", key), _Entry("result", frames, frames.nbytes))
        return _shallow_copy(frames)

    def get_or_open(self, kind: str, key: Hashable, opener: Callable[[], T], nbytes: Callable[[T], int]) -> T:
        """The cached value for (kind, key), or `opener()`'s, stored; concurrent callers open it only once."""
        full_key = (kind, key)
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None:
                self._entries.move_to_end(full_key)
                return entry.value
            creating = self._creating.setdefault(full_key, threading.Lock())
        with creating:
            with self._lock:
                entry = self._entries.get(full_key)
                if entry is not None:
                    self._entries.move_to_end(full_key)
                    return entry.value
            try:
                value = opener()
                if kind == "source":
                    with self._lock:
                        self.opened += 1
                self._put(full_key, _Entry(kind, value, nbytes(value)))
                return value
            finally:
                with self._lock:
                    self._creating.pop(full_key, None)

    # --- internals --------------------------------------------------------------------------------------------

    def _put(self, full_key: Hashable, entry: _Entry) -> None:
        with self._lock:
            old = self._entries.pop(full_key, None)
            if old is not None:
                self._forget(old)
            if entry.nbytes > self.max_bytes:
                log.debug("not caching %s: %d bytes exceed the cache's %d", full_key[0], entry.nbytes, self.max_bytes)
                return
            self._entries[full_key] = entry
            self._bytes += entry.nbytes
            self._sources += entry.kind == "source"
            while self._entries and (self._bytes > self.max_bytes or self._sources > self.max_sources):
                victim_key = next(
                    (k for k, e in self._entries.items() if self._bytes > self.max_bytes or e.kind == "source"),
                    None,
                )
                if victim_key is None or victim_key == full_key:
                    break
                self._forget(self._entries.pop(victim_key))
                self.evicted += 1

    def _forget(self, entry: _Entry) -> None:
        self._bytes -= entry.nbytes
        self._sources -= entry.kind == "source"


def _shallow_copy(frames: R) -> R:
    """A copy sharing the (read-only) pixel array, with its own list of times."""
    out = copy.copy(frames)
    out.times = list(frames.times)
    return out
