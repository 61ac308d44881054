"""Frame sampling: Qwen's pixel and frame-count rules, true time stamps, the clip window, the ffmpeg fallback,
the overlay, the cache, and that decoding never builds full-resolution frames."""

from __future__ import annotations

import json
import math
import subprocess
import threading
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtvr_data import demo_media, frame_decode
from mtvr_data.demo_media import VideoSpec
from mtvr_data.ffmpeg_bin import ffmpeg_exe
from mtvr_data.frame_overlay import draw_timestamp_inplace
from mtvr_data.frames import (
    FrameBudget,
    FrameCache,
    FrameError,
    FramePerturbation,
    Frames,
    load_image,
    perturb_frames,
    plan_frames,
    sample_frames,
    sample_frames_with,
    smart_nframes,
    smart_resize,
)

BUDGET = FrameBudget()
PLAIN = FrameBudget(overlay=False)
EXACT = FrameBudget(keyframe_snap=0.0)  # qwen-vl-utils' frames exactly, never a key frame instead
SPECS = {spec.file: spec for spec in demo_media.VIDEOS}


def _video(root: Path, spec: VideoSpec) -> Path:
    return root / "videos" / spec.file


def _frame_starts(spec: VideoSpec) -> np.ndarray:
    """Start time of every frame, from the script (exact fractions, so no rounding of the rate)."""
    if not spec.vfr:
        return np.array([float(Fraction(k) / spec.fps) for k in range(spec.num_frames)])
    starts, offset = [], Fraction(0)
    for rate, seconds in spec.segments:
        count = math.ceil(Fraction(str(seconds)) * rate)
        starts += [float(offset + Fraction(k) / rate) for k in range(count)]
        offset += Fraction(count) / rate
    return np.array(starts)


def _expected_count(duration: float, available: int, budget: FrameBudget = BUDGET) -> int:
    """The rule written out independently: clamp(duration * fps, min, max), floored to even, <= frames."""
    low = math.ceil(budget.min_frames / 2) * 2
    high = math.floor(min(budget.max_frames, available) / 2) * 2
    return math.floor(min(max(duration * budget.fps, low), high, available) / 2) * 2


def _output_size(spec: VideoSpec, budget: FrameBudget = BUDGET) -> tuple[int, int]:
    width, height = spec.size
    return smart_resize(height, width, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels)


# --- smart_resize and the frame-count rule ------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    height=st.integers(1, 5000),
    width=st.integers(1, 5000),
    budget=st.sampled_from([(4 * 784, 64 * 784), (128 * 784, 768 * 784), (784, 784), (3136, 16384 * 784)]),
)
def test_smart_resize_equals_qwen_vl_utils(height: int, width: int, budget: tuple[int, int]) -> None:
    from qwen_vl_utils.vision_process import smart_resize as qwen_smart_resize

    min_pixels, max_pixels = budget
    if max(height, width) / min(height, width) > 200:
        with pytest.raises(ValueError):
            smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
        return
    ours = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    theirs = qwen_smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    assert ours[0] % 28 == 0 and ours[1] % 28 == 0 and min(ours) >= 28
    if min(theirs) > 0:  # qwen-vl-utils gives a 0 side for extreme aspect ratios; we never do
        assert ours == theirs
    else:
        assert ours[0] * ours[1] <= max_pixels


def test_smart_resize_known_sizes() -> None:
    assert smart_resize(720, 1280, min_pixels=4 * 784, max_pixels=64 * 784) == (168, 280)
    assert smart_resize(224, 224, min_pixels=4 * 784, max_pixels=64 * 784) == (224, 224)
    assert smart_resize(28, 5000, min_pixels=4 * 784, max_pixels=64 * 784) == (28, 1792)


@pytest.mark.parametrize(
    ("duration", "available", "expected"),
    [
        (30.0, 720, 60),  # 2 fps
        (600.0, 18000, 64),  # capped at max_frames
        (1.0, 30, 4),  # lifted to min_frames
        (15.3, 153, 30),  # 30.6 floored to even
        (10.0, 3, 2),  # never more than the video has, and even
        (10.0, 1, 1),  # a one-frame video keeps its frame
    ],
)
def test_smart_nframes(duration: float, available: int, expected: int) -> None:
    assert (
        smart_nframes(duration, available, BUDGET)
        == expected
        == min(expected, max(1, _expected_count(duration, available)))
    )


@settings(max_examples=200, deadline=None)
@given(total=st.integers(2, 3000), fps=st.sampled_from([10, 24, 25, 30, 60]), nframes=st.integers(1, 64))
def test_whole_video_indices_equal_qwen_linspace(total: int, fps: int, nframes: int) -> None:
    """At a constant rate, the 'frame showing at evenly spaced times' rule picks qwen-vl-utils' indices."""
    import torch

    n = max(2, min(total, nframes) // 2 * 2)
    budget = FrameBudget(fps=1000.0, max_frames=n, min_frames=2)  # the count is n; only the spacing is tested
    pts = np.arange(total) / fps
    indices, _, _, _ = plan_frames(pts, total / fps, start=None, end=None, budget=budget)
    assert indices.tolist() == torch.linspace(0, total - 1, n).round().long().tolist()


# --- every file of the demo corpus ----------------------------------------------------------------------------


def test_every_manifest_video_follows_the_rules(demo_corpus: Path) -> None:
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    assert {v["file"] for v in manifest["videos"]} == set(SPECS)
    for entry in manifest["videos"]:
        spec = SPECS[entry["file"]]
        frames = sample_frames(_video(demo_corpus, spec), budget=EXACT)
        n = _expected_count(spec.true_duration, spec.num_frames)
        height, width = _output_size(spec)
        assert frames.frames.shape == (n, height, width, 3), spec.file
        assert frames.frames.dtype == np.uint8 and height % 28 == 0 and width % 28 == 0
        assert height * width <= BUDGET.max_pixels
        assert (frames.start, frames.end) == (0.0, pytest.approx(spec.true_duration, abs=2e-3))  # webm: ms stamps
        assert frames.sample_fps == pytest.approx(n / spec.true_duration, rel=1e-3)
        starts = _frame_starts(spec)
        if spec.vfr:  # evenly spaced in time; each time is a real frame start
            targets = np.linspace(starts[0], starts[-1], n)
            assert np.abs(np.array(frames.times) - targets).max() <= 0.11, spec.file
        else:  # qwen-vl-utils' indices exactly, webm's millisecond time stamps included
            expected = np.round(np.linspace(0, spec.num_frames - 1, n)).astype(int)
            assert frames.times == pytest.approx(starts[expected].tolist(), abs=1e-3), spec.file
        assert all(np.abs(starts - t).min() < 1e-3 for t in frames.times), spec.file


def test_every_manifest_video_with_key_frame_snapping(demo_corpus: Path) -> None:
    """The default budget: same count and size as exact; each frame is a real frame, the exact one or a key
    frame within keyframe_snap of the step from it, in the same order."""
    for spec in demo_media.VIDEOS:
        path = _video(demo_corpus, spec)
        snapped, exact = sample_frames(path, budget=PLAIN), sample_frames(path, budget=EXACT)
        assert snapped.frames.shape == exact.frames.shape, spec.file
        assert (snapped.sample_fps, snapped.start, snapped.end) == (exact.sample_fps, exact.start, exact.end)
        step = (exact.end - exact.start) / (len(exact.times) - 1)  # a little more than the grid's
        moved = np.abs(np.array(snapped.times) - np.array(exact.times))
        assert moved.max() <= BUDGET.keyframe_snap * step + 1e-3, spec.file
        assert np.all(np.diff(snapped.times) > 0)
        starts = _frame_starts(spec)
        assert all(np.abs(starts - t).min() < 1e-3 for t in snapped.times), spec.file


def _keyframe_video(path: Path, *, fps: int = 24, seconds: int = 60, gop: int = 48) -> Path:
    """Grey frames whose luma encodes the frame number (16 + 4 * (n mod 50)), lossless h264, a key frame
    every `gop` frames: a decoded frame says which frame it is."""
    graph = f"color=c=gray:s=112x112:r={fps}:d={seconds},format=yuv420p,geq=lum='16+4*mod(N,50)':cb=128:cr=128"
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", str(gop), "-keyint_min", str(gop)]
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", graph, *x264, "-sc_threshold", "0", "-threads", "1"]
        + ["-pix_fmt", "yuv420p", "-y", str(path)],
        check=True,
        timeout=120,
    )
    return path


def _frame_numbers(frames: Frames) -> list[int]:
    """The frame number (mod 50) each frame shows, from its grey level."""
    grey = frames.frames[:, 20:-20, 20:-20].reshape(len(frames.times), -1).mean(axis=1)
    return [int(round(((g * 219 / 255 + 16) - 16) / 4)) % 50 for g in grey]


@pytest.mark.parametrize("backend", ["pyav", "decord", "ffmpeg"])
def test_key_frame_snapping_reports_the_real_times(tmp_path: Path, backend: str) -> None:
    """60 s at 24 fps, a key frame every 2 s, 8 frames (a step of 8.57 s between the middles of the first and
    last frames): a target within a quarter step (2.14 s) of a key frame takes it, so all 8 are key frames; the
    times are theirs and the pixels show those very frames."""
    path = _keyframe_video(tmp_path / "gop2s.mp4")
    budget = FrameBudget(max_frames=8, overlay=False)
    snapped = sample_frames_with(path, budget=budget, backend=backend)
    exact = sample_frames_with(path, budget=replace(budget, keyframe_snap=0.0), backend=backend)
    assert len(snapped.times) == len(exact.times) == 8 and snapped.frames.shape == exact.frames.shape
    assert snapped.sample_fps == exact.sample_fps
    step = (60 - 1 / 24) / 7
    for got, want in zip(snapped.times, exact.times, strict=True):
        assert round(got * 24) % 48 == 0  # a key frame
        assert abs(got - want) <= 0.25 * step
    assert snapped.times != exact.times  # something was snapped
    for frames in (snapped, exact):  # the pixels are the frames the times name
        assert _frame_numbers(frames) == [round(t * 24) % 50 for t in frames.times]
    tight = sample_frames_with(path, budget=replace(budget, keyframe_snap=0.01), backend=backend)
    assert all(g == w or abs(g - w) <= 0.01 * step + 1e-3 for g, w in zip(tight.times, exact.times, strict=True))


def test_plan_frames_snaps_only_within_tolerance() -> None:
    pts = np.arange(18000) / 30  # 600 s at 30 fps
    budget = FrameBudget(keyframe_snap=0.25)
    exact, fps, lo, hi = plan_frames(pts, 600.0, start=None, end=None, budget=budget)
    every_3s = np.arange(0, 18000, 90)
    snapped, fps2, lo2, hi2 = plan_frames(pts, 600.0, start=None, end=None, budget=budget, keyframes=every_3s)
    assert (fps2, lo2, hi2) == (fps, lo, hi) and len(snapped) == len(exact) == 64
    # A 3 s GOP puts a key frame within 1.5 s (< 2.3 s) of every frame but the last (2.97 s from the last one).
    assert set(snapped[:-1].tolist()) <= set(every_3s.tolist()) and snapped[-1] == exact[-1] == 17999
    step = 600 / 64
    assert np.abs(pts[snapped] - pts[exact]).max() <= 0.25 * step
    # A tighter tolerance: only the frames that close to a key frame move.
    tight, *_ = plan_frames(
        pts, 600.0, start=None, end=None, budget=replace(budget, keyframe_snap=0.05), keyframes=every_3s
    )
    moved = tight != exact
    assert moved.any() and not moved.all()
    assert np.abs(pts[tight] - pts[exact]).max() <= 0.05 * step + 1e-9
    assert set(tight[moved].tolist()) <= set(every_3s.tolist())
    # Disabled, no key frames, or key frames farther apart than the step: qwen-vl-utils' frames.
    for kwargs in (
        {"budget": replace(budget, keyframe_snap=0.0), "keyframes": every_3s},
        {"budget": budget, "keyframes": None},
        {"budget": budget, "keyframes": np.arange(0, 18000, 600)},  # 20 s GOPs, 9.4 s step
    ):
        again, *_ = plan_frames(pts, 600.0, start=None, end=None, **kwargs)
        assert again.tolist() == exact.tolist()
    # Windows are never snapped.
    clip, *_ = plan_frames(pts, 600.0, start=290.0, end=310.0, budget=budget, keyframes=every_3s)
    clip_exact, *_ = plan_frames(pts, 600.0, start=290.0, end=310.0, budget=budget)
    assert clip.tolist() == clip_exact.tolist()


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(2, 5000),
    gop=st.integers(1, 400),
    snap=st.floats(0.0, 0.49),
    max_frames=st.integers(2, 64),
)
def test_plan_frames_snapping_properties(total: int, gop: int, snap: float, max_frames: int) -> None:
    pts = np.arange(total) / 25
    budget = FrameBudget(max_frames=max_frames, min_frames=2, keyframe_snap=snap)
    exact, *_ = plan_frames(pts, total / 25, start=None, end=None, budget=budget)
    keys = np.arange(0, total, gop)
    snapped, *_ = plan_frames(pts, total / 25, start=None, end=None, budget=budget, keyframes=keys)
    assert len(snapped) == len(exact)
    assert np.all(np.diff(snapped) > 0) or len(snapped) < 2 or not np.all(np.diff(exact) > 0)
    moved = snapped != exact
    assert set(snapped[moved].tolist()) <= set(keys.tolist())
    if len(exact) > 1:
        step = (pts[-1] - pts[0]) / (len(exact) - 1)
        assert np.all(np.abs(pts[snapped] - pts[exact]) <= snap * step + 1e-3)


def test_keyframe_snap_is_validated() -> None:
    for bad in (-0.1, 0.5, 1.0):
        with pytest.raises(ValueError):
            FrameBudget(keyframe_snap=bad)


@pytest.mark.parametrize("backend", [None, "pyav", "decord", "ffmpeg"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [("broken_empty.mp4", "video_empty"), ("broken_truncated.mp4", "video_truncated"), ("ZZ9ZZ.mp4", "video_missing")],
)
def test_broken_files_raise_the_probe_reason(demo_corpus: Path, name: str, reason: str, backend: str | None) -> None:
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    assert {b["file"]: b["reason"] for b in manifest["broken"]}.get(name, "video_missing") == reason
    with pytest.raises(FrameError) as caught:
        sample_frames_with(demo_corpus / "videos" / name, backend=backend)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_frame_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(FrameError("bad_window", "end 31 is past the end.", "/v.mp4")))
    assert (error.reason, error.detail, error.path) == ("bad_window", "end 31 is past the end.", "/v.mp4")


@pytest.mark.parametrize("backend", [None, "pyav", "decord", "ffmpeg"])
def test_non_video_and_directory_are_unreadable(tmp_path: Path, backend: str | None) -> None:
    page = tmp_path / "page.mp4"
    page.write_text("<html><body>not a video</body></html>")
    for path in (page, tmp_path):
        with pytest.raises(FrameError) as caught:
            sample_frames_with(path, backend=backend)
        assert caught.value.reason == "video_unreadable"


def test_av1_goes_through_ffmpeg_and_follows_the_rules(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """decord cannot open AV1: with decord first (the order before PyAV), ffmpeg takes it. PyAV's own AV1 decoding is
    tested in test_frame_decode_pyav.py."""
    monkeypatch.setattr(frame_decode, "DEFAULT_ORDER", ("decord", "ffmpeg"))
    spec = demo_media.R1_AV1
    reads: list[int] = []
    original = frame_decode.FfmpegSource.read
    monkeypatch.setattr(
        frame_decode.FfmpegSource, "read", lambda self, idx: reads.append(len(idx)) or original(self, idx)
    )
    whole = sample_frames(_video(demo_corpus, spec), budget=PLAIN)
    clip = sample_frames(_video(demo_corpus, spec), start=1.0, end=6.0, budget=PLAIN)
    assert len(reads) == 2  # decord could not open it: both came from ffmpeg
    n = _expected_count(spec.true_duration, spec.num_frames)
    assert whole.frames.shape == (n, *_output_size(spec), 3)
    starts = _frame_starts(spec)
    expected = np.round(np.linspace(0, spec.num_frames - 1, n)).astype(int)
    assert whole.times == pytest.approx(starts[expected].tolist(), abs=1e-3)
    assert clip.times == pytest.approx([1.0 + 0.5 * k for k in range(10)], abs=1e-3)
    _assert_events(spec, clip)


def test_ffmpeg_and_decord_agree(demo_corpus: Path) -> None:
    for spec, window in ((demo_media.CHARADES_B, (2.0, 12.0)), (demo_media.ANET_VFR, (8.0, 23.0))):
        path = _video(demo_corpus, spec)
        for start, end in ((None, None), window):
            a = sample_frames_with(path, start=start, end=end, budget=PLAIN, backend="decord")
            b = sample_frames_with(path, start=start, end=end, budget=PLAIN, backend="ffmpeg")
            assert a.times == b.times and a.frames.shape == b.frames.shape
            assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2.0


def test_container_start_offset_is_removed_by_both_backends(demo_corpus: Path, tmp_path: Path) -> None:
    """A stream whose time stamps start at 1.5 s: times still count from the start of the video."""
    shifted = tmp_path / "shifted.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(_video(demo_corpus, demo_media.CHARADES_A))]
        + ["-c", "copy", "-output_ts_offset", "1.5", "-y", str(shifted)],
        check=True,
        timeout=60,
    )
    a = sample_frames_with(shifted, start=5.0, end=10.0, budget=PLAIN, backend="decord")
    b = sample_frames_with(shifted, start=5.0, end=10.0, budget=PLAIN, backend="ffmpeg")
    assert a.times == b.times == pytest.approx([5.0 + 0.5 * k for k in range(10)])
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2.0


# --- clips (the tool's window) ----------------------------------------------------------------------------------


def test_clip_is_resampled_at_2_fps_from_its_start(demo_corpus: Path) -> None:
    spec = demo_media.CHARADES_A  # 24 fps: every half second is a frame start
    clip = sample_frames(_video(demo_corpus, spec), start=5.0, end=15.0)
    assert clip.times == [5.0 + 0.5 * k for k in range(20)]
    assert (clip.sample_fps, clip.start, clip.end) == (2.0, 5.0, 15.0)
    assert clip.frames.shape == (20, *_output_size(spec), 3)


def test_clip_takes_the_frame_showing_at_each_time(demo_corpus: Path) -> None:
    spec = demo_media.NEXT_A  # 29.97 fps: half seconds fall inside frames
    clip = sample_frames(_video(demo_corpus, spec), start=2.25, end=12.25)
    starts = _frame_starts(spec)
    for k, time in enumerate(clip.times):
        target = 2.25 + 0.5 * k
        showing = starts[np.searchsorted(starts, target + 1e-6, side="right") - 1]
        assert time == pytest.approx(showing, abs=1e-3)
        assert time <= target < time + 1001 / 30000 + 1e-6


@pytest.mark.parametrize(
    ("spec", "start", "end", "count"),
    [
        (demo_media.ANET_B, 0.0, 60.0, 64),  # 120 at 2 fps, capped and spread evenly
        (demo_media.ANET_B, 10.0, 11.0, 4),  # lifted to min_frames
        (demo_media.R1_FLASH, 2.0, 2.3, 2),  # 10 fps: only 3 frames in the window
        (demo_media.CHARADES_A, 29.0, None, 4),  # end None = to the end of the video
    ],
)
def test_clip_frame_counts(demo_corpus: Path, spec: VideoSpec, start: float, end: float | None, count: int) -> None:
    clip = sample_frames(_video(demo_corpus, spec), start=start, end=end)
    stop = spec.true_duration if end is None else end
    assert len(clip.times) == count
    assert clip.sample_fps == pytest.approx(count / (stop - start))
    assert start <= clip.times[0] and clip.times[-1] < stop
    assert np.all(np.diff(clip.times) > 0)


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1.0, 5.0), (8.0, 4.0), (5.0, 5.0), (10.0, 30.5), (float("nan"), 5.0), (0.0, float("inf")), (31.0, None)],
)
def test_bad_windows(demo_corpus: Path, start: float, end: float | None) -> None:
    with pytest.raises(FrameError) as caught:
        sample_frames(_video(demo_corpus, demo_media.CHARADES_A), start=start, end=end)
    assert caught.value.reason == "bad_window"


# --- true times on the variable-frame-rate file ---------------------------------------------------------------


def _box_colour(frames: Frames, spec: VideoSpec, event: demo_media.Event, i: int) -> np.ndarray:
    x, y, w, h = spec.box(event)
    sy, sx = frames.frames.shape[1] / spec.size[1], frames.frames.shape[2] / spec.size[0]
    y0, y1, x0, x1 = int((y + h / 4) * sy), int((y + 3 * h / 4) * sy), int((x + w / 4) * sx), int((x + 3 * w / 4) * sx)
    return frames.frames[i, y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)


def _assert_events(spec: VideoSpec, frames: Frames) -> None:
    """Frames whose time is inside an event show its colour; frames outside do not (one frame of slack)."""
    frame_time = 1 / float(min(r for r, _ in spec.segments) if spec.vfr else spec.fps)
    for event in spec.events:
        want = np.array([int(event.color[i : i + 2], 16) for i in (0, 2, 4)])
        for i, t in enumerate(frames.times):
            if min(abs(t - event.start), abs(t - event.end)) <= frame_time:
                continue
            shown = np.abs(_box_colour(frames, spec, event, i) - want).max() <= 60
            assert shown == (event.start <= t <= event.end), (spec.file, event.label, t)


def test_vfr_times_match_the_scripted_events(demo_corpus: Path) -> None:
    spec = demo_media.ANET_VFR
    path = _video(demo_corpus, spec)
    for start, end in ((None, None), (0.0, 30.0), (1.0, 9.5), (11.5, 18.5), (21.0, 29.0)):
        frames = sample_frames(path, start=start, end=end, budget=PLAIN)
        _assert_events(spec, frames)
        assert all(np.abs(_frame_starts(spec) - t).min() < 1e-3 for t in frames.times)
    # The whole video: evenly spaced in time (not in index: 300 of the 550 frames are in the 30 fps third).
    whole = sample_frames(path, budget=PLAIN)
    starts = _frame_starts(spec)
    ends = np.append(starts[1:], spec.true_duration)
    targets = np.linspace((starts[0] + ends[0]) / 2, (starts[-1] + ends[-1]) / 2, len(whole.times))
    for time, target in zip(whole.times, targets, strict=True):
        i = int(np.argmin(np.abs(starts - time)))
        assert starts[i] - 1e-3 <= target < ends[i] + 1e-3, (time, target)


# --- the overlay ------------------------------------------------------------------------------------------------


def draw_timestamp(frame: np.ndarray, seconds: float) -> np.ndarray:
    """A stamped copy of `frame` (the sampler stamps its own arrays in place)."""
    out = frame.copy()
    draw_timestamp_inplace(out, seconds)
    return out


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.any(before != after, axis=-1))
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def test_overlay_is_bottom_right_and_scales() -> None:
    rng = np.random.default_rng(0)
    boxes = {}
    for side in (224, 448):
        frame = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        stamped = draw_timestamp(frame, 12.5)
        assert stamped.shape == frame.shape and not np.array_equal(stamped, frame)
        y0, y1, x0, x1 = _changed_box(frame, stamped)
        assert y0 >= side * 0.75 and x0 >= side * 0.5 and y1 <= side and x1 <= side
        region = stamped[y0:y1, x0:x1].reshape(-1, 3)
        assert (region == 255).all(axis=1).any()  # white text
        assert (region.max(axis=1) < 40).mean() > 0.4  # on a dark box
        boxes[side] = (y1 - y0, x1 - x0)
    assert boxes[224][0] >= 14  # about one vision patch high at VITAL's size
    assert boxes[448][0] / boxes[224][0] == pytest.approx(2, rel=0.2)
    assert boxes[448][1] / boxes[224][1] == pytest.approx(2, rel=0.2)
    black = np.zeros((224, 224, 3), dtype=np.uint8)  # no label pixel is black: the whole box shows
    y0, y1, x0, x1 = _changed_box(black, draw_timestamp(black, 12.5))
    assert (y1 - y0, x1 - x0) == boxes[224]


def test_sampled_overlay_changes_only_the_corner(demo_corpus: Path) -> None:
    path = _video(demo_corpus, demo_media.CHARADES_A)
    plain = sample_frames(path, start=5.0, end=8.0, budget=PLAIN)
    stamped = sample_frames(path, start=5.0, end=8.0, budget=BUDGET)
    height, width = plain.frames.shape[1:3]
    for i, t in enumerate(stamped.times):
        y0, _, x0, _ = _changed_box(plain.frames[i], stamped.frames[i])
        assert y0 >= height * 0.7 and x0 >= width * 0.5
        assert np.array_equal(stamped.frames[i], draw_timestamp(plain.frames[i], t))


# --- the cache --------------------------------------------------------------------------------------------------


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Counts decord's opens, with decord first in the default order (PyAV is first by default; these tests watch
    decord's reader, and the cache's behaviour does not depend on the decoder)."""
    monkeypatch.setattr(frame_decode, "DEFAULT_ORDER", ("decord", "ffmpeg"))
    opens: list[tuple[str, int, int]] = []
    original = frame_decode._new_decord_reader

    def counting(path: str, width: int, height: int):  # noqa: ANN202
        opens.append((path, width, height))
        return original(path, width, height)

    monkeypatch.setattr(frame_decode, "_new_decord_reader", counting)
    return opens


def test_cache_opens_a_file_once_for_several_clips(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opens = _count_opens(monkeypatch)
    path = _video(demo_corpus, demo_media.NEXT_A)
    cache = FrameCache()
    first = [sample_frames(path, start=s, end=e, cache=cache) for s, e in ((None, None), (3, 8), (12, 18), (22, 26))]
    assert len(opens) == 1
    reads = []
    original = frame_decode.DecordSource.read
    monkeypatch.setattr(frame_decode.DecordSource, "read", lambda self, idx: reads.append(idx) or original(self, idx))
    again = sample_frames(path, start=12, end=18, cache=cache)
    assert reads == [] and len(opens) == 1
    assert np.array_equal(again.frames, first[2].frames) and again.times == first[2].times
    assert not again.frames.flags.writeable  # shared with other callers
    fresh = sample_frames(path, start=12, end=18)  # without a cache: opened again, same frames
    assert len(opens) == 2 and np.array_equal(fresh.frames, again.frames)
    assert cache.stats()["opened"] == 1 and cache.stats()["hits"] == 1


def test_cache_is_thread_safe(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opens = _count_opens(monkeypatch)
    path = _video(demo_corpus, demo_media.CHARADES_B)
    windows = [(2.0, 9.0), (10.0, 20.0), (18.0, 27.0), (2.0, 9.0)] * 3
    serial = {w: sample_frames(path, start=w[0], end=w[1]) for w in set(windows)}
    del opens[:]
    cache = FrameCache()
    results: dict[int, Frames] = {}

    def work(i: int) -> None:
        results[i] = sample_frames(path, start=windows[i][0], end=windows[i][1], cache=cache)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(windows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opens) == 1
    for i, window in enumerate(windows):
        assert np.array_equal(results[i].frames, serial[window].frames) and results[i].times == serial[window].times


def test_cache_stays_within_its_byte_budget(demo_corpus: Path) -> None:
    cache = FrameCache(max_bytes=3 * 2**20, max_sources=1)
    for spec in (demo_media.CHARADES_A, demo_media.CHARADES_B, demo_media.NEXT_B):
        for start in (0.0, 5.0, 10.0):
            frames = sample_frames(_video(demo_corpus, spec), start=start, end=start + 8, cache=cache)
            assert len(frames.times) == 16
            assert cache.nbytes <= 3 * 2**20
    assert cache.stats()["evicted"] > 0


# --- memory: the decoder scales, only the chosen frames are decoded -------------------------------------------


def test_decord_decodes_straight_to_the_output_size(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opens = _count_opens(monkeypatch)
    requested: list[list[int]] = []

    class Spy:
        def __init__(self, reader: object) -> None:
            self._reader = reader

        def __getattr__(self, name: str) -> object:
            return getattr(self._reader, name)

        def __len__(self) -> int:
            return len(self._reader)

        def get_batch(self, indices: list[int]) -> object:
            requested.append(list(indices))
            return self._reader.get_batch(indices)

    original = frame_decode._new_decord_reader
    monkeypatch.setattr(frame_decode, "_new_decord_reader", lambda p, w, h: Spy(original(p, w, h)))
    spec = demo_media.LONG_A  # 240 s, 5760 frames
    frames = sample_frames(_video(demo_corpus, spec))
    height, width = frames.frames.shape[1:3]
    assert opens == [(str(_video(demo_corpus, spec)), width, height)]
    assert (width, height) != spec.size  # smaller than the source, and decord was asked for it
    chosen = sorted(set(round(t * 24) for t in frames.times))
    assert sorted(i for batch in requested for i in batch) == chosen  # 64 of 5760 frames, nothing else
    assert max(len(batch) for batch in requested) <= frame_decode.DECORD_CHUNK


# --- images ---------------------------------------------------------------------------------------------------


def test_images_follow_the_same_pixel_rule_as_qwen(demo_corpus: Path) -> None:
    from qwen_vl_utils.vision_process import fetch_image

    for name in (demo_media.SQUARES_IMAGE, demo_media.OCR_IMAGE):
        path = demo_corpus / "videos" / name
        image = load_image(path)
        theirs = np.asarray(fetch_image({"image": str(path), "min_pixels": 4 * 784, "max_pixels": 64 * 784}))
        assert image.frames.shape == (1, *theirs.shape) and np.array_equal(image.frames[0], theirs)
        assert image.times == [0.0] and image.frames.shape[1] % 28 == 0 and image.frames.shape[2] % 28 == 0


def test_broken_images(demo_corpus: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.png"
    cut.write_bytes((demo_corpus / "videos" / demo_media.SQUARES_IMAGE).read_bytes()[:300])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, reason in (
        (cut, "video_truncated"),
        (text, "video_unreadable"),
        (empty, "video_empty"),
        (tmp_path / "none.png", "video_missing"),
    ):
        with pytest.raises(FrameError) as caught:
            load_image(path)
        assert caught.value.reason == reason, path


# --- perturbations (DA-Aug's harder samples) ---------------------------------------------------------------------


def test_noise_is_seeded_never_touches_the_cache_and_has_the_asked_std(demo_corpus: Path) -> None:
    path = _video(demo_corpus, demo_media.CHARADES_A)
    cache = FrameCache(max_bytes=1 << 28)
    clean = sample_frames(path, budget=PLAIN, cache=cache)
    before = clean.frames.copy()
    noise = FramePerturbation("noise", 8.0, seed=3)
    a = sample_frames(path, budget=PLAIN, cache=cache, perturbation=noise)
    b = sample_frames(path, budget=PLAIN, cache=cache, perturbation=noise)
    assert np.array_equal(a.frames, b.frames)  # same seed, same pixels: the rollout and the loss agree
    assert np.shares_memory(a.frames, b.frames)  # the noise was drawn once: the second call is a cache hit
    assert not np.array_equal(a.frames, clean.frames)
    assert np.array_equal(sample_frames(path, budget=PLAIN, cache=cache).frames, before)  # cache stays clean
    assert (a.times, a.start, a.end, a.frames.shape) == (clean.times, clean.start, clean.end, clean.frames.shape)
    # Away from the clipping at 0 and 255, the difference is the asked std in 8-bit levels.
    mid = (clean.frames > 40) & (clean.frames < 215)
    diff = a.frames.astype(np.float64)[mid] - clean.frames.astype(np.float64)[mid]
    assert diff.std() == pytest.approx(8.0, rel=0.05)
    other = sample_frames(path, budget=PLAIN, cache=cache, perturbation=FramePerturbation("noise", 8.0, seed=4))
    assert not np.array_equal(other.frames, a.frames)


def test_mask_blacks_out_the_asked_share_of_frames_and_nothing_else(demo_corpus: Path) -> None:
    clean = sample_frames(_video(demo_corpus, demo_media.CHARADES_A), budget=PLAIN)
    n = len(clean.frames)
    masked = perturb_frames(clean, FramePerturbation("mask", 0.25, seed=1))
    black = [i for i in range(n) if not masked.frames[i].any()]
    assert len(black) == max(1, round(0.25 * n))
    kept = [i for i in range(n) if i not in black]
    assert np.array_equal(masked.frames[kept], clean.frames[kept])
    assert perturb_frames(clean, None) is clean and perturb_frames(clean, FramePerturbation("noise", 0.0)) is clean


def test_perturbation_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        FramePerturbation("blur", 1.0)
    with pytest.raises(ValueError, match="strength"):
        FramePerturbation("noise", -1.0)
    with pytest.raises(ValueError, match="fraction"):
        FramePerturbation("mask", 1.5)
