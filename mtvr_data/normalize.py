"""One source to checked samples: read the native annotations, probe each video once, validate spans.

This is the per-record logic behind `mtvr samples` and the Beam read/probe/validate transforms, kept
free of Beam so both call the same functions. Every input ends up counted: as a kept sample or as a
`SampleError` with the stage (read, probe) and the reason.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mtvr_data import storage
from mtvr_data.adapters.base import AdapterError, SourceAdapter, fit_span
from mtvr_data.schema import Sample, SampleError
from mtvr_data.video_probe import ProbeResult, probe_media

log = logging.getLogger(__name__)

#: Annotated and probed durations further apart than this are recorded in the sample's meta: the file
#: on disk may be a different cut of the video than the one the spans were written for.
DURATION_MISMATCH_S = 1.0


def resolve_media(video_root: str | os.PathLike[str] | None, video: str) -> str:
    """Where a sample's media lies: `video` under `video_root`, unless it is absolute or a URL already.

    A string, never a `Path`: a URL root (`s3://bucket/videos`) is joined as text (`storage.join`), since `Path`
    would turn it into the local folder `s3:/bucket/videos`. Decoders need a local file: `media_staging` makes
    one of a URL. The sample itself keeps its root-relative `video`; this is only ever the path to read.
    """
    if video_root is None or storage.is_url(video) or os.path.isabs(video):
        return video if storage.is_url(video) else str(Path(video))
    root = os.fspath(video_root)
    if storage.is_url(root) or root.startswith("file://"):
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


def apply_probe(sample: Sample, probe: ProbeResult) -> Sample | SampleError:
    """The sample with its media facts filled in from `probe`, or the reason it cannot be used.

    Spans are checked against the duration of the file we actually have (with the adapters' small
    overshoot tolerance): a span past the real end is `span_outside_video`, not a silent clamp.
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
            out = apply_probe(item, cache.get(resolve_media(video_root, item.video), item.modality))
        if isinstance(out, SampleError):
            summary.errors[(out.stage, out.reason)] += 1
        else:
            summary.kept += 1
        yield out
    summary.records = adapter.counts["records"]
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
