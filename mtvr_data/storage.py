"""One I/O layer: every path the project reads or writes is a local path or a URL Beam's `FileSystems` knows.

Why one module: a build runs on a laptop against a folder, and on Dataflow against buckets (`gs://`, `s3://`,
`azfs://`, `hdfs://`). If each reader and writer chose its own way to open a file, a URL would sooner or later go
through `pathlib.Path`, which turns `gs://bucket/run` into the local folder `gs:/bucket/run` and writes a whole
build onto a worker's scratch disk. So every place the project touches storage calls these functions, and a URL
is only ever handled as a string.

- Local paths use the standard library: writes are atomic (a temporary file beside the target, then
  `os.replace`), so a reader sees a whole file or none.
- URLs go through `apache_beam.io.filesystems.FileSystems`, imported lazily: the data core (adapters, frames,
  rewards) imports this module without pulling in Beam, and Beam is imported the first time a URL is used. Object
  stores have no rename: a write is a single object upload, which is atomic per object there too.
- Compression is never guessed from a name (Beam's default would gunzip `x.json.gz` on read): bytes in are bytes
  out.
- `configure(pipeline_args)` hands the build's Beam options (`--s3_endpoint_url`, credentials, GCP project) to
  `FileSystems` in the launcher process; Beam does the same on every worker from the pipeline options.

An unknown scheme, or one whose Beam extra is not installed, raises `StorageUnavailable` naming the extra to
install; config loaders turn it into a one-line config error.
"""

from __future__ import annotations

import contextlib
import errno
import glob as _glob
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

#: Schemes Beam ships a file system for, the module that file system needs, and the pip extra that brings it.
SCHEMES: dict[str, tuple[str, str]] = {
    "gs": ("google.cloud.storage", "apache-beam[gcp]"),
    "s3": ("boto3", "apache-beam[aws]"),
    "azfs": ("azure.storage.blob", "apache-beam[azure]"),
    "hdfs": ("hdfs", "apache-beam (with `pip install hdfs`)"),
}


class StorageUnavailable(ValueError):
    """A URL whose scheme Beam does not know, or whose file system's extra is not installed."""


def scheme_of(path: str | os.PathLike[str]) -> str:
    """`s3` for `s3://bucket/key`, `""` for a local path (a `file://` URL counts as local)."""
    text = os.fspath(path)
    head, sep, _ = text.partition("://")
    if not sep or "/" in head or not head:
        return ""
    return "" if head == "file" else head.lower()


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is an object-store or remote URL (anything with a scheme but `file://`)."""
    return bool(scheme_of(path))


def _local(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    return text[len("file://") :] if text.startswith("file://") else text


def check(path: str | os.PathLike[str]) -> str:
    """`path` as a string, after checking that a URL's file system is available here (`StorageUnavailable`)."""
    text = os.fspath(path)
    scheme = scheme_of(text)
    if not scheme:
        return text
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageUnavailable(f"{text}: no file system for {scheme}:// (Beam's file systems know {known})")
    module, extra = SCHEMES[scheme]
    try:
        __import__(module)
        _filesystems().get_filesystem(text)
    except (ImportError, ValueError) as exc:
        why = exc.__class__.__name__
        raise StorageUnavailable(f"{text}: {scheme}:// needs `pip install '{extra}'` ({why})") from None
    return text


def _filesystems() -> Any:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


#: One S3 client per process (and per set of options): Beam's S3 file system builds a new boto3 client for every
#: call (about 0.3 s each, measured against a loopback server), which would dominate a cache lookup per sample.
#: One slot, (pid, the options object, the S3IO): it holds the options, so their identity cannot be reused.
_S3IO: list[tuple[int, Any, Any]] = []


def _s3io() -> Any:
    """Beam's `S3IO` over a client made once per process from the options `configure` (or Beam) set last."""
    options = _filesystems()._pipeline_options
    if _S3IO and _S3IO[0][0] == os.getpid() and _S3IO[0][1] is options:
        return _S3IO[0][2]
    from apache_beam.io.aws import s3io
    from apache_beam.io.aws.clients.s3 import boto3_client
    from apache_beam.options.pipeline_options import PipelineOptions

    found = s3io.S3IO(client=boto3_client.Client(options=options or PipelineOptions([])))
    _S3IO[:] = [(os.getpid(), options, found)]
    return found


#: Objects below this size go up in one PUT request: one round trip instead of Beam's three-request multipart upload,
#: which S3 also refuses for an empty object (a multipart upload needs at least one part).
S3_SINGLE_PUT_BYTES = 256 << 20


def _s3_put(url: str, body: IO[bytes]) -> None:
    from apache_beam.io.aws.s3io import parse_s3_path

    bucket, key = parse_s3_path(url)
    _s3io().client.client.put_object(Bucket=bucket, Key=key, Body=body.read())


def _uncompressed() -> Any:
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def configure(pipeline_args: Sequence[str] | None) -> None:
    """Give `FileSystems` in this process the build's Beam options (S3 endpoint and keys, GCP project, ...)."""
    if not pipeline_args:
        return
    from apache_beam.options.pipeline_options import PipelineOptions

    _filesystems().set_options(PipelineOptions(list(pipeline_args)))


# --- paths -----------------------------------------------------------------------------------------------------------


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """`base/part/...`; a URL is joined as text (never through `Path`), a local path with `os.path.join`."""
    text = os.fspath(base)
    if not is_url(text):
        return os.path.join(text, *parts)
    out = text.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def relative(path: str, root: str) -> str:
    """`path` relative to `root`, `/`-separated (for manifests and card globs)."""
    if is_url(root):
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {root}")
        return path[len(prefix) :]
    return os.path.relpath(_local(path), _local(root)).replace(os.sep, "/")


def name(path: str) -> str:
    """The last part of a path or URL."""
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(_local(path))


def parent(path: str) -> str:
    """The folder holding `path`."""
    return path.rstrip("/").rsplit("/", 1)[0] if is_url(path) else os.path.dirname(_local(path))


# --- reading ---------------------------------------------------------------------------------------------------------


def open_read(path: str | os.PathLike[str]) -> IO[bytes]:
    """A binary file object for reading; `FileNotFoundError` when there is nothing at `path`."""
    text = check(path)
    if not is_url(text):
        return open(_local(text), "rb")
    if scheme_of(text) == "s3":
        try:
            return _s3io().open(text, "rb")
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT:
                raise FileNotFoundError(f"no such object: {text}") from None
            raise
    fs = _filesystems()
    if not fs.exists(text):
        raise FileNotFoundError(f"no such object: {text}")
    return fs.open(text, compression_type=_uncompressed())


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    with open_read(path) as fh:
        return fh.read()


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def exists(path: str | os.PathLike[str]) -> bool:
    text = check(path)
    if not is_url(text):
        return os.path.exists(_local(text))
    return bool(_s3io().exists(text) if scheme_of(text) == "s3" else _filesystems().exists(text))


def is_file(path: str | os.PathLike[str]) -> bool:
    """A file (local) or an object (URL) at `path`."""
    text = check(path)
    return os.path.isfile(_local(text)) if not is_url(text) else exists(text)


def size(path: str | os.PathLike[str]) -> int:
    """Bytes in the file or object (`FileSystems` has no `size`: the URL's own file system answers)."""
    text = check(path)
    if not is_url(text):
        return os.path.getsize(_local(text))
    if scheme_of(text) == "s3":
        return int(_s3io().size(text))
    return int(_filesystems().get_filesystem(text).size(text))


def glob(pattern: str) -> list[str]:
    """The files matching `pattern` (`*` within a folder, `**` across folders), sorted; none is an empty list."""
    text = check(pattern)
    if not is_url(text):
        return sorted(p for p in _glob.glob(_local(text), recursive=True) if os.path.isfile(p))
    result = _filesystems().match([text])[0]
    return sorted(m.path for m in result.metadata_list)


def list_files(folder: str) -> list[str]:
    """Every file under `folder`, at any depth, sorted (an absent folder has none)."""
    if not is_url(folder):
        root = _local(folder)
        out = []
        for dirpath, _, filenames in os.walk(root):
            out += [os.path.join(dirpath, f) for f in filenames]
        return sorted(out)
    return glob(join(folder, "**"))


# --- writing ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file to write `path` with: whole or nothing.

    Local: a temporary file in the target's folder (created if needed), renamed over the target when the block
    ends without an error. URL: the bytes are spooled locally (memory, then a temporary file past 64 MiB) and
    uploaded as one object only when the block ends without an error, so a failed writer leaves no object (an
    upload opened at once would be completed, half-written, by the close that follows the error).
    """
    text = check(path)
    if is_url(text):
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
            yield spool  # type: ignore[misc]
            nbytes = spool.tell()
            spool.seek(0)
            if scheme_of(text) == "s3" and nbytes < S3_SINGLE_PUT_BYTES:
                _s3_put(text, spool)
                return
            out = (
                _s3io().open(text, "wb")
                if scheme_of(text) == "s3"
                else _filesystems().create(text, compression_type=_uncompressed())
            )
            with out:
                shutil.copyfileobj(spool, out, 1 << 20)
        return
    target = _local(text)
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)[:40]}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    with open_write(path) as fh:
        fh.write(data)
    return os.fspath(path)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> str:
    return write_bytes(path, text.encode(encoding))


def makedirs(path: str | os.PathLike[str]) -> None:
    """Create a local folder (and parents); object stores have no folders, so a URL is a no-op."""
    text = check(path)
    if not is_url(text):
        os.makedirs(_local(text), exist_ok=True)


def delete(paths: Iterable[str]) -> None:
    """Delete files or objects; ones already gone are fine."""
    urls = []
    for path in paths:
        text = check(path)
        if is_url(text):
            urls.append(text)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_local(text))
    urls = [u for u in urls if exists(u)]
    if urls:
        _filesystems().delete(urls)


def delete_tree(folder: str) -> None:
    """Delete a folder (local) or every object under a prefix (URL); an absent one is fine."""
    text = check(folder)
    if not is_url(text):
        shutil.rmtree(_local(text), ignore_errors=True)
        return
    delete(list_files(text))


def move(src: str, dst: str) -> None:
    """Move one file: `os.replace` locally (atomic, parents created), copy then delete on an object store."""
    check(src), check(dst)
    if not is_url(src) and not is_url(dst):
        os.makedirs(os.path.dirname(_local(dst)) or ".", exist_ok=True)
        os.replace(_local(src), _local(dst))
        return
    if is_url(src) and is_url(dst) and scheme_of(src) == scheme_of(dst):
        _filesystems().rename([src], [dst])
        return
    with open_read(src) as fh, open_write(dst) as out:
        shutil.copyfileobj(fh, out)
    delete([src])


def copy_to_local(src: str, dst: str) -> int:
    """Copy `src` (path or URL) to the local file `dst` atomically; returns the bytes copied."""
    with open_read(src) as fh, open_write(dst) as out:
        shutil.copyfileobj(fh, out, 1 << 20)
        return out.tell()
