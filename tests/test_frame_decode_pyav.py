"""The PyAV decoder (`frame_decode_pyav.PyavSource`, the default): the same frames, times and failures as decord and
ffmpeg, pixels within the scaler's difference, seeks per group of pictures, and rotated files left to decord.

The broken-file and key-frame tests of tests/test_frames.py are parametrised over every backend, PyAV included.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from mtvr_data import demo_media, frame_decode
from mtvr_data.ffmpeg_bin import ffmpeg_exe
from mtvr_data.frame_decode_pyav import PyavSource
from mtvr_data.frames import FrameBudget, FrameError, sample_frames, sample_frames_with

PLAIN = FrameBudget(overlay=False, keyframe_snap=0.0)
#: |PyAV - decord| in 0-255 levels, mean over a video's frames (whole video and a clip), measured on the demo corpus:
#: 0.04-0.26 on the flat-coloured scenes, 4.1-4.3 on DM0C3 (testsrc2's dense texture); 0.41 over all videos. Both
#: scale with swscale's bicubic from the decoder's YUV, but decord bundles an older libswscale than PyAV's.
PER_VIDEO_MEAN_LEVELS = 5.0
ALL_VIDEOS_MEAN_LEVELS = 1.0


def _path(root: Path, spec: demo_media.VideoSpec) -> Path:
    return root / "videos" / spec.file


def test_default_order_starts_with_pyav() -> None:
    assert frame_decode.DEFAULT_ORDER[0] == "pyav"
    with pytest.raises(ValueError, match="backend"):
        frame_decode.open_source(Path("/nonexistent.mp4"), 28, 28, frame_decode.SourceFacts(28, 28, "h264"), "opencv")


def test_same_frames_and_times_as_decord_on_every_demo_video(demo_corpus: Path) -> None:
    """Whole video and a clip: the same times, window, rate and shape as decord (ffmpeg for AV1, which decord cannot
    open); the pixels within the scaler's difference."""
    means = []
    for spec in demo_media.VIDEOS:
        path = _path(demo_corpus, spec)
        other = "ffmpeg" if spec.codec == "av1" else "decord"
        for start, end in ((None, None), (1.0, 5.0)):
            ours = sample_frames_with(path, start=start, end=end, budget=PLAIN, backend="pyav")
            theirs = sample_frames_with(path, start=start, end=end, budget=PLAIN, backend=other)
            assert ours.times == theirs.times, spec.file
            assert (ours.start, ours.end, ours.sample_fps) == (theirs.start, theirs.end, theirs.sample_fps), spec.file
            assert ours.frames.shape == theirs.frames.shape and ours.frames.dtype == np.uint8, spec.file
            mean = float(np.abs(ours.frames.astype(np.int16) - theirs.frames).mean())
            assert mean < PER_VIDEO_MEAN_LEVELS, (spec.file, mean)
            means.append(mean)
    assert float(np.mean(means)) < ALL_VIDEOS_MEAN_LEVELS


def test_default_sampler_uses_pyav(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = PyavSource.read
    monkeypatch.setattr(PyavSource, "read", lambda self, idx: reads.append(len(idx)) or original(self, idx))
    path = _path(demo_corpus, demo_media.R1_AV1)  # AV1 too: PyAV's libav has a decoder for it
    frames = sample_frames(path, budget=PLAIN)
    assert reads == [len(frames.times)]
    assert frames.times == sample_frames_with(path, budget=PLAIN, backend="ffmpeg").times


def test_groups_split_where_a_key_frame_lies_between(demo_corpus: Path) -> None:
    path = _path(demo_corpus, demo_media.LONG_A)
    spec = demo_media.LONG_A
    facts = frame_decode.read_facts(path)
    source = PyavSource(path, 56, 56, facts)
    keys = source.keyframes.tolist()
    assert keys[0] == 0 and len(keys) > 2 and len(source.pts) == spec.num_frames
    k1, k2 = keys[1], keys[2]
    groups = source._groups([1, 2, k1 - 1, k1, k1 + 1, k2 + 3])
    assert groups == [[1, 2, k1 - 1], [k1, k1 + 1], [k2 + 3]]
    frames = source.read([1, k1, k2 + 3])
    assert frames.shape == (3, 56, 56, 3)


def test_a_seek_that_lands_late_is_retried(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong key-frame index (a "key frame" after the wanted frame) makes the seek land late: the read starts
    again from an earlier key frame and gives the same pixels."""
    path = _path(demo_corpus, demo_media.LONG_A)
    facts = frame_decode.read_facts(path)
    good = PyavSource(path, 56, 56, facts)
    wanted = [int(good.keyframes[2]) + 5]
    expected = good.read(wanted)
    bad = PyavSource(path, 56, 56, facts)
    real = bad._key_before
    late = int(good.keyframes[3])
    calls: list[int] = []

    def wrong_first(index: int) -> int:
        calls.append(index)
        return late if len(calls) == 1 else real(index)

    monkeypatch.setattr(bad, "_key_before", wrong_first)
    assert np.array_equal(bad.read(wanted), expected)
    assert len(calls) >= 2


def test_container_start_offset_is_removed(demo_corpus: Path, tmp_path: Path) -> None:
    shifted = tmp_path / "shifted.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(_path(demo_corpus, demo_media.CHARADES_A))]
        + ["-c", "copy", "-output_ts_offset", "1.5", "-y", str(shifted)],
        check=True,
        timeout=60,
    )
    a = sample_frames_with(shifted, start=5.0, end=10.0, budget=PLAIN, backend="pyav")
    b = sample_frames_with(shifted, start=5.0, end=10.0, budget=PLAIN, backend="decord")
    assert a.times == b.times == pytest.approx([5.0 + 0.5 * k for k in range(10)])
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2.0


def test_a_file_cut_in_the_middle_gives_the_same_frames_on_every_backend(demo_corpus: Path, tmp_path: Path) -> None:
    """Index at the front (faststart), second half of the data missing: every backend sees the same readable part;
    the decode loop ends at the end of the data instead of waiting for the rest."""
    whole = tmp_path / "faststart.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(_path(demo_corpus, demo_media.CHARADES_A))]
        + ["-c", "copy", "-movflags", "+faststart", "-y", str(whole)],
        check=True,
        timeout=60,
    )
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    results = {b: sample_frames_with(cut, budget=PLAIN, backend=b) for b in ("pyav", "decord", "ffmpeg")}
    assert results["pyav"].times == results["decord"].times == results["ffmpeg"].times
    assert results["pyav"].frames.shape == results["decord"].frames.shape


def test_rotated_files_go_to_decord(demo_corpus: Path, tmp_path: Path) -> None:
    """PyAV does not apply the display matrix: it declines rotated files, which decord shows upright."""
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(_path(demo_corpus, demo_media.CHARADES_A))]
        + ["-c", "copy", "-y", str(rotated)],
        check=True,
        timeout=60,
    )
    default = sample_frames(rotated, budget=PLAIN)
    by_decord = sample_frames_with(rotated, budget=PLAIN, backend="decord")
    assert default.times == by_decord.times and np.array_equal(default.frames, by_decord.frames)
    height, width = default.frames.shape[1:3]
    assert height > width  # 320x240 shown upright: portrait
    with pytest.raises(FrameError) as caught:
        sample_frames_with(rotated, budget=PLAIN, backend="pyav")
    assert caught.value.reason == "video_unreadable" and "rotated" in caught.value.detail


def test_reference_mode_gives_decords_pixels(demo_corpus: Path) -> None:
    """resize="reference" decodes at the native size: PyAV's RGB conversion at that size equals decord's on the demo
    corpus (measured: every non-AV1 demo video, difference 0), so the default keeps qwen-vl-utils' pixels there. It
    reads `RESIZE_CHUNK` frames at a time, never the whole clip at full size."""
    reference = FrameBudget(overlay=False, keyframe_snap=0.0, resize="reference")
    for spec in (demo_media.CHARADES_B, demo_media.LONG_B, demo_media.R1_MPEG4):
        path = _path(demo_corpus, spec)
        ours = sample_frames_with(path, budget=reference, backend="pyav")
        theirs = sample_frames_with(path, budget=reference, backend="decord")
        assert ours.times == theirs.times and np.array_equal(ours.frames, theirs.frames), spec.file


def test_mp4_sample_index_equals_the_packet_scan(demo_corpus: Path, tmp_path: Path) -> None:
    """The mp4 index shortcut (no pass over the packets) gives the packet scan's times, key frames and duration on
    every demo mp4, and is declined where frames are reordered (B-frames: the index holds decoding times)."""
    bframes = tmp_path / "bframes.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=4", "-c:v", "libx264"]
        + ["-preset", "medium", "-bf", "3", "-pix_fmt", "yuv420p", "-y", str(bframes)],
        check=True,
        timeout=60,
    )
    paths = [_path(demo_corpus, spec) for spec in demo_media.VIDEOS if spec.file.endswith(".mp4")]
    shortcut_taken = 0
    for path in [*paths, bframes]:
        facts = frame_decode.read_facts(path)
        source = PyavSource(path, 56, 56, facts)
        index = source._index_from_container(source._stream)
        if index is not None:  # the shortcut read the tail last: back to the first packet
            source._container.seek(int(index[0][0]), stream=source._stream, backward=True, any_frame=True)
        scanned = source._scan_packets(source._stream)
        if path == bframes:
            assert index is None
        if index is None:
            continue
        shortcut_taken += 1
        assert np.array_equal(index[0], scanned[0]) and index[1] == scanned[1], path.name
        assert np.array_equal(index[2], scanned[2]), path.name
    assert shortcut_taken == len(paths)
    by_pyav = sample_frames_with(bframes, budget=PLAIN, backend="pyav")
    by_decord = sample_frames_with(bframes, budget=PLAIN, backend="decord")
    assert by_pyav.times == by_decord.times and by_pyav.frames.shape == by_decord.frames.shape
