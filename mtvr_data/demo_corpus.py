"""Build the demo corpus: scripted videos, native-format annotations of six sources, and a manifest.

`make demo` and the tests need a corpus that exercises every path of the pipeline (several codecs and
frame rates, a variable-frame-rate file, a file decord cannot open, broken files, malformed records) and
whose answers are known, while no dataset can be downloaded. This module puts `demo_media` and
`demo_annotations` together:

    <out>/videos/...            the media (layout per source: see `demo_annotations`)
    <out>/annotations/<source>/ native annotation files
    <out>/manifest.json         what was built, the events of each video, and what should be rejected and why

It runs in a few seconds on 2 cores and is deterministic: two builds give byte-identical files, as long as
the same ffmpeg and Pillow are used (the imageio-ffmpeg wheel's pinned ffmpeg is preferred for that reason).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mtvr_data import demo_annotations, demo_media
from mtvr_data.demo_media import VideoSpec
from mtvr_data.ffmpeg_bin import ffmpeg_exe, wheel_ffmpeg_exe
from mtvr_data.video_probe import probe_image, probe_video

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
#: A probed duration may differ from the script by this many frames (containers round the last frame).
DURATION_TOLERANCE_FRAMES = 1.5


def corpus_ffmpeg() -> str:
    """The wheel's pinned ffmpeg when installed (reproducible bytes, known encoders), else `ffmpeg_exe()`."""
    return wheel_ffmpeg_exe() or ffmpeg_exe()


def build_demo_corpus(out: Path, *, workers: int = 2, verify: bool = True) -> dict[str, Any]:
    """Write the corpus under `out` (created if needed, known files overwritten) and return its manifest.

    `verify` probes every written file and raises RuntimeError if one differs from its script, since an
    annotation would then state something false about it.
    """
    out = Path(out)
    started = time.perf_counter()
    ffmpeg = corpus_ffmpeg()
    missing = demo_media.required_encoders() - demo_media.available_encoders(ffmpeg)
    if missing:
        raise RuntimeError(
            f"{ffmpeg} lacks the encoders {sorted(missing)} the demo corpus needs; "
            "`pip install imageio-ffmpeg` ships an ffmpeg that has them"
        )
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    # Longest encodes first, so that two workers finish together instead of one waiting on the 4-minute file.
    specs = sorted(demo_media.VIDEOS, key=lambda s: s.num_frames * s.size[0] * s.size[1], reverse=True)
    jobs: list[tuple[str, Callable[[], object]]] = [
        (spec.file, lambda spec=spec: demo_media.encode(ffmpeg, spec, videos)) for spec in specs
    ]
    jobs.append(("broken files", lambda: demo_media.write_broken(ffmpeg, videos)))
    jobs.append(("images", lambda: demo_media.write_images(videos)))
    _run_jobs(jobs, workers)
    if verify:
        _verify(videos)
    sources = demo_annotations.write_all(out)
    manifest = build_manifest(sources, demo_annotations.write_practice(out))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("demo corpus written to %s in %.1f s", out, time.perf_counter() - started)
    return manifest


def _run_jobs(jobs: list[tuple[str, Callable[[], object]]], workers: int) -> None:
    """Run the (ffmpeg-bound) jobs on a thread pool, with a progress bar when tqdm is installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(total=len(jobs), desc="demo corpus", unit="file", disable=None) if tqdm is not None else None
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(job): name for name, job in jobs}
        try:
            for future in as_completed(futures):
                future.result()  # re-raises the first failure
                log.debug("wrote %s", futures[future])
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()


def _verify(videos: Path) -> None:
    problems = []
    for spec in demo_media.VIDEOS:
        result = probe_video(videos / spec.file)
        info = result.info
        if info is None:
            problems.append(f"{spec.file}: {result.reason} ({result.detail})")
            continue
        slack = DURATION_TOLERANCE_FRAMES / spec.avg_fps
        if (
            abs(info.duration - spec.true_duration) > slack
            or (info.width, info.height) != spec.size
            or info.codec != spec.codec
            or abs(info.fps - spec.avg_fps) > 0.01 * spec.avg_fps
        ):
            problems.append(
                f"{spec.file}: probed {info}, scripted {spec.true_duration:.3f} s at "
                f"{spec.avg_fps:.3f} fps, {spec.size}, {spec.codec}"
            )
    for name, reason in demo_media.BROKEN.items():
        result = probe_video(videos / name)
        if result.reason != reason:
            problems.append(f"{name}: probed {result.reason}, expected {reason}")
    for name in (demo_media.SQUARES_IMAGE, demo_media.OCR_IMAGE):
        if not probe_image(videos / name).ok:
            problems.append(f"{name}: not a readable image")
    if problems:
        raise RuntimeError("demo corpus does not match its script:\n  " + "\n  ".join(problems))


def _video_entry(spec: VideoSpec) -> dict[str, Any]:
    return {
        "file": spec.file,
        "duration": round(spec.true_duration, 4),
        "fps": round(spec.avg_fps, 5),
        "num_frames": spec.num_frames,
        "codec": spec.codec,
        "width": spec.size[0],
        "height": spec.size[1],
        "vfr": spec.vfr,
        "events": [
            {"label": e.label, "start": e.start, "end": e.end, "color": f"#{e.color}", "box": list(spec.box(e))}
            for e in spec.events
        ],
        "scenes": [{"label": s.label, "start": s.start, "end": s.end, "color": f"#{s.color}"} for s in spec.scenes],
    }


def _source_entry(s: demo_annotations.SourceFiles) -> dict[str, Any]:
    return {
        "source": s.source,
        "annotations": s.annotations,
        "videos": "videos",
        "aux": s.aux,
        "expected_samples": s.expected_samples,
    }


def build_manifest(
    sources: list[demo_annotations.SourceFiles], practice: demo_annotations.Practice | None = None
) -> dict[str, Any]:
    """manifest.json's content: a pure function of the scripts and what the annotation writers returned.

    `practice` (the generated questions the demo's warm-up SFT trains on, and the learning demo evaluates on) is
    listed apart from `sources`, so the demo's datasets are built from the same six sources as before.
    """
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "sources": [_source_entry(s) for s in sources],
        "videos": [_video_entry(spec) for spec in demo_media.VIDEOS],
        "images": [
            {
                "file": demo_media.SQUARES_IMAGE,
                "width": 320,
                "height": 240,
                "content": f"{demo_media.SQUARES_COUNT} red squares on white",
            },
            {
                "file": demo_media.OCR_IMAGE,
                "width": 320,
                "height": 120,
                "content": f"the text {demo_media.OCR_TEXT!r} in white on dark blue",
            },
        ],
        "broken": [{"file": name, "reason": reason} for name, reason in demo_media.BROKEN.items()],
        "malformed": [
            {"source": bad.source, "location": bad.location, "reason": bad.reason, "detail": bad.detail}
            for s in sources
            for bad in s.malformed
        ],
    }
    if practice is not None:
        manifest["practice"] = {
            "train": [_source_entry(s) for s in practice.train],
            "heldout": [_source_entry(s) for s in practice.heldout],
        }
    return manifest


def main(argv: list[str] | None = None) -> None:
    """`python -m mtvr_data.demo_corpus OUT`: build the corpus and print where it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    manifest = build_demo_corpus(args.out, workers=args.workers)
    print(
        f"{args.out}: {len(manifest['videos'])} videos, {len(manifest['sources'])} sources, "
        f"{len(manifest['malformed'])} malformed records"
    )


if __name__ == "__main__":
    main()
