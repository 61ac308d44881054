"""Parity with qwen-vl-utils: the whole video's frame indices (constant rate, millisecond time stamps included)
and, with `FrameBudget(resize="reference")`, its pixels; the resize setting is part of every key."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtvr_data import demo_media
from mtvr_data.frames import (
    FrameBudget,
    FrameCache,
    constant_rate,
    plan_frames,
    reference_resize,
    sample_frames,
    sample_frames_with,
)

MIN_PIXELS, MAX_PIXELS = 4 * 28 * 28, 64 * 28 * 28
#: qwen-vl-utils' frames exactly (no key-frame snapping), without the time stamp it does not draw.
EXACT = FrameBudget(keyframe_snap=0.0, overlay=False, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
REFERENCE = dataclasses.replace(EXACT, resize="reference")
#: Measured with `bench/frames.py --parity` (docs/model.md): the decoder's scaling is at most ~5 levels from
#: qwen-vl-utils' resize on average over a video (testsrc2 texture), about 1 on the others.
DECODER_MEAN_LEVELS = 6.0


def _linspace(total: int, n: int) -> list[int]:
    import torch

    return torch.linspace(0, total - 1, n).round().long().tolist()


def _ms(pts: np.ndarray) -> np.ndarray:
    """Time stamps as a webm stores them: whole milliseconds."""
    return np.round(pts * 1000) / 1000


# --- indices, without decoding ----------------------------------------------------------------------------------


def test_millisecond_stamps_take_qwen_vl_utils_indices() -> None:
    """mtvrLong002.webm's case: 2250 frames at 15 fps in ms stamps, 64 frames. The old rule (the frame showing at
    evenly spaced times) took frames 179 and 2070 for qwen-vl-utils' 178 and 2071: frame 179 starts at 11.9333 s,
    stored as 11.933, just before the target 11.9328 + slack."""
    total, fps = 2250, 15
    pts = _ms(np.arange(total) / fps)
    indices, _, _, _ = plan_frames(pts, 149.999, start=None, end=None, budget=EXACT)
    expected = _linspace(total, 64)
    assert (expected[5], expected[58]) == (178, 2071)
    assert indices.tolist() == expected


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(3, 20000),
    fps=st.sampled_from([10, 15, 23.976, 24, 25, 29.97, 30, 50, 59.94, 60]),
    max_frames=st.sampled_from([4, 16, 64, 128, 768]),
    offset=st.sampled_from([0.0, 0.0005, 1.4]),
)
def test_constant_rate_with_rounded_stamps_takes_qwen_vl_utils_indices(
    total: int, fps: float, max_frames: int, offset: float
) -> None:
    """Millisecond stamps (from a start offset too) and decord's float32 ones are a constant rate: the indices are
    torch's float32 linspace, rounding included."""
    budget = dataclasses.replace(EXACT, fps=1000.0, max_frames=max_frames, min_frames=2)  # n = max_frames or all
    exact = offset + np.arange(total) / fps
    for pts in (_ms(exact) - _ms(exact)[0], exact.astype(np.float32).astype(np.float64) - exact[0]):
        assert constant_rate(pts)
        duration = float(pts[-1]) + 1 / fps
        indices, _, _, _ = plan_frames(pts, duration, start=None, end=None, budget=budget)
        assert indices.tolist() == _linspace(total, len(indices))


def test_float32_linspace_rounding_is_kept_for_long_videos() -> None:
    """torch's float32 linspace differs from exact rounding at 70391 frames, 128 samples: ours follows torch."""
    total, n = 70391, 128
    exact = [(2 * k * (total - 1) + (n - 1)) // (2 * (n - 1)) for k in range(n)]
    assert _linspace(total, n) != exact
    budget = dataclasses.replace(EXACT, max_frames=n)
    indices, _, _, _ = plan_frames(np.arange(total) / 30, total / 30, start=None, end=None, budget=budget)
    assert indices.tolist() == _linspace(total, n)


def test_variable_rate_is_not_constant() -> None:
    starts, offset = [], Fraction(0)
    for rate, seconds in demo_media.ANET_VFR.segments:
        count = math.ceil(Fraction(str(seconds)) * rate)
        starts += [float(offset + Fraction(k) / rate) for k in range(count)]
        offset += Fraction(count) / rate
    assert not constant_rate(_ms(np.array(starts)))
    jitter = np.arange(100) / 25 + np.where(np.arange(100) == 50, 0.01, 0.0)  # one frame 10 ms (a quarter) late
    assert not constant_rate(jitter)
    assert constant_rate(np.arange(100) / 25 + np.where(np.arange(100) == 50, 0.001, 0.0))


# --- against qwen-vl-utils on the demo corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_fetch():  # noqa: ANN201
    """qwen-vl-utils' `fetch_video` with its decord reader, as `bench/frames.py` runs it."""
    os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
    from qwen_vl_utils import vision_process

    previous = vision_process.FORCE_QWENVL_VIDEO_READER
    vision_process.FORCE_QWENVL_VIDEO_READER = "decord"

    def fetch(path: Path) -> tuple[np.ndarray, list[int]]:
        element = {"video": str(path), "fps": 2.0, "min_frames": 4, "max_frames": 64}
        element |= {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
        video, meta = vision_process.fetch_video(element, return_video_metadata=True)
        pixels = video.permute(0, 2, 3, 1).numpy()
        assert np.array_equal(pixels, np.round(pixels))  # uint8 resized, then cast to float
        return pixels.astype(np.uint8), list(meta["frames_indices"])

    yield fetch
    vision_process.FORCE_QWENVL_VIDEO_READER = previous


def _indices(path: Path, times: list[float]) -> list[int]:
    """The decord frame index of each time (qwen-vl-utils' indices are decord's)."""
    import decord

    reader = decord.VideoReader(str(path))
    starts = np.asarray(reader.get_frame_timestamp(np.arange(len(reader))))[:, 0]
    return [int(np.argmin(np.abs(starts - t))) for t in times]


@pytest.mark.parametrize(
    "spec",
    [demo_media.LONG_B, demo_media.R1_VP8, demo_media.CHARADES_B],
    ids=lambda spec: spec.file.rsplit("/", 1)[-1],
)
def test_indices_and_reference_pixels_equal_qwen_vl_utils(demo_corpus: Path, qwen_fetch, spec) -> None:  # noqa: ANN001
    """Whole video, constant rate: the webm with millisecond stamps (2 of its 64 frames were one off), a vp8 webm,
    and a 29.97 fps mp4. resize="reference" gives qwen-vl-utils' pixels exactly; the decoder's scaling is close."""
    path = demo_corpus / "videos" / spec.file
    pixels, indices = qwen_fetch(path)
    reference = sample_frames_with(path, budget=REFERENCE, backend="decord")
    assert _indices(path, reference.times) == indices
    assert reference.frames.shape == pixels.shape
    assert np.array_equal(reference.frames, pixels)
    decoded = sample_frames_with(path, budget=EXACT, backend="decord")
    assert decoded.times == reference.times and decoded.frames.shape == pixels.shape
    assert np.abs(decoded.frames.astype(np.int16) - pixels).mean() < DECODER_MEAN_LEVELS


def test_reference_resize_is_qwen_vl_utils_call() -> None:
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    frames = np.random.default_rng(0).integers(0, 256, size=(3, 120, 160, 3), dtype=np.uint8)
    ours = reference_resize(frames, 112, 168)
    theirs = tvf.resize(
        torch.from_numpy(frames).permute(0, 3, 1, 2),
        [112, 168],
        interpolation=InterpolationMode.BICUBIC,
        antialias=True,
    ).float()
    assert ours.dtype == np.uint8 and ours.shape == (3, 112, 168, 3)
    assert np.array_equal(ours, theirs.permute(0, 2, 3, 1).numpy())


def test_reference_mode_with_ffmpeg_and_for_clips(demo_corpus: Path) -> None:
    """The ffmpeg backend (AV1, or forced) decodes at the native size too; its RGB conversion is the ffmpeg
    binary's, not decord's, so its pixels are close to the decord reference rather than equal. Clips work alike."""
    path = demo_corpus / "videos" / demo_media.CHARADES_B.file
    by_decord = sample_frames_with(path, budget=REFERENCE, backend="decord")
    by_ffmpeg = sample_frames_with(path, budget=REFERENCE, backend="ffmpeg")
    assert by_ffmpeg.times == by_decord.times and by_ffmpeg.frames.shape == by_decord.frames.shape
    assert np.abs(by_ffmpeg.frames.astype(np.int16) - by_decord.frames).mean() < 1.0
    av1 = sample_frames(demo_corpus / "videos" / demo_media.R1_AV1.file, budget=REFERENCE)
    assert av1.frames.shape[1:3] == sample_frames(demo_corpus / "videos" / demo_media.R1_AV1.file).frames.shape[1:3]
    clip = sample_frames(path, start=2.0, end=6.0, budget=REFERENCE)
    plain = sample_frames(path, start=2.0, end=6.0, budget=EXACT)
    assert clip.times == plain.times and clip.frames.shape == plain.frames.shape
    assert np.abs(clip.frames.astype(np.int16) - plain.frames).mean() < DECODER_MEAN_LEVELS


def test_reference_mode_has_its_own_cache_entries(demo_corpus: Path) -> None:
    path = demo_corpus / "videos" / demo_media.CHARADES_B.file
    cache = FrameCache()
    decoded = sample_frames(path, budget=EXACT, cache=cache)
    reference = sample_frames(path, budget=REFERENCE, cache=cache)
    assert not np.array_equal(decoded.frames, reference.frames)
    hits = cache.hits
    assert np.shares_memory(sample_frames(path, budget=REFERENCE, cache=cache).frames, reference.frames)
    assert np.shares_memory(sample_frames(path, budget=EXACT, cache=cache).frames, decoded.frames)
    assert cache.hits == hits + 2


# --- the setting ----------------------------------------------------------------------------------------------------


def test_resize_setting_is_checked_hashable_picklable_and_fingerprinted() -> None:
    from model.prompts import PromptConfig

    assert FrameBudget().resize == "decoder"
    with pytest.raises(ValueError, match="resize"):
        FrameBudget(resize="bilinear")
    budget = FrameBudget(resize="reference")
    assert pickle.loads(pickle.dumps(budget)) == budget
    assert hash(budget) != hash(FrameBudget()) and len({budget, FrameBudget(), FrameBudget(resize="reference")}) == 2
    assert json.loads(json.dumps(dataclasses.asdict(budget)))["resize"] == "reference"
    base = PromptConfig().fingerprint_inputs()
    assert PromptConfig(budget=budget).fingerprint_inputs() != base
    clip = dataclasses.replace(PromptConfig().clip_budget, resize="reference")
    assert PromptConfig(clip_budget=clip).fingerprint_inputs() != base
