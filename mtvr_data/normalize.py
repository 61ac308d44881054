"""One source to checked samples: read the native annotations, probe each video once, validate spans.

This is the per-record logic behind `mtvr samples` and the Beam read/probe/validate transforms, kept
free of Beam so both call the same functions. Every input ends up counted: as a kept sample or as a
`SampleError` with the stage (read, probe) and the reason.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtvr_data import storage
from mtvr_data.adapters.base import AdapterError, SourceAdapter, fit_span
from mtvr_data.schema import Sample, SampleError
from mtvr_data.video_probe import ProbeResult, probe_media

log = logging.getLogger(__name__)

#: Annotated and probed durations further apart than this are recorded in the sample's meta: the file
#: on disk may be a different cut of the video than the one the spans were written for.
DURATION_MISMATCH_S = 1.0


#: The reason code of a sample whose media path leads outside its source's video root (`MediaPathError`).
PATH_OUTSIDE_ROOT = "path_outside_root"


class MediaPathError(ValueError):
    """A sample's media path that leads outside its source's video root: `..` past the root, a symlink out of it,
    or (unless the source allows them) an absolute path or URL. Nothing at that path is ever opened."""

    reason = PATH_OUTSIDE_ROOT

    def __init__(self, video: str, root: str, why: str) -> None:
        self.video, self.root, self.detail = video, root, f"{video!r} {why} (video root {root})"
        super().__init__(f"{PATH_OUTSIDE_ROOT}: {self.detail}")


class MediaRoot(str):
    """A video root (local folder or URL) that carries its source's `allow_absolute_paths` switch, so the switch
    travels wherever the root does (`BuildConfig.video_roots` -> probe, model stages) and `resolve_media` reads it.
    """

    allow_absolute: bool

    def __new__(cls, root: str | os.PathLike[str], *, allow_absolute: bool = False) -> MediaRoot:
        out = super().__new__(cls, os.fspath(root))
        out.allow_absolute = bool(allow_absolute)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_media_root, (str(self), self.allow_absolute))

    def __repr__(self) -> str:
        return f"MediaRoot({str(self)!r}, allow_absolute={self.allow_absolute})"


def _media_root(root: str, allow_absolute: bool) -> MediaRoot:
    return MediaRoot(root, allow_absolute=allow_absolute)


def _is_absolute(video: str) -> bool:
    return storage.is_url(video) or video.startswith("file://") or os.path.isabs(video)


def _inside(root: str, target: str) -> bool:
    """Whether local `target` lies under `root` once `..` and every symlink of both are resolved."""
    real_root, real_target = os.path.realpath(root), os.path.realpath(target)
    try:
        return os.path.commonpath([real_root, real_target]) == real_root
    except ValueError:  # different drives
        return False


def resolve_media(video_root: str | os.PathLike[str] | None, video: str, *, allow_absolute: bool | None = None) -> str:
    """Where a sample's media lies: `video` under `video_root`. The one function that decides whether a path may
    be read at all: it raises `MediaPathError` (reason `path_outside_root`) for a path that leads outside the root.

    - A relative path must stay under the root: for a local root, `os.path.realpath` of root and target (`..` and
      symlinks resolved) must share the root; for a URL root, the key's `..` segments are normalised as text and
      may not climb above the root. Paths are checked as text and links, no file is opened.
    - An absolute path or a URL is refused unless `allow_absolute` (default: the root's own switch, a `MediaRoot`
      made from a source's `allow_absolute_paths: true`); then it is read as written.
    - With no root (`None`) there is nothing to contain: the path is used as written.

    A string, never a `Path`: a URL root (`s3://bucket/videos`) is joined as text (`storage.join`), since `Path`
    would turn it into the local folder `s3:/bucket/videos`. Decoders need a local file: `media_staging` makes
    one of a URL. The sample itself keeps its root-relative `video`; this is only ever the path to read.
    """
    if video_root is None:
        return video if storage.is_url(video) else str(Path(video))
    root = os.fspath(video_root)
    if allow_absolute is None:
        allow_absolute = bool(getattr(video_root, "allow_absolute", False))
    if _is_absolute(video):
        if not allow_absolute:
            raise MediaPathError(video, root, "is an absolute path or URL (set allow_absolute_paths to read it)")
        return video if storage.is_url(video) else str(Path(video))
    if storage.is_url(root):
        key = posixpath.normpath(video.replace("\\", "/"))
        if key == ".." or key.startswith("../"):
            raise MediaPathError(video, root, "climbs above the root")
        return storage.join(root, key)
    local_root = root[len("file://") :] if root.startswith("file://") else root
    if not _inside(local_root, os.path.join(local_root, video)):
        raise MediaPathError(video, root, "resolves outside the root ('..' or a symlink)")
    if root.startswith("file://"):
        return storage.join(root, video)
    return str(Path(root) / video)


@dataclass
class ProbeCache:
    """Probe results by path, so a video shared by many questions is opened once (and a URL's downloaded once:
    `probe_media` stages it, and a failed download is a failed `ProbeResult`, i.e. a dead letter)."""

    results: dict[str, ProbeResult] = field(default_factory=dict)

    def get(self, path: str | os.PathLike[str], modality: str) -> ProbeResult:
        key = os.fspath(path)
        if key not in self.results:
            self.results[key] = probe_media(key, modality)
        return self.results[key]


def apply_probe(sample: Sample, probe: ProbeResult, *, fit_windows: bool = True) -> Sample | SampleError:
    """The sample with its media facts filled in from `probe`, or the reason it cannot be used.

    `fit_windows=False` (`mtvr eval`): the windows are a benchmark's published ground truth and stay as they are,
    whatever the probed length; only the media facts are filled in. A score is computed against the published
    windows; the probed length decides only which frames the model sees.

    Spans are checked against the duration of the file we actually have (with the adapters' small
    overshoot tolerance): a span past the real end is `span_outside_video`, not a silent clamp. A window
    brought back to the real end is recorded: the windows as they were go to `meta["original_windows"]`
    (unless the adapter already put the published ones there). The id is not changed.
    """
    origin = sample.meta_dict.get("origin", sample.id)
    if not probe.ok or probe.info is None:
        return SampleError(
            source=sample.source,
            location=origin,
            reason=probe.reason or "video_unreadable",
            detail=f"{sample.video}: {probe.detail}",
            stage="probe",
            raw=sample.id,
        )
    info = probe.info
    meta = sample.meta_dict
    sample.width, sample.height = info.width, info.height
    if sample.modality == "video":
        if sample.duration is not None and abs(sample.duration - info.duration) > DURATION_MISMATCH_S:
            meta["annotated_duration"] = sample.duration
        sample.duration, sample.fps = round(info.duration, 3), round(info.fps, 3)
        if not fit_windows:
            sample.meta = json.dumps(meta, ensure_ascii=False, sort_keys=True)
            return sample
        try:
            windows = [fit_span(w[0], w[1], sample.duration) for w in sample.windows]
        except AdapterError as exc:
            return SampleError(
                source=sample.source,
                location=origin,
                reason=exc.code,
                detail=f"{exc.detail} (probed duration of {sample.video})",
                stage="probe",
                raw=sample.id,
            )
        if windows:
            if windows != [list(w) for w in sample.windows]:
                meta.setdefault("original_windows", [list(w) for w in sample.windows])
            sample.windows, sample.span = windows, list(windows[0])
    sample.meta = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    return sample


@dataclass
class NormalizeSummary:
    """Counts of one normalisation: records read, samples built and kept, errors by stage and reason."""

    source: str
    records: int = 0
    built: int = 0
    kept: int = 0
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    media_ok: int = 0
    media_broken: int = 0
    #: Annotation files that held no record at all (the adapter logs a warning; the summary says so too).
    empty_files: int = 0

    @property
    def num_errors(self) -> int:
        return sum(self.errors.values())

    def render(self) -> str:
        """A one-screen text table for a person."""
        lines = [
            f"{self.source}: {self.records} records read -> {self.built} samples built -> {self.kept} kept, "
            f"{self.num_errors} errors",
            f"  media probed: {self.media_ok} ok, {self.media_broken} broken",
        ]
        if self.empty_files:
            lines.append(f"  WARNING: {self.empty_files} empty annotation file(s): no records to read")
        for (stage, reason), n in sorted(self.errors.items()):
            lines.append(f"  {stage:<6} {reason:<24} {n:>6}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "records": self.records,
            "built": self.built,
            "kept": self.kept,
            "media_ok": self.media_ok,
            "media_broken": self.media_broken,
            "empty_files": self.empty_files,
            "errors": [{"stage": s, "reason": r, "count": n} for (s, r), n in sorted(self.errors.items())],
        }


def normalize(
    adapter: SourceAdapter,
    video_root: str | Path | None,
    *,
    probe: bool = True,
    summary: NormalizeSummary | None = None,
    cache: ProbeCache | None = None,
) -> Iterator[Sample | SampleError]:
    """Samples of `adapter`, probed against the media under `video_root`, and every error on the way.

    With `probe=False` media is not opened (annotation-only checks). Counts go to `summary` if given.
    """
    summary = summary if summary is not None else NormalizeSummary(adapter.name)
    cache = cache if cache is not None else ProbeCache()
    for item in adapter.read():
        if isinstance(item, SampleError):
            summary.errors[(item.stage, item.reason)] += 1
            yield item
            continue
        summary.built += 1
        out: Sample | SampleError = item
        if probe:
            try:
                path = resolve_media(video_root, item.video)
            except MediaPathError as exc:  # refused before any file is opened
                out = SampleError.for_sample(item, "probe", exc.reason, exc.detail)
            else:
                out = apply_probe(item, cache.get(path, item.modality))
        if isinstance(out, SampleError):
            summary.errors[(out.stage, out.reason)] += 1
        else:
            summary.kept += 1
        yield out
    summary.records = adapter.counts["records"]
    summary.empty_files = adapter.counts["empty_files"]
    summary.media_ok = sum(1 for r in cache.results.values() if r.ok)
    summary.media_broken = len(cache.results) - summary.media_ok
    log.info(
        "%s: %d records, %d samples kept, %d errors", adapter.name, summary.records, summary.kept, summary.num_errors
    )


def normalize_to_files(
    *,
    source: str,
    annotations: str | Path,
    videos: str | Path | None,
    out: str | Path,
    errors: str | Path | None = None,
    probe: bool = True,
    options: dict | None = None,
    progress: bool = True,
) -> NormalizeSummary:
    """Normalise one source to `out` (Parquet samples), an errors JSONL file and a summary JSON beside it.

    Errors default to `<out>.errors.jsonl` and the summary to `<out>.summary.json`, so a run leaves
    every input accounted for on disk, not only on the screen.
    """
    from tqdm import tqdm

    from mtvr_data.adapters import make_adapter
    from mtvr_data.parquet_io import write_parquet

    out = Path(out)
    errors_path = Path(errors) if errors else out.with_suffix(".errors.jsonl")
    adapter = make_adapter(source, annotations, **(options or {}))
    summary = NormalizeSummary(source)
    samples: list[Sample] = []
    errors_path.parent.mkdir(parents=True, exist_ok=True)
    with open(errors_path, "w", encoding="utf-8") as err_fh:
        items = normalize(adapter, videos, probe=probe, summary=summary)
        for item in tqdm(items, desc=source, unit=" rows", disable=not progress, leave=False):
            if isinstance(item, SampleError):
                err_fh.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
            else:
                samples.append(item)
    write_parquet(out, samples, kind="sample")
    out.with_suffix(".summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary
