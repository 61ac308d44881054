"""The one function that decides which frames a model sees: `sample_frames` (videos) and `load_image`.

The teacher, the grader's rollouts, the clip tool, SFT and DGRPO all call these, so that a record means the
same thing when it is built, graded and trained on. The rules are VITAL's on Qwen2.5-VL (docs/papers.md):

- Whole video (`start`/`end` None): Qwen's `smart_nframes`, n = clamp(duration * fps, min_frames,
  max_frames) floored to an even number (Qwen2.5-VL packs frames in pairs) and never more than the video
  has; the frames are spread evenly over the video like qwen-vl-utils' `linspace(0, total - 1, n)`.
  At a constant frame rate (every time stamp within `CFR_SLACK` of an even grid: millisecond-rounded webm
  stamps and decord's float32 count as constant) the indices ARE qwen-vl-utils' `torch.linspace(0, total - 1,
  n).round()`, computed by the same torch call (float32, so very long videos round as qwen-vl-utils does).
  At a variable frame rate the targets are the middles of the first and last frames and n - 1 equal steps
  between, and each takes the frame showing at that time: the frames stay evenly spaced in time, not in
  index (at a constant rate and exact time stamps that is the same choice; with rounded stamps a target that
  falls within the rounding of a frame boundary could take the neighbour, hence the index rule there).
- Key frames (`budget.keyframe_snap`, whole video only): when the targets are at least a group of pictures
  apart, so that every target costs a seek and the decoding of its GOP up to it, a target whose frame lies
  within `keyframe_snap` of the spacing (a quarter by default) of a key frame takes the key frame instead,
  which decodes alone. The count, size and order stay qwen-vl-utils'; the times reported (and stamped) are
  those of the frames actually taken, so a snapped frame is up to a quarter-step off the even grid, never
  mislabelled. `keyframe_snap=0` gives qwen-vl-utils' frames exactly. Windows are never snapped.
- A window (the clip tool's `get_video_clip_frame(start, end)`): resampled at `fps` (2 fps) from `start`,
  n from the same rule on the window's length and frame count, spread evenly when the rule caps it (at
  `max_frames`) or rounds it; 0 <= start < end <= duration is required and never clamped.
- `times[i]` is the presentation time of the frame actually decoded (from the container's time stamps, never
  index / fps, which is wrong for variable-frame-rate video), and the frame chosen for a target time is the
  one showing at that time.
- Every frame is resized to Qwen's `smart_resize` size (sides multiples of `budget.factor`, 28 for Qwen2.5-VL and 32
  for Qwen3-VL, pixels within the budget; VITAL uses max_pixels 64*28*28, about 224x224: 64 tokens a frame) and
  carries its time stamp ("12.50s", bottom right) when `budget.overlay` is set. `budget.resize="decoder"` (the
  default) scales inside the decoder (bicubic swscale), so no full-size frame is ever built; the pixels differ from
  qwen-vl-utils' by 1-5 levels on average, more on sharp edges (docs/model.md has the measurements).
  `resize="reference"` decodes at the native size and resizes with qwen-vl-utils' own call (torchvision bicubic,
  antialias, on uint8 frames): with decord the pixels equal qwen-vl-utils' exactly, at the cost of full-size decoding
  (`reference_resize`).

Decoding (PyAV, then decord, then ffmpeg: `frame_decode.DEFAULT_ORDER`) is in `frame_decode`, the overlay in
`frame_overlay`, the cache in `frame_cache`. Failures raise `FrameError` with the probe's reason codes, or
`bad_window`.

Paths are local files; a URL (`s3://...`) is staged to the worker's scratch disk first (`media_staging`) and held
there while it is decoded, its `Frames.path` then naming the scratch copy (frames are never written out).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mtvr_data import storage
from mtvr_data.frame_cache import FrameCache
from mtvr_data.frame_decode import (
    DecodeFailed,
    FrameError,
    FrameSource,
    SourceFacts,
    classify,
    open_source,
    read_facts,
    stat_video,
)
from mtvr_data.frame_overlay import draw_timestamp_inplace
from mtvr_data.media_staging import MediaUnavailable, acquire_media
from mtvr_data.video_probe import probe_image

log = logging.getLogger(__name__)

__all__ = [
    "FrameBudget",
    "FrameCache",
    "budget_fingerprint",
    "FrameError",
    "FramePerturbation",
    "Frames",
    "load_image",
    "perturb_frames",
    "plan_frames",
    "reference_resize",
    "sample_frames",
    "smart_nframes",
    "smart_resize",
]

#: Qwen2.5-VL: 14 px patches merged 2x2, so frame sides are multiples of 28; frames go in pairs.
FACTOR = 28
FRAME_FACTOR = 2
MAX_RATIO = 200
#: Time stamps are compared with this slack (decord's are float32): a target within it of a frame's start
#: counts as showing that frame, and a window may end this far past the duration (rounding, not clamping).
TIME_EPS = 1e-4
END_SLACK = 1e-3
#: Added to duration * fps before flooring: durations come from millisecond-rounded time stamps (a 10 s webm
#: at 24 fps ends at 9.999 s) and window lengths from float arithmetic, and 19.998 must count as 20 frames.
COUNT_SLACK = 0.01
#: A video is at a constant frame rate when every frame starts within this many seconds of an even grid (plus
#: float32's rounding of decord's stamps, and never more than a quarter frame): millisecond time stamps (webm)
#: are up to 0.5 ms off, so a frame is up to 1 ms off the line through the first and last.
CFR_SLACK = 1.5e-3
#: `FrameBudget.resize`: scale inside the decoder, or decode at the native size and resize as qwen-vl-utils does.
RESIZE_MODES = ("decoder", "reference")
#: Reference resizing reads and resizes decord's frames this many at a time, so that only a few full-size frames
#: are held at once.
RESIZE_CHUNK = 8


@dataclass(frozen=True, slots=True)
class FrameBudget:
    """How many frames, how large, and whether to stamp them. Hashable: part of the cache key."""

    fps: float = 2.0  # sampling rate (frames per second of video)
    max_frames: int = 64
    min_frames: int = 4
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 64 * 28 * 28  # per frame; VITAL's ~224x224
    overlay: bool = True  # draw the frame's time stamp, e.g. "12.50s", bottom right
    #: Whole video only: a frame within this fraction of the grid's spacing of a key frame is replaced by the
    #: key frame (decoded without its GOP), when the spacing is at least the typical key-frame interval.
    keyframe_snap: float = 0.25
    #: "decoder": scaled while decoding (fast, no full-size frame; 1-5 levels from qwen-vl-utils on average).
    #: "reference": decoded at the native size and resized by qwen-vl-utils' torchvision call (its exact pixels
    #: with decord), for parity with a checkpoint trained on qwen-vl-utils' frames.
    resize: str = "decoder"
    #: The side in pixels of one visual token (patch x spatial merge): frame sides are multiples of it. Qwen2.5-VL's
    #: 28 by default; a model family sets its own with its pixel limits (`model.families`), so that a budget keeps
    #: its number of tokens per frame on every family (64 tokens: 64*28*28 pixels here, 64*32*32 on Qwen3-VL).
    factor: int = FACTOR

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"factor must be a positive number of pixels, not {self.factor!r}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, not {self.fps}")
        if self.max_frames < 1 or self.min_frames < 1:
            raise ValueError("max_frames and min_frames must be >= 1")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError("need 0 < min_pixels <= max_pixels")
        if not 0 <= self.keyframe_snap < 0.5:  # below half a step, two targets never take the same key frame
            raise ValueError(f"keyframe_snap must be in [0, 0.5), not {self.keyframe_snap}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, not {self.resize!r}")


def budget_fingerprint(budget: FrameBudget) -> dict[str, object]:
    """The budget as a JSON-able dict for cache keys. `factor` is left out at Qwen2.5-VL's 28 (the field came after
    the first builds), so the keys of every existing Qwen2.5-VL build stay what they were."""
    data = dataclasses.asdict(budget)
    if data["factor"] == FACTOR:
        del data["factor"]
    return data


@dataclass(slots=True)
class Frames:
    """Sampled frames and where they come from. From a `FrameCache` the array is shared and read-only."""

    frames: np.ndarray = field(repr=False)  # uint8 [T, H, W, 3], RGB, H and W multiples of budget.factor
    times: list[float]  # seconds from the START OF THE VIDEO of each frame (its presentation time)
    sample_fps: float  # frames per second of the sampled sequence (Qwen2.5-VL's temporal positions)
    start: float  # the window that was sampled (0..duration for the whole video)
    end: float
    path: str

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


PERTURBATIONS = ("noise", "mask")


@dataclass(frozen=True, slots=True)
class FramePerturbation:
    """A deterministic change to sampled frames (DeepVideo-R1's "harder" sample: train/augment.py).

    `noise`: i.i.d. Gaussian noise on every pixel of every frame, `strength` = its standard deviation in 8-bit
    pixel levels (0-255), clipped back into range. `mask`: `strength` = the fraction of frames blacked out
    (at least one), chosen at random. `seed` fixes the draw, so the rollout and the training forward of one
    augmented sample see the same frames. Applied after the cache: cached frames are never perturbed.
    """

    kind: str
    strength: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in PERTURBATIONS:
            raise ValueError(f"perturbation kind must be one of {PERTURBATIONS}, not {self.kind!r}")
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"perturbation strength must be a finite number >= 0, not {self.strength}")
        if self.kind == "mask" and self.strength > 1:
            raise ValueError(f"a mask strength is a fraction of frames in [0, 1], not {self.strength}")


def perturb_frames(frames: Frames, perturbation: FramePerturbation | None) -> Frames:
    """`frames` with the perturbation applied to a copy of the pixels (times, window and path unchanged)."""
    if perturbation is None or perturbation.strength == 0:
        return frames
    rng = np.random.default_rng(perturbation.seed)
    pixels = frames.frames
    if perturbation.kind == "noise":
        noisy = pixels.astype(np.float32) + rng.normal(0.0, perturbation.strength, size=pixels.shape)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    else:
        count = len(pixels)
        masked = min(count, max(1, round(perturbation.strength * count)))
        out = pixels.copy()
        out[rng.choice(count, size=masked, replace=False)] = 0
    return Frames(
        frames=out,
        times=list(frames.times),
        sample_fps=frames.sample_fps,
        start=frames.start,
        end=frames.end,
        path=frames.path,
    )


# --- the rules ------------------------------------------------------------------------------------------------


def smart_resize(
    height: int, width: int, *, factor: int = FACTOR, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen2.5-VL's resize rule: sides multiples of `factor`, h*w within [min_pixels, max_pixels], the aspect
    ratio kept as well as possible. Equal to qwen-vl-utils' `smart_resize` (Python's round included), except
    that no side is ever 0 (qwen-vl-utils returns 0 for a side of extreme-aspect frames).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
        if h_bar * w_bar > max_pixels:  # only when a side was lifted to `factor`: shrink the other one
            if h_bar >= w_bar:
                h_bar = max(factor, max_pixels // w_bar // factor * factor)
            else:
                w_bar = max(factor, max_pixels // h_bar // factor * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_nframes(duration: float, available: int, budget: FrameBudget) -> int:
    """Qwen's frame count: clamp(duration * fps, min_frames, max_frames), floored to even, <= `available`.

    Qwen computes duration as frames / average fps; here it is the end of the last frame (right for variable
    frame rates too), with `COUNT_SLACK` for the rounding of time stamps.
    """
    if available <= 1:
        return max(0, available)
    min_frames = math.ceil(budget.min_frames / FRAME_FACTOR) * FRAME_FACTOR
    max_frames = math.floor(min(budget.max_frames, available) / FRAME_FACTOR) * FRAME_FACTOR
    n = min(max(duration * budget.fps + COUNT_SLACK, min_frames), max_frames, available)
    return max(FRAME_FACTOR, math.floor(n / FRAME_FACTOR) * FRAME_FACTOR)


def plan_frames(
    pts: np.ndarray,
    duration: float,
    *,
    start: float | None,
    end: float | None,
    budget: FrameBudget,
    keyframes: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float, float]:
    """(frame indices, sample_fps, start, end) for a video whose frames start at `pts` (sorted seconds).

    `keyframes`: indices of the key frames (into `pts`), for `budget.keyframe_snap` on the whole video;
    None (or an empty array) snaps nothing.
    Pure: the sampling rules without any decoding, so that they can be tested and reused on their own.
    Raises FrameError("bad_window") for a window outside 0 <= start < end <= duration.
    """
    count = len(pts)
    if start is None and end is None:
        n = smart_nframes(duration, count, budget)
        ends = np.append(pts[1:], duration)
        middles = (pts + ends) / 2
        targets = np.linspace(middles[0], middles[-1], n) if n > 1 else middles[:1]
        indices = qwen_indices(count, n) if n > 1 and constant_rate(pts) else _showing(pts, targets)
        if n > 1 and budget.keyframe_snap > 0 and keyframes is not None and len(keyframes) > 1:
            step = float(targets[1] - targets[0])
            indices = _snap_to_keyframes(pts, indices, np.asarray(keyframes), step, budget.keyframe_snap * step)
        return indices, n / duration, 0.0, duration
    lo = 0.0 if start is None else float(start)
    hi = duration if end is None else float(end)
    _check_window(lo, hi, duration)
    hi = min(hi, duration)
    first = int(_showing(pts, np.array([lo]))[0])
    last = max(first, int(np.searchsorted(pts, hi - TIME_EPS, side="left")) - 1)
    n = smart_nframes(hi - lo, last - first + 1, budget)
    targets = lo + np.arange(n) * ((hi - lo) / n)
    return _showing(pts, targets), n / (hi - lo), lo, hi


def constant_rate(pts: np.ndarray) -> bool:
    """Whether frames starting at `pts` (sorted seconds) are at a constant rate, up to the rounding of their time
    stamps: each within `CFR_SLACK` (plus float32's rounding; at most a quarter frame) of an even grid."""
    count = len(pts)
    if count < 3:
        return True
    step = float(pts[-1] - pts[0]) / (count - 1)
    if step <= 0:
        return False
    slack = min(0.25 * step, CFR_SLACK + float(np.abs(pts).max()) * 2.0**-23)
    grid = float(pts[0]) + np.arange(count) * step
    return bool(np.abs(pts - grid).max() <= slack)


def qwen_indices(total: int, n: int) -> np.ndarray:
    """qwen-vl-utils' whole-video indices, `torch.linspace(0, total - 1, n).round().long()`, by that very call:
    torch computes in float32, which for n >= 128 and tens of thousands of frames rounds some indices differently
    from exact arithmetic, and parity means its rounding. torch is a dependency; imported on first use."""
    import torch

    return torch.linspace(0, total - 1, n).round().long().numpy().astype(np.intp)


def _snap_to_keyframes(
    pts: np.ndarray, indices: np.ndarray, keyframes: np.ndarray, step: float, tolerance: float
) -> np.ndarray:
    """`indices` with each frame replaced by the nearest key frame when that is within `tolerance` seconds of it.

    Only when the grid's `step` is at least the median key-frame interval: closer targets share GOPs, which a
    decoder reads through once anyway, so snapping would move frames for nothing. Order and distinctness are
    kept (a snap that would reach a neighbour's frame is not taken).
    """
    keys = np.unique(keyframes[(keyframes >= 0) & (keyframes < len(pts))])
    if len(keys) < 2 or step < float(np.median(np.diff(pts[keys]))):
        return indices
    key_pts = pts[keys]
    wanted = pts[indices]
    after = np.clip(np.searchsorted(key_pts, wanted), 0, len(keys) - 1)
    before = np.clip(after - 1, 0, len(keys) - 1)
    nearest = np.where(np.abs(key_pts[before] - wanted) <= np.abs(key_pts[after] - wanted), before, after)
    candidates = keys[nearest]
    close = np.abs(pts[candidates] - wanted) <= tolerance + TIME_EPS
    out = indices.copy()
    for i in np.flatnonzero(close):
        low = out[i - 1] if i > 0 else -1
        high = indices[i + 1] if i + 1 < len(indices) else len(pts)
        if low < candidates[i] < high:
            out[i] = candidates[i]
    return out


def _showing(pts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame showing at each target time: the last frame starting at or before it."""
    return np.clip(np.searchsorted(pts, targets + TIME_EPS, side="right") - 1, 0, len(pts) - 1)


def _check_window(start: float, end: float, duration: float | None, *, partial: bool = False) -> None:
    """bad_window unless start and end are finite and 0 <= start < end (<= duration, when known).

    `partial`: checked before the file is opened, where a missing end is passed as +inf.
    """
    for name, value in (("start", start), ("end", end)):
        if partial and value == math.inf:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise FrameError("bad_window", f"{name} must be a finite number of seconds, not {value!r}.")
    if start < 0:
        raise FrameError("bad_window", f"start {start} is before the start of the video.")
    if not start < end:
        raise FrameError("bad_window", f"start {start} must be before end {end}.")
    if duration is not None and end > duration + END_SLACK:
        raise FrameError("bad_window", f"end {end} is past the end of the video ({duration:.2f} s).")


# --- videos ---------------------------------------------------------------------------------------------------


def sample_frames(
    path: str | os.PathLike[str],
    *,
    start: float | None = None,
    end: float | None = None,
    budget: FrameBudget = FrameBudget(),
    cache: FrameCache | None = None,
    perturbation: FramePerturbation | None = None,
) -> Frames:
    """The frames a model sees of a video, or of its window [start, end] seconds (see the module docstring).

    Raises FrameError: the probe's reason codes for a bad file, `bad_window` for a window outside the video.
    With a `cache`, a file is opened once for all its windows and a repeated request is not decoded again.
    `perturbation` (DA-Aug's harder samples) changes a copy of the result, never the cached clean frames; with a
    `cache` the perturbed copy is cached too (under its own key), so a sample's G rollouts and their training
    encodings draw the noise once.
    """
    return sample_frames_with(path, start=start, end=end, budget=budget, cache=cache, perturbation=perturbation)


def sample_frames_with(
    path: str | os.PathLike[str],
    *,
    start: float | None = None,
    end: float | None = None,
    budget: FrameBudget = FrameBudget(),
    cache: FrameCache | None = None,
    backend: str | None = None,
    perturbation: FramePerturbation | None = None,
) -> Frames:
    """`sample_frames` with a choice of decoder (`"pyav"`, `"decord"`, `"ffmpeg"`; None = the first of
    `frame_decode.DEFAULT_ORDER` that opens the file), for tests and benchmarks that compare them on files all can
    read. A decoder that opens a file but fails while decoding it is retried with ffmpeg."""
    if storage.is_url(path):
        with _staged(path) as local:
            return sample_frames_with(
                local, start=start, end=end, budget=budget, cache=cache, backend=backend, perturbation=perturbation
            )
    p = Path(path)
    try:
        _check_window(0.0 if start is None else start, math.inf if end is None else end, None, partial=True)
    except FrameError as exc:
        exc.path = str(p)
        raise
    st = stat_video(p)
    file_key = (os.path.abspath(p), st.st_mtime_ns, st.st_size)
    result_key = (file_key, start, end, budget, backend)
    if perturbation is not None and perturbation.strength > 0:
        perturbed_key = (result_key, perturbation)
        if cache is not None and (hit := cache.get_result(perturbed_key)) is not None:
            return hit
        clean = sample_frames_with(p, start=start, end=end, budget=budget, cache=cache, backend=backend)
        perturbed = perturb_frames(clean, perturbation)
        return cache.put_result(perturbed_key, perturbed) if cache is not None else perturbed
    if cache is not None and (hit := cache.get_result(result_key)) is not None:
        return hit
    if cache is not None:
        facts = cache.get_or_open("facts", file_key, lambda: read_facts(p), lambda _: 256)
    else:
        facts = read_facts(p)
    size = _output_size(p, facts, budget)
    # The decoder scales to the output size, or (reference) decodes the native size for qwen-vl-utils' resize.
    height, width = size if budget.resize == "decoder" else (facts.height, facts.width)
    if cache is not None:
        source = cache.get_or_open(
            "source",
            (file_key, width, height, backend),
            lambda: open_source(p, width, height, facts, backend),
            lambda s: s.nbytes,
        )
    else:
        source = open_source(p, width, height, facts, backend)
    frames = _sample(p, source, start, end, budget, facts, size)
    return cache.put_result(result_key, frames) if cache is not None else frames


def _output_size(path: Path, facts: SourceFacts, budget: FrameBudget) -> tuple[int, int]:
    try:
        return smart_resize(
            facts.height, facts.width, factor=budget.factor, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels
        )
    except ValueError as exc:
        raise FrameError("video_unreadable", str(exc), str(path)) from None


def _sample(
    path: Path,
    source: FrameSource,
    start: float | None,
    end: float | None,
    budget: FrameBudget,
    facts: SourceFacts,
    size: tuple[int, int],
) -> Frames:
    try:
        indices, sample_fps, lo, hi = plan_frames(
            source.pts, source.duration, start=start, end=end, budget=budget, keyframes=source.keyframes
        )
    except FrameError as exc:
        exc.path = str(path)
        raise
    distinct, inverse = np.unique(indices, return_inverse=True)
    with source.lock:
        try:
            decoded = _read(source, distinct.tolist(), size)
        except DecodeFailed as exc:
            if source.backend == "ffmpeg":
                raise classify(path, str(exc)) from exc
            log.info("%s: %s; trying ffmpeg", path, exc)
            fallback = open_source(path, source.width, source.height, facts, "ffmpeg")
            try:
                decoded = _read(fallback, distinct.tolist(), size)
            except DecodeFailed as exc2:
                raise classify(path, f"{exc2}; {exc}") from exc2
    frames = decoded if len(distinct) == len(indices) else decoded[inverse]
    times = [round(float(source.pts[i]), 4) for i in indices]
    if budget.overlay:
        for frame, seconds in zip(frames, times, strict=True):
            draw_timestamp_inplace(frame, seconds)
    return Frames(frames=frames, times=times, sample_fps=sample_fps, start=lo, end=hi, path=str(path))


def _read(source: FrameSource, indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """The frames at `indices`, `size` (height, width): as decoded, or resized by `reference_resize` when the
    source decodes at another (the native) size. decord's and PyAV's are read `RESIZE_CHUNK` at a time, so that only
    a few full-size frames are held at once; ffmpeg's in one read (its runs of frames are one process each)."""
    if (source.height, source.width) == size:
        return source.read(indices)
    out = np.empty((len(indices), *size, 3), dtype=np.uint8)
    chunk = max(1, len(indices)) if source.backend == "ffmpeg" else RESIZE_CHUNK
    for lo in range(0, len(indices), chunk):
        part = indices[lo : lo + chunk]
        out[lo : lo + len(part)] = reference_resize(source.read(part), *size)
    return out


def reference_resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, h, w, 3] frames resized to height x width exactly as qwen-vl-utils' `fetch_video` does:
    `torchvision.transforms.functional.resize(uint8 TCHW, [height, width], BICUBIC, antialias=True)`, whose
    uint8 result it then casts to float (so its values are these integers)."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    resized = tvf.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


# --- images ---------------------------------------------------------------------------------------------------


def load_image(
    path: str | os.PathLike[str],
    *,
    budget: FrameBudget = FrameBudget(),
    perturbation: FramePerturbation | None = None,
) -> Frames:
    """An image (Video-R1's image rows) through the same pixel rule: T = 1, times [0.0], no overlay.

    Resized like qwen-vl-utils' `fetch_image` (RGBA on white, bicubic). sample_fps is 0.0: an image has none.
    `perturbation` applies as to a one-frame video.
    """
    if storage.is_url(path):
        with _staged(path) as local:
            return load_image(local, budget=budget, perturbation=perturbation)
    p = Path(path)
    try:
        with Image.open(p) as img:
            image = _to_rgb(img)
    except Exception as exc:  # Pillow raises many types; the probe says which reason it is
        result = probe_image(p)
        reason = result.reason or "video_unreadable"
        raise FrameError(reason, result.detail or f"Pillow cannot load it ({exc}).", str(p)) from None
    width, height = image.size
    try:
        h_bar, w_bar = smart_resize(
            height, width, factor=budget.factor, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels
        )
    except ValueError as exc:
        raise FrameError("video_unreadable", str(exc), str(p)) from None
    if (w_bar, h_bar) != (width, height):
        image = image.resize((w_bar, h_bar), resample=Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.uint8)[None].copy()
    frames = Frames(frames=array, times=[0.0], sample_fps=0.0, start=0.0, end=0.0, path=str(p))
    return perturb_frames(frames, perturbation)


@contextlib.contextmanager
def _staged(url: str | os.PathLike[str]) -> Iterator[str]:
    """The scratch copy of a URL (`media_staging`), held while it is decoded; a failed download is a `FrameError`.

    Callers that pass local paths (the rollout stages its sample's video once and binds the clip tool to the copy)
    never come here; this makes a URL given straight to the sampler work too, at one lease per call.
    """
    try:
        lease = acquire_media(url)
    except MediaUnavailable as exc:
        raise FrameError(exc.reason, exc.detail, os.fspath(url)) from None
    with lease:
        yield lease.path


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white as qwen-vl-utils does for RGBA."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[3])
        return background
    img.load()
    return img.convert("RGB")
