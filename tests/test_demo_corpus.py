"""The demo corpus: layout and manifest, native formats, scripted events visible in the pixels, determinism."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mtvr_data import demo_annotations, demo_media
from mtvr_data.demo_corpus import build_manifest, corpus_ffmpeg
from mtvr_data.demo_media import VideoSpec

SOURCES = ["charades_sta", "nextgqa", "video_r1", "activitynet_captions", "longvideo_reason", "vidchapters"]
REASONS = {
    "bad_line",
    "bad_json",
    "non_utf8",
    "missing_field",
    "bad_value",
    "end_not_after_start",
    "span_outside_video",
    "unknown_option",
    "answer_not_in_options",
    "missing_options",
    "video_missing",
    "video_empty",
    "video_truncated",
    "video_unreadable",
}


@pytest.fixture(scope="module")
def manifest(demo_corpus: Path) -> dict:
    return json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- layout and manifest --------------------------------------------------------------------------------------


def test_manifest_names_every_file(demo_corpus: Path, manifest: dict) -> None:
    assert manifest["version"] == 1
    assert [s["source"] for s in manifest["sources"]] == SOURCES
    for source in manifest["sources"]:
        assert source["videos"] == "videos"
        for rel in [source["annotations"], *source["aux"]]:
            assert (demo_corpus / rel).is_file(), rel
    videos = demo_corpus / "videos"
    assert len(manifest["videos"]) >= 12
    for entry in manifest["videos"]:
        assert (videos / entry["file"]).stat().st_size > 0
        assert 10 <= entry["duration"] <= 240
        assert entry["events"], entry["file"]
    for image in manifest["images"]:
        assert (videos / image["file"]).is_file()
    assert {b["file"]: b["reason"] for b in manifest["broken"]} == {
        "broken_empty.mp4": "video_empty",
        "broken_truncated.mp4": "video_truncated",
    }
    assert (videos / "broken_empty.mp4").stat().st_size == 0
    assert not (videos / demo_media.MISSING_VIDEO).exists()


def test_corpus_variety(manifest: dict) -> None:
    codecs = {v["codec"] for v in manifest["videos"]}
    assert "h264" in codecs and len(codecs) >= 3
    assert {round(v["fps"], 2) for v in manifest["videos"]} >= {10.0, 24.0, 25.0, 29.97}
    assert len({(v["width"], v["height"]) for v in manifest["videos"]}) >= 3
    assert sum(v["vfr"] for v in manifest["videos"]) == 1


def test_malformed_records_cover_every_error_path(manifest: dict) -> None:
    malformed = manifest["malformed"]
    assert {m["reason"] for m in malformed} <= REASONS
    have = {(m["source"], m["reason"]) for m in malformed}
    for wanted in [
        ("charades_sta", "bad_line"),
        ("charades_sta", "end_not_after_start"),
        ("charades_sta", "non_utf8"),
        ("nextgqa", "answer_not_in_options"),
        ("video_r1", "unknown_option"),
        ("longvideo_reason", "bad_json"),
    ]:
        assert wanted in have
    assert {"video_empty", "video_truncated", "video_missing"} <= {m["reason"] for m in malformed}
    assert all(m["location"] and m["detail"] for m in malformed)
    assert len({(m["location"], m["reason"]) for m in malformed}) == len(malformed)


# --- native formats -------------------------------------------------------------------------------------------


def test_charades_files_are_native(demo_corpus: Path) -> None:
    folder = demo_corpus / "annotations" / "charades_sta"
    lines = (folder / "charades_sta_train.txt").read_bytes().split(b"\n")
    assert lines[0] == b"DM0A1 5.0 12.0##a red square appears on the left."
    assert sum(1 for line in lines if b"\xff\xfe" in line) == 1
    raw = (folder / "Charades_v1_train.csv").read_bytes()
    header = b"id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\r\n"
    assert raw.startswith(header)
    assert raw.count(b"\r\n") == raw.count(b"\n")
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert {r["id"]: r["length"] for r in rows}["DM0B2"] == "30.03"  # 900 frames at 29.97 fps


def test_json_sources_are_native(demo_corpus: Path) -> None:
    ann = demo_corpus / "annotations"
    r1 = json.loads((ann / "video_r1" / "Video-R1-demo.json").read_text())
    assert (ann / "video_r1" / "Video-R1-demo.json").read_text().startswith('[\n  {\n    "problem_id": 1,')
    assert {r["data_type"] for r in r1} == {"video", "image"}
    assert {r["problem_type"] for r in r1} >= {"multiple choice", "numerical", "free-form", "OCR", "regression"}
    assert all(r["path"].startswith("./") for r in r1)
    for r in r1:
        if r["path"] != "./broken_truncated.mp4":
            assert (demo_corpus / "videos" / r["path"][2:]).is_file()

    anet = json.loads((ann / "activitynet" / "train.json").read_text())
    for key, entry in anet.items():
        assert key.startswith("v_") and (demo_corpus / "videos" / f"{key}.mp4").is_file()
        assert len(entry["timestamps"]) == len(entry["sentences"])
        assert all(s.startswith(" ") for s in entry["sentences"][1:]) and not entry["sentences"][0].startswith(" ")

    gsub = json.loads((ann / "nextgqa" / "gsub_train.json").read_text())
    assert isinstance(gsub["90000000001"]["duration"], int) and len(gsub["90000000001"]["location"]["2"]) == 2
    header = (ann / "nextgqa" / "train.csv").read_text().splitlines()[0]
    assert header == "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4"

    chapters = json.loads((ann / "vidchapters" / "chapters_train.json").read_text())
    assert all(k.isdigit() for k in chapters["mtvrChapt01"]["chapters"])


def test_longvideo_reason_lines_are_native(demo_corpus: Path) -> None:
    lines = (demo_corpus / "annotations" / "longvideo_reason" / "train.jsonl").read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    assert len(parsed) == len(lines) - 1  # exactly one broken line
    first = parsed[0]
    assert list(first) == ["problem_id", "problem", "data_type", "problem_type", "reasoning", "videos", "answer"]
    assert first["problem"].endswith("  \nD. cyan, white, yellow, red  \n") and first["answer"] == "<answer>B</answer>"
    assert first["videos"] == demo_media.LONG_A.file


# --- the scripts are in the pixels ----------------------------------------------------------------------------


def _frame_at(path: Path, t: float, spec: VideoSpec) -> np.ndarray:
    """RGB frame shown at time t: decord (timestamps, so VFR works), or ffmpeg for what decord cannot open."""
    if spec.codec == "av1":
        width, height = spec.size
        out = subprocess.run(
            [
                corpus_ffmpeg(),
                "-v",
                "error",
                "-ss",
                f"{t}",
                "-i",
                str(path),
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return np.frombuffer(out.stdout, np.uint8).reshape(height, width, 3)
    import decord

    reader = decord.VideoReader(str(path), num_threads=1)
    starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    return reader[int(np.searchsorted(starts, t + 1e-3) - 1)].asnumpy()


def _close(pixel: np.ndarray, hex_rgb: str, tol: int = 60) -> bool:
    want = np.array([int(hex_rgb[i : i + 2], 16) for i in (0, 2, 4)])
    return bool(np.abs(pixel.astype(int) - want).max() <= tol)


def _quiet_time(spec: VideoSpec, event: demo_media.Event) -> float:
    """A time near the event when no square is drawn where this one is."""
    same_place = [e for e in spec.events if e.where == event.where]
    for t in (event.start - 1.0, event.end + 1.0):
        if 0 <= t < spec.true_duration and not any(e.start <= t <= e.end for e in same_place):
            return t
    raise AssertionError(f"no quiet time around {event}")


@pytest.mark.parametrize("spec", demo_media.VIDEOS, ids=lambda s: s.file)
def test_events_are_visible_only_while_scripted(demo_corpus: Path, spec: VideoSpec) -> None:
    path = demo_corpus / "videos" / spec.file
    for event in spec.events:
        x, y, w, h = spec.box(event)
        centre = (y + h // 2, x + w // 2)
        inside = _frame_at(path, (event.start + event.end) / 2, spec)
        assert _close(inside[centre], event.color), (event, inside[centre])
        outside = _frame_at(path, _quiet_time(spec, event), spec)
        assert not _close(outside[centre], event.color), (event, outside[centre])
    for scene in spec.scenes:
        frame = _frame_at(path, (scene.start + scene.end) / 2, spec)
        assert _close(frame[4, 4], scene.color, tol=24), (scene, frame[4, 4])


def test_vfr_file_really_has_variable_frame_durations(demo_corpus: Path) -> None:
    import decord

    reader = decord.VideoReader(str(demo_corpus / "videos" / demo_media.ANET_VFR.file), num_threads=1)
    starts = reader.get_frame_timestamp(range(len(reader)))[:, 0]
    steps = np.diff(starts)
    for rate, first, last in [(10, 0, 100), (30, 100, 400), (15, 400, 550)]:  # frame ranges of the three segments
        assert np.allclose(steps[first : last - 1], 1 / rate, atol=1e-4), rate


# --- determinism ----------------------------------------------------------------------------------------------


def test_annotations_and_manifest_are_deterministic(demo_corpus: Path, tmp_path: Path) -> None:
    """Writing the annotations twice gives the corpus's bytes; so does the manifest built from them."""
    for run in ("a", "b"):
        sources = demo_annotations.write_all(tmp_path / run)
        practice = demo_annotations.write_practice(tmp_path / run)  # the warm-up's generated questions too
        for source in [*sources, *practice.train, *practice.heldout]:
            for rel in [source.annotations, *source.aux]:
                assert (tmp_path / run / rel).read_bytes() == (demo_corpus / rel).read_bytes(), rel
    manifest_text = json.dumps(build_manifest(sources, practice), indent=2) + "\n"
    assert manifest_text == (demo_corpus / "manifest.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "spec",
    [demo_media.R1_FLASH, demo_media.R1_MPEG4, demo_media.R1_VP8, demo_media.R1_AV1, demo_media.ANET_VFR],
    ids=lambda s: s.codec + ("-vfr" if s.vfr else ""),
)
def test_video_bytes_are_deterministic(demo_corpus: Path, tmp_path: Path, spec: VideoSpec) -> None:
    """Re-encoding gives the same bytes; a sample of the codecs, since a full second build would double the time."""
    again = demo_media.encode(corpus_ffmpeg(), spec, tmp_path)
    assert _sha(again) == _sha(demo_corpus / "videos" / spec.file)


def test_broken_and_image_bytes_are_deterministic(demo_corpus: Path, tmp_path: Path) -> None:
    demo_media.write_broken(corpus_ffmpeg(), tmp_path)
    demo_media.write_images(tmp_path)
    for rel in [*demo_media.BROKEN, demo_media.SQUARES_IMAGE, demo_media.OCR_IMAGE]:
        assert _sha(tmp_path / rel) == _sha(demo_corpus / "videos" / rel), rel
