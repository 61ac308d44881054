"""Media (videos, images) from object stores, staged on the worker's local scratch disk before decoding.

Why: decord, ffmpeg and Pillow read local files. Decord cannot read a URL at all, ffmpeg's network readers seek
badly and do not know Beam's credentials. So media whose path is a URL (`s3://bucket/videos/a.mp4`: a URL video
root joined with the sample's root-relative `video`) is downloaded once into a scratch cache on the worker and
decoded there; a local path is used where it is, with no copy. Only the decoders ever see the local copy: samples,
rows and shards keep their root-relative `video`, and nothing here writes a path back into a record.

The cache (`MediaStager`):

- One folder per machine (`MTVR_MEDIA_CACHE_DIR`, default `<tempfile.gettempdir()>/mtvr-media`), shared by the
  threads and the worker processes on it. A file's name is a hash of its URL plus the URL's extension (decoders
  look at it): `<sha256(url)[:32]><.ext>`.
- Downloads are atomic: into `<hash>.<random>.part`, size checked against the object's (`storage.size`), then
  `os.replace`d to the final name. A transfer that comes up short is an error (`MediaUnavailable`), and its part
  file is deleted, so a cut download never becomes the cached copy.
- One download per URL: each file has a lock file (`<hash>.lock`, `fcntl.flock`), taken exclusively to download
  and shared to use. Concurrent rollouts of one video, in threads or in processes, wait for the one download and
  then share the copy. (flock locks belong to an open file description, so two threads of one process that open
  the lock file separately exclude each other like two processes do.)
- Bounded by total bytes (`MTVR_MEDIA_CACHE_BYTES`, default the smaller of 8 GiB and half the disk's free space
  when the cache is first used): before a download, least-recently-used files are deleted until the new file
  fits. Recency is a file's access time, set explicitly on every use; the modification time is left alone,
  because the frame cache keys a file on it (and so sees a re-downloaded copy as a new file).
- A file in use is never evicted. A user holds a `MediaLease` (`acquire_media`, `staged_media`), which is the
  shared lock; eviction takes the exclusive lock without waiting and skips the file when it cannot. Deleting a
  file in use is NOT safe here, even on POSIX where an open descriptor survives an unlink: the clip tool, the
  trainer's clip replay and the ffmpeg decoder open the file again by name for every clip, minutes after the
  prompt's frames were decoded. So the bound is soft: when the files in use alone exceed it, the cache grows
  past it (with a warning) rather than break a rollout.

Failures raise `MediaUnavailable(reason, detail, url)`: `video_missing` when there is no such object (the code a
missing local file gets, so a build on a bucket counts its losses like the same build on a folder), and
`media_unavailable` for anything else (a failed or short transfer after `DOWNLOAD_ATTEMPTS` tries, a full scratch
disk). The probe turns it into the sample's dead letter and a rollout into its sample's `media_error`. A URL whose
file system is not installed raises `storage.StorageUnavailable` instead: that is the machine's fault, not the
sample's, and stops the run loudly like a missing ffmpeg does.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from mtvr_data import storage

log = logging.getLogger(__name__)

#: Environment settings: the scratch folder, and its bound in bytes (an integer, or with a K/M/G/T suffix: "20G").
CACHE_DIR_ENV = "MTVR_MEDIA_CACHE_DIR"
CACHE_BYTES_ENV = "MTVR_MEDIA_CACHE_BYTES"
#: The bound when `MTVR_MEDIA_CACHE_BYTES` is not set: at most this, and at most half the disk's free space (a
#: Dataflow worker with the shuffle service has a 25 GB disk, shared with the SDK's own files).
DEFAULT_MAX_BYTES = 8 << 30
#: Tries of one download before `media_unavailable` (a missing object is not retried), and the pause before try
#: n + 1 (n times this many seconds).
DOWNLOAD_ATTEMPTS = 3
RETRY_BACKOFF_S = 1.0
#: How often a staged copy may vanish (evicted by a full cache) between its download and its use before giving up.
MAX_STAGE_TRIES = 5
#: Bytes read per chunk while downloading.
CHUNK_BYTES = 1 << 20

MISSING = "video_missing"
UNAVAILABLE = "media_unavailable"

_HASH_CHARS = 32
_EXT_RE = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


class MediaUnavailable(Exception):
    """A URL's media could not be staged: `reason` is a dead-letter code, `detail` names the URL and why."""

    def __init__(self, reason: str, detail: str, url: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.url = url

    def __reduce__(self) -> tuple[type[MediaUnavailable], tuple[str, str, str]]:
        # Beam moves exceptions between processes: keep the fields, not just the message.
        return (type(self), (self.reason, self.detail, self.url))


class MediaLease:
    """A local copy held in use: `path` is not evicted until `release()` (or the end of the `with` block).

    For a local source `path` is the source itself and there is nothing to hold. A lease dropped without release
    lets go of its lock when it is garbage-collected, so a forgotten one cannot pin a file for the process's life.
    """

    __slots__ = ("source", "path", "_finalizer", "__weakref__")

    def __init__(self, source: str, path: str, fd: int | None = None) -> None:
        self.source = source
        self.path = path
        self._finalizer = weakref.finalize(self, _release, fd, path) if fd is not None else None

    @property
    def held(self) -> bool:
        return self._finalizer is not None and self._finalizer.alive

    def release(self) -> None:
        """Let the copy be evicted again (marking it used now); calling it twice is fine."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> MediaLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _release(fd: int, path: str) -> None:
    _touch(path)
    with contextlib.suppress(OSError):
        os.close(fd)


class LeaseGroup:
    """Leases taken in worker threads for an owner that may stop waiting for them (a rollout's media timeout).

    `add` from the worker, `release` once by the owner when it is done with the media; a lease added after that
    is released at once (and `add` says so), so a thread the owner abandoned cannot pin a file forever.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: list[MediaLease] = []
        self._closed = False

    def add(self, lease: MediaLease) -> bool:
        with self._lock:
            if not self._closed:
                self._leases.append(lease)
                return True
        lease.release()
        return False

    def release(self) -> None:
        with self._lock:
            self._closed = True
            leases, self._leases = self._leases, []
        for lease in leases:
            lease.release()


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    name: str
    size: int
    used_ns: int


class MediaStager:
    """The scratch cache of one folder and byte bound (see the module docstring); `downloads` counts this
    object's completed downloads."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_bytes = int(max_bytes)
        self.downloads = 0
        self._count_lock = threading.Lock()
        os.makedirs(self.directory, exist_ok=True)

    # --- the public part ---------------------------------------------------------------------------------------------

    def acquire(self, path: str | os.PathLike[str]) -> MediaLease:
        """A lease on a local copy of `path`: a local path as it is, a URL downloaded once (see the module)."""
        text = os.fspath(path)
        if not storage.is_url(text):
            return MediaLease(text, _local(text))
        storage.check(text)  # StorageUnavailable: no file system for it here, a fault of the machine
        try:
            return self._acquire_url(text)
        except OSError as exc:  # the scratch folder itself failed us (full, removed, read-only): this sample's loss
            raise MediaUnavailable(
                UNAVAILABLE, f"{text}: the scratch cache {self.directory} cannot be used ({_why(exc)})", text
            ) from exc

    def _acquire_url(self, text: str) -> MediaLease:
        key = self.key(text)
        local = os.path.join(self.directory, key + _extension(text))
        lock = os.path.join(self.directory, key + ".lock")
        for _ in range(MAX_STAGE_TRIES):
            os.makedirs(self.directory, exist_ok=True)  # a temp cleaner may have removed it
            fd = _lock(lock, fcntl.LOCK_SH)
            if os.path.isfile(local):
                _touch(local)
                return MediaLease(text, local, fd)
            os.close(fd)
            fd = _lock(lock, fcntl.LOCK_EX)
            try:
                if not os.path.isfile(local):  # another thread or process may have downloaded it meanwhile
                    self._download_with_retries(text, key, local)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)  # no copy to guard (a missing object must not leave a lock file behind)
                raise
            finally:
                os.close(fd)
        raise MediaUnavailable(
            UNAVAILABLE,
            f"{text}: the local copy was evicted {MAX_STAGE_TRIES} times before it could be used "
            f"({CACHE_BYTES_ENV}={self.max_bytes} is too small for the media in use)",
            text,
        )

    def stage(self, path: str | os.PathLike[str]) -> str:
        """A local path of `path` (see `stage_media`)."""
        with self.acquire(path) as lease:
            return lease.path

    @staticmethod
    def key(url: str) -> str:
        """The cache's name for a URL (without extension): a hash, so any URL makes a short, safe file name."""
        return hashlib.sha256(url.encode("utf-8")).hexdigest()[:_HASH_CHARS]

    def cached_bytes(self) -> int:
        """Bytes of the complete copies in the cache (partial downloads not counted)."""
        return sum(e.size for e in self._scan()[0])

    def cached_files(self) -> list[str]:
        """Names of the complete copies in the cache, least recently used first."""
        return [e.name for e in self._scan()[0]]

    def evict(self, reserve: int = 0) -> list[str]:
        """Delete least-recently-used copies not in use until the cache plus `reserve` bytes fits the bound.

        Also removes the part files of downloads that died (those of keys nobody holds). Returns the names deleted.
        """
        entries, parts = self._scan()
        removed: list[str] = []
        for part in parts:  # a part whose key nobody holds is left by a download that died
            if self._remove_unused(part.key, [part.name]):
                removed.append(part.name)
        total = sum(e.size for e in entries) + sum(p.size for p in parts if p.name not in removed)
        for entry in entries:  # least recently used first
            if total + reserve <= self.max_bytes:
                break
            if self._remove_unused(entry.key, [entry.name]):
                total -= entry.size
                removed.append(entry.name)
        if total + reserve > self.max_bytes:
            log.warning(
                "media cache %s: %d bytes in use plus %d to download exceed its bound of %d (%s); going over",
                self.directory,
                total,
                reserve,
                self.max_bytes,
                CACHE_BYTES_ENV,
            )
        if removed:
            log.info("media cache %s: evicted %d files", self.directory, len(removed))
        return removed

    # --- downloading -------------------------------------------------------------------------------------------------

    def _download_with_retries(self, url: str, key: str, local: str) -> None:
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                self._download(url, key, local)
                return
            except MediaUnavailable as exc:
                if exc.reason == MISSING or attempt == DOWNLOAD_ATTEMPTS:
                    raise
                log.warning("download %d of %s failed (%s); retrying", attempt, url, exc.detail)
                time.sleep(RETRY_BACKOFF_S * attempt)

    def _download(self, url: str, key: str, local: str) -> None:
        """Download `url` to `local` atomically; the caller holds the key's lock exclusively."""
        expected = self._object_size(url)
        self._sweep_parts(key)  # parts of this key left by a download that died: nobody else can be writing them
        self.evict(reserve=expected)
        tmp = os.path.join(self.directory, f"{key}.{secrets.token_hex(4)}.part")
        try:
            with storage.open_read(url) as src, open(tmp, "wb") as dst:
                copied = 0
                while chunk := src.read(CHUNK_BYTES):
                    dst.write(chunk)
                    copied += len(chunk)
            if copied != expected:
                raise MediaUnavailable(
                    UNAVAILABLE,
                    f"{url}: downloaded {copied} bytes but the object has {expected} "
                    "(a cut transfer, or the object changed meanwhile)",
                    url,
                )
            os.replace(tmp, local)
        except (MediaUnavailable, storage.StorageUnavailable):
            raise
        except FileNotFoundError as exc:
            raise MediaUnavailable(MISSING, f"{url}: no such object", url) from exc
        except Exception as exc:  # Beam's file systems raise BeamIOError, boto and GCS their own: all one reason
            raise MediaUnavailable(UNAVAILABLE, f"{url}: download failed ({_why(exc)})", url) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        with self._count_lock:
            self.downloads += 1
        _touch(local)
        log.debug("staged %s (%d bytes) as %s", url, expected, local)

    @staticmethod
    def _object_size(url: str) -> int:
        try:
            return storage.size(url)
        except storage.StorageUnavailable:
            raise
        except Exception as exc:  # a missing object is one error among many here: ask whether it is there
            try:
                there = storage.exists(url)
            except Exception:
                there = True
            if not there:
                raise MediaUnavailable(MISSING, f"{url}: no such object", url) from None
            raise MediaUnavailable(UNAVAILABLE, f"{url}: its size cannot be read ({_why(exc)})", url) from exc

    # --- the folder --------------------------------------------------------------------------------------------------

    def _scan(self) -> tuple[list[_Entry], list[_Entry]]:
        """(complete copies, least recently used first; partial downloads)."""
        entries: list[_Entry] = []
        parts: list[_Entry] = []
        try:
            listing = list(os.scandir(self.directory))
        except FileNotFoundError:
            return [], []
        for item in listing:
            key, rest = item.name[:_HASH_CHARS], item.name[_HASH_CHARS:]
            if len(key) != _HASH_CHARS or rest == ".lock":
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            entry = _Entry(key, item.name, st.st_size, st.st_atime_ns)
            if rest.endswith(".part"):
                parts.append(entry)
            elif rest == "" or _EXT_RE.match(rest):
                entries.append(entry)
        entries.sort(key=lambda e: (e.used_ns, e.name))
        return entries, parts

    def _remove_unused(self, key: str, names: list[str]) -> bool:
        """Delete `names` and the key's lock file if no one holds the key's lock; False if someone does."""
        lock = os.path.join(self.directory, key + ".lock")
        fd = _try_lock_exclusive(lock)
        if fd is None:
            return False
        try:
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, name))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # while held: a waiter on this inode sees it gone and takes a fresh lock file
        finally:
            os.close(fd)
        return True

    def _sweep_parts(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            for item in os.scandir(self.directory):
                if item.name.startswith(key + ".") and item.name.endswith(".part"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)


# --- locks -----------------------------------------------------------------------------------------------------------


def _lock(path: str, mode: int) -> int:
    """A descriptor of `path` holding flock `mode`, on the lock file that is at `path` now.

    Eviction unlinks a lock file while holding it; whoever was waiting on that inode must not believe it holds the
    key's lock, so after locking the inode is compared with the name's and the lock retaken if they differ.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _try_lock_exclusive(path: str) -> int | None:
    """A descriptor holding `path` exclusively, or None when someone holds it (or it changed under us)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


def _touch(path: str) -> None:
    """Mark `path` used now (its access time), keeping its modification time (the frame cache's key)."""
    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))


# --- helpers ---------------------------------------------------------------------------------------------------------


def _local(path: str) -> str:
    """A `file://` URL as the plain path decoders need; any other local path unchanged."""
    return path[len("file://") :] if path.startswith("file://") else path


def _extension(url: str) -> str:
    """The URL's extension, kept on the copy (decoders and Pillow look at it); an odd one is dropped."""
    ext = os.path.splitext(storage.name(url))[1]
    return ext if _EXT_RE.match(ext) and ext.lower() not in (".lock", ".part") else ""


def _why(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_bytes(text: str) -> int:
    """`"8589934592"`, `"8G"`, `"8GiB"`, `"500M"` -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{CACHE_BYTES_ENV}={text!r}: expected a byte count such as 8589934592 or 8G")
    number, unit = match.groups()
    return int(float(number) * (1 << (10 * " KMGT".index(unit.upper() or " "))))


# --- the process's cache ---------------------------------------------------------------------------------------------

_default: MediaStager | None = None
_default_settings: tuple[str | None, str | None] | None = None
_default_lock = threading.Lock()


def default_stager() -> MediaStager:
    """This process's stager, from `MTVR_MEDIA_CACHE_DIR` / `MTVR_MEDIA_CACHE_BYTES` (re-made if they change)."""
    global _default, _default_settings
    settings = (os.environ.get(CACHE_DIR_ENV) or None, os.environ.get(CACHE_BYTES_ENV) or None)
    with _default_lock:
        if _default is None or _default_settings != settings:
            directory = settings[0] or os.path.join(tempfile.gettempdir(), "mtvr-media")
            os.makedirs(directory, exist_ok=True)
            if settings[1] is not None:
                max_bytes = parse_bytes(settings[1])
            else:
                max_bytes = min(DEFAULT_MAX_BYTES, shutil.disk_usage(directory).free // 2)
            _default, _default_settings = MediaStager(directory, max_bytes), settings
        return _default


def acquire_media(path: str | os.PathLike[str]) -> MediaLease:
    """A lease on a local copy of `path` in this process's cache; release it when done reading the file.

    A local path never touches the cache (not even to create its folder): it is its own copy.
    """
    text = os.fspath(path)
    if not storage.is_url(text):
        return MediaLease(text, _local(text))
    return default_stager().acquire(text)


@contextlib.contextmanager
def staged_media(path: str | os.PathLike[str]) -> Iterator[str]:
    """A local path of `path`, kept in the cache (never evicted) while the block runs."""
    with acquire_media(path) as lease:
        yield lease.path


def stage_media(path: str | os.PathLike[str]) -> str:
    """A local path of `path`: a local path unchanged (no copy), a URL's copy in this process's scratch cache.

    The copy is not held: a full cache may evict it later. A caller that opens the file again afterwards (the clip
    tool, a clip replay) holds a lease instead (`acquire_media`, `staged_media`).
    """
    with acquire_media(path) as lease:
        return lease.path
