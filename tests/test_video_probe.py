"""The probe: right numbers for good files of every kind, the exact reason code for each kind of bad file."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mtvr_data import demo_media, ffmpeg_bin, video_probe
from mtvr_data.ffmpeg_bin import ffmpeg_exe
from mtvr_data.video_probe import (
    ProbeResult,
    parse_ffmpeg_header,
    probe_image,
    probe_media,
    probe_video,
    probe_video_ffmpeg,
)


def _videos(root: Path) -> Path:
    return root / "videos"


def _assert_matches(result: ProbeResult, spec: demo_media.VideoSpec, backend: str) -> None:
    assert result.ok, (result.reason, result.detail)
    info = result.info
    assert info.backend == backend
    assert info.codec == spec.codec
    assert (info.width, info.height) == spec.size
    assert info.duration == pytest.approx(spec.true_duration, abs=1.5 / spec.avg_fps)
    assert info.fps == pytest.approx(spec.avg_fps, rel=0.01)
    assert abs(info.num_frames - spec.num_frames) <= 1


@pytest.mark.parametrize(
    "spec",
    [
        demo_media.CHARADES_A,
        demo_media.CHARADES_B,
        demo_media.R1_MPEG4,
        demo_media.R1_VP8,
        demo_media.LONG_B,
        demo_media.ANET_VFR,
    ],
    ids=lambda s: s.file,
)
def test_decord_probe_of_each_codec_and_rate(demo_corpus: Path, spec: demo_media.VideoSpec) -> None:
    result = probe_video(_videos(demo_corpus) / spec.file)
    _assert_matches(result, spec, "decord")
    assert result.info.num_frames == spec.num_frames  # decord counts frames, it does not estimate them


def test_vfr_duration_is_the_last_frame_end_not_frames_over_a_rate(demo_corpus: Path) -> None:
    spec = demo_media.ANET_VFR
    info = probe_video(_videos(demo_corpus) / spec.file).info
    assert info.duration == pytest.approx(30.0, abs=0.05)
    assert info.num_frames == 550  # 10 s at 10 fps + 10 s at 30 fps + 10 s at 15 fps
    assert info.fps == pytest.approx(550 / 30, rel=1e-3)


def test_decord_unopenable_codec_falls_back_to_ffmpeg(demo_corpus: Path) -> None:
    """AV1 is beyond decord's bundled libavcodec: the probe must still succeed, through ffmpeg."""
    _assert_matches(probe_video(_videos(demo_corpus) / demo_media.R1_AV1.file), demo_media.R1_AV1, "ffmpeg")


def test_fallback_is_taken_when_decord_cannot_open(demo_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_probe, "_open_decord", lambda path: (None, "forced failure"))
    _assert_matches(probe_video(_videos(demo_corpus) / "DM0A1.mp4"), demo_media.CHARADES_A, "ffmpeg")


@pytest.mark.parametrize(
    "spec", [demo_media.CHARADES_A, demo_media.R1_MPEG4, demo_media.LONG_B, demo_media.ANET_VFR], ids=lambda s: s.file
)
def test_ffmpeg_probe_directly(demo_corpus: Path, spec: demo_media.VideoSpec) -> None:
    _assert_matches(probe_video_ffmpeg(_videos(demo_corpus) / spec.file), spec, "ffmpeg")


@pytest.mark.parametrize("probe", [probe_video, probe_video_ffmpeg])
def test_broken_corpus_files_get_their_reason(demo_corpus: Path, probe) -> None:
    for name, reason in demo_media.BROKEN.items():
        result = probe(_videos(demo_corpus) / name)
        assert (result.ok, result.reason) == (False, reason), result.detail
        assert result.info is None and result.detail


def test_missing_file(tmp_path: Path) -> None:
    for probe in (probe_video, probe_video_ffmpeg, probe_image):
        result = probe(tmp_path / "nope.mp4")
        assert result.reason == "video_missing"
        assert result.path == str(tmp_path / "nope.mp4")


def test_text_file_named_mp4_is_unreadable(tmp_path: Path) -> None:
    fake = tmp_path / "page.mp4"
    fake.write_text("<html><body>404 Not Found</body></html>\n")
    for probe in (probe_video, probe_video_ffmpeg):
        assert probe(fake).reason == "video_unreadable"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    assert probe_video(tmp_path).reason == "video_unreadable"


def test_permission_denied_is_unreadable(demo_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.mp4"
    shutil.copy(_videos(demo_corpus) / "DM0A1.mp4", locked)
    if os.name == "posix" and os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads any file: make the probe's own open() fail the way a locked file does

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(video_probe, "open", denied, raising=False)
    result = probe_video(locked)
    assert result.reason == "video_unreadable" and "Permission" in result.detail


def test_mp4_cut_after_a_front_index_is_truncated(demo_corpus: Path, tmp_path: Path) -> None:
    """moov first (+faststart), media data cut: decord fails to open it and ffmpeg decodes nothing at the end."""
    whole = tmp_path / "faststart.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(_videos(demo_corpus) / demo_media.LONG_A.file),
            "-c",
            "copy",
            "-movflags",
            "+faststart",
            "-y",
            str(whole),
        ],
        check=True,
        timeout=60,
    )
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    assert probe_video(whole).ok
    for probe in (probe_video, probe_video_ffmpeg):
        assert probe(cut).reason == "video_truncated"


def test_webm_cut_short_is_truncated(demo_corpus: Path, tmp_path: Path) -> None:
    data = (_videos(demo_corpus) / demo_media.LONG_B.file).read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 2])
    result = probe_video(cut)
    assert result.reason == "video_truncated", result.detail
    assert "github" not in result.detail  # decord's C++ source prefixes are cut from the sentence


def test_fewer_frames_than_the_header_announces_is_truncated(
    demo_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut webm or avi can still open and decode to its (new) last frame; the header's duration gives it away."""
    path = _videos(demo_corpus) / demo_media.LONG_B.file  # 150 s
    real = video_probe.read_ffmpeg_header(path)
    monkeypatch.setattr(video_probe, "read_ffmpeg_header", lambda p: replace(real, duration=300.0))
    result = probe_video(path)
    assert result.reason == "video_truncated" and "header" in result.detail
    monkeypatch.setattr(video_probe, "read_ffmpeg_header", lambda p: replace(real, duration=151.9))
    assert probe_video(path).ok  # within the tolerance (a video track a bit shorter than its audio)


def test_probe_reads_headers_and_the_end_not_the_whole_video(demo_corpus: Path, monkeypatch) -> None:
    """Only the last frame is decoded (a seek), however long the video: count what decord is asked for."""
    import decord

    requested: list[object] = []
    real_reader = decord.VideoReader

    class CountingReader(real_reader):
        def __getitem__(self, idx):
            requested.append(idx)
            return super().__getitem__(idx)

        def get_batch(self, indices):
            requested.extend(list(indices))
            return super().get_batch(indices)

    monkeypatch.setattr(decord, "VideoReader", CountingReader)
    result = probe_video(_videos(demo_corpus) / demo_media.LONG_A.file)  # 4 minutes, 5760 frames
    assert result.ok and result.info.num_frames == 5760 and result.info.backend == "decord"
    assert requested == [5759]


def test_images(demo_corpus: Path, tmp_path: Path) -> None:
    good = probe_image(_videos(demo_corpus) / demo_media.SQUARES_IMAGE)
    assert good.ok
    assert (good.info.width, good.info.height, good.info.codec, good.info.backend) == (320, 240, "png", "pil")
    assert (good.info.duration, good.info.fps, good.info.num_frames) == (0.0, 0.0, 1)

    data = (_videos(demo_corpus) / demo_media.SQUARES_IMAGE).read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    assert probe_image(tmp_path / "empty.png").reason == "video_empty"
    assert probe_image(tmp_path / "cut.png").reason == "video_truncated"
    assert probe_image(tmp_path / "text.png").reason == "video_unreadable"


def test_probe_media_dispatches_on_modality(demo_corpus: Path) -> None:
    assert probe_media(_videos(demo_corpus) / demo_media.OCR_IMAGE, "image").info.backend == "pil"
    assert probe_media(_videos(demo_corpus) / "DM0A1.mp4", "video").info.backend == "decord"
    with pytest.raises(ValueError):
        probe_media(_videos(demo_corpus) / "DM0A1.mp4", "audio")  # type: ignore[arg-type]


def test_parse_ffmpeg_header() -> None:
    stderr = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 12 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 640x360 \
[SAR 1:1 DAR 16:9], 8 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
"""
    header = parse_ffmpeg_header(stderr)
    assert (header.duration, header.codec, header.width, header.height, header.fps) == (62.5, "h264", 640, 360, 29.97)
    cover_art = "  Stream #0:1: Video: mjpeg (Baseline), yuvj420p, 300x300, 90k tbr, 90k tbn (attached pic)\n"
    assert parse_ffmpeg_header("  Duration: N/A\n" + cover_art).codec is None
    vfr = "  Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv), 160x120, SAR 1:1 DAR 4:3, 1k tbr, 1k tbn\n"
    assert parse_ffmpeg_header(vfr).fps == 1000.0  # no "fps" item: ffmpeg's tbr guess is all there is


def test_ffmpeg_exe_prefers_path_then_wheel_then_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path(ffmpeg_exe()).is_file()
    try:
        monkeypatch.setattr(ffmpeg_bin.shutil, "which", lambda name: "/opt/bin/ffmpeg")
        ffmpeg_exe.cache_clear()
        assert ffmpeg_exe() == "/opt/bin/ffmpeg"
        monkeypatch.setattr(ffmpeg_bin.shutil, "which", lambda name: None)
        monkeypatch.setattr(ffmpeg_bin, "wheel_ffmpeg_exe", lambda: "/wheel/ffmpeg")
        ffmpeg_exe.cache_clear()
        assert ffmpeg_exe() == "/wheel/ffmpeg"
        monkeypatch.setattr(ffmpeg_bin, "wheel_ffmpeg_exe", lambda: None)
        ffmpeg_exe.cache_clear()
        with pytest.raises(RuntimeError, match="imageio-ffmpeg"):
            ffmpeg_exe()
    finally:
        ffmpeg_exe.cache_clear()
