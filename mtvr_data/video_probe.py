"""Probe videos and images: duration, fps, frame count, size and codec, without decoding the whole file.

The probe stage fills `duration, fps, width, height` of every sample and is where broken media is caught,
so that later stages (frame sampling, the clip tool, training) never meet a file they cannot read. Real
corpora hold zero-byte downloads, files cut before the mp4 index was written, and HTML pages saved as .mp4;
each must become a counted rejection with a reason, never an exception that stops a pipeline. So the probe
functions never raise for a bad file: they return a `ProbeResult` whose `reason` is one of

- `video_missing`: no such file;
- `video_empty`: zero bytes;
- `video_truncated`: the container is cut (mp4 index missing, fewer frames than the header announces, or
  the last frames do not decode);
- `video_unreadable`: not a video (or image), an undecodable stream, a permission error, a timeout;
- `media_unavailable` (`probe_media` of a URL only): the object could not be downloaded to the scratch disk
  (see `media_staging`; a missing object is `video_missing`).

Images use the same codes (the schema field is called `video` for both). They raise only for a broken
environment (no ffmpeg when one is needed, no Pillow), which is a fault of the machine, not of the file,
and should stop a run loudly rather than reject every sample.

Decord is tried first, as everywhere in the project: opening reads the index only, and the last frame is
decoded to prove the file is complete (a seek to the last key frame, not a decode of the whole video).
Where decord cannot open a file (AV1, VVC and other codecs its bundled libavcodec lacks, or an mp4 whose
data is cut), ffmpeg's header dump and a decode of the last seconds take over.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mtvr_data.ffmpeg_bin import ffmpeg_exe
from mtvr_data.media_staging import MediaUnavailable, acquire_media

log = logging.getLogger(__name__)

Modality = Literal["video", "image"]

#: A bad file must not hang the caller: every ffmpeg call is killed after this long.
FFMPEG_TIMEOUT_S = 60.0
#: Seconds at the end of a file that the ffmpeg fallback decodes to prove the file is complete.
TAIL_CHECK_S = 2.0
#: Decodable length shorter than the header's duration by more than max(abs, rel * duration) means the
#: file was cut (a webm or avi cut short still opens, with fewer frames). Loose, so that a video track a
#: little shorter than its audio track is not called truncated.
TRUNCATION_ABS_S = 2.0
TRUNCATION_REL = 0.10
#: First box types of an ISO-BMFF (mp4/mov) file: a file starting with one of these whose moov atom is
#: missing was cut; anything else with "moov atom not found" was never an mp4 (ffmpeg guesses mp4 from .mp4).
ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"}
#: ffmpeg messages that mean the data ends early; "damaged" and "concealing" are the decoders' words for a
#: frame whose data stops part-way (a cut avi).
TRUNCATION_MARKERS = (
    "end of file",
    "ended prematurely",
    "partial file",
    "truncat",
    "invalid nal unit size",
    "damaged",
    "concealing",
)
#: ffmpeg messages that mean the stream cannot be decoded at all (not a matter of a cut file).
UNSUPPORTED_MARKERS = ("decoder not found", "not supported", "function not implemented", "unknown codec")

DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
VIDEO_STREAM_RE = re.compile(r"Stream #\d+:\d+\S*: Video: (.*)")
CODEC_RE = re.compile(r"^([A-Za-z0-9_]+)")
SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})\b")
RATE_RE = re.compile(r"(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What the probe learnt. Images have duration 0.0, fps 0.0 and one frame."""

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    backend: str  # "decord" | "ffmpeg" | "pil"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The probe of one file: `info` when it is usable, else a `reason` code and a one-sentence `detail`."""

    path: str
    info: MediaInfo | None
    reason: str | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.info is not None and self.reason is None


@dataclass(frozen=True, slots=True)
class FfmpegHeader:
    """What `ffmpeg -i` prints about a file's first video stream (None where it printed nothing)."""

    duration: float | None
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    stderr: str


# --- entry points ---------------------------------------------------------------------------------------------


def probe_media(path: str | os.PathLike[str], modality: Modality) -> ProbeResult:
    """`probe_video` or `probe_image`, as the sample's modality says, of a local path or a URL.

    A URL is staged first (`media_staging`: downloaded once into the worker's scratch cache, held while it is
    probed) and the result names the URL, not the scratch copy. A download that fails is a failed result like a
    bad file (`video_missing` for no such object, `media_unavailable` otherwise, the detail naming the URL), so
    it becomes the sample's dead letter and never an exception that stops a batch.
    """
    if modality not in ("video", "image"):
        raise ValueError(f"modality must be 'video' or 'image', not {modality!r}")
    probe = probe_video if modality == "video" else probe_image
    source = os.fspath(path)
    try:
        lease = acquire_media(source)
    except MediaUnavailable as exc:
        return ProbeResult(source, None, exc.reason, exc.detail)
    with lease:
        result = probe(lease.path)
    return result if lease.path == source else dataclasses.replace(result, path=source)


def probe_video(path: str | os.PathLike[str]) -> ProbeResult:
    """Probe a video with decord, falling back to ffmpeg for what decord cannot open. Never raises for a bad file.

    Duration is the end time of the last frame (so a variable-frame-rate file gets its true length, not
    frames / average fps); the codec name comes from ffmpeg's header dump, since decord cannot tell it.
    """
    p = Path(path)
    failed, head = _check_file(p)
    if failed is not None:
        return failed
    reader, why = _open_decord(p)
    if reader is None:
        log.debug("decord cannot open %s (%s); trying ffmpeg", p, why)
        return probe_video_ffmpeg(p, head=head, decord_error=why)
    try:
        return _probe_with_reader(p, reader)
    finally:
        del reader  # decord holds the file open until the reader is collected


def probe_video_ffmpeg(
    path: str | os.PathLike[str], *, head: bytes | None = None, decord_error: str = ""
) -> ProbeResult:
    """Probe a video with ffmpeg only: the header dump, then a decode of the last `TAIL_CHECK_S` seconds.

    The fallback for files decord cannot open; public so that it can be tested (and used) on its own.
    The frame count is round(duration * fps): ffmpeg's header has no count, and counting means decoding.
    `probe_video` passes `head` (the file's first bytes, already read) and `decord_error` (why decord failed,
    for the detail sentence).
    """
    p = Path(path)
    if head is None:
        failed, head = _check_file(p)
        if failed is not None:
            return failed
    try:
        header = read_ffmpeg_header(p)
    except subprocess.TimeoutExpired:
        return _fail(p, "video_unreadable", f"ffmpeg did not read the header within {FFMPEG_TIMEOUT_S:.0f} s.")
    if header.codec is None:
        return _classify_open_failure(p, header.stderr, head, decord_error)
    if not header.duration or not header.fps or not header.width or not header.height:
        return _fail(
            p,
            "video_unreadable",
            f"ffmpeg found a {header.codec} stream but no duration, frame rate or size in its header.",
        )
    tail = _tail_problem(p, header.duration)
    if tail is not None:
        return tail
    info = MediaInfo(
        duration=header.duration,
        fps=header.fps,
        num_frames=max(1, round(header.duration * header.fps)),
        width=header.width,
        height=header.height,
        codec=header.codec,
        backend="ffmpeg",
    )
    return ProbeResult(str(p), info, None)


def probe_image(path: str | os.PathLike[str]) -> ProbeResult:
    """Probe an image with Pillow, decoding it fully (images are small, and a cut PNG only fails on load)."""
    p = Path(path)
    failed, _ = _check_file(p)
    if failed is not None:
        return failed
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # an environment fault, not the file's
        raise RuntimeError("probing images needs Pillow: `pip install pillow`") from exc
    try:
        with Image.open(p) as img:
            codec, (width, height) = (img.format or "unknown").lower(), img.size
            img.load()
    except UnidentifiedImageError:
        return _fail(p, "video_unreadable", "Pillow does not recognise it as an image.")
    except PermissionError:
        return _fail(p, "video_unreadable", "Permission denied when reading the file.")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        text = str(exc)
        if isinstance(exc, EOFError) or "truncat" in text.lower():
            return _fail(p, "video_truncated", f"The image data ends early ({_short(text)}).")
        return _fail(p, "video_unreadable", f"Pillow cannot decode the image ({_short(text)}).")
    info = MediaInfo(duration=0.0, fps=0.0, num_frames=1, width=width, height=height, codec=codec, backend="pil")
    return ProbeResult(str(p), info, None)


def read_ffmpeg_header(path: str | os.PathLike[str]) -> FfmpegHeader:
    """Run `ffmpeg -i FILE` (headers only, no output, so it is cheap) and parse its stream dump.

    Raises subprocess.TimeoutExpired after `FFMPEG_TIMEOUT_S`, and RuntimeError if there is no ffmpeg.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", _file_url(Path(path))]
    proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    return parse_ffmpeg_header(proc.stderr.decode("utf-8", "replace"))


def parse_ffmpeg_header(stderr: str) -> FfmpegHeader:
    """Duration, and codec / size / frame rate of the first video stream that is not cover art, from `ffmpeg -i`.

    The size is the ", WxH" item: matching any "WxH" would read the "0x31637661" of "(avc1 / 0x31637661)".
    The frame rate is "fps" (the average), else "tbr" (a guess ffmpeg makes for variable-rate streams).
    """
    duration = None
    match = DURATION_RE.search(stderr)
    if match:
        h, m, s = match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    stream = next((m.group(1) for m in VIDEO_STREAM_RE.finditer(stderr) if "attached pic" not in m.group(1)), None)
    if stream is None:
        return FfmpegHeader(duration, None, None, None, None, stderr)
    codec_match, size_match = CODEC_RE.match(stream), SIZE_RE.search(stream)
    rates = {unit: float(value) * (1000 if k else 1) for value, k, unit in RATE_RE.findall(stream)}
    return FfmpegHeader(
        duration=duration,
        codec=codec_match.group(1) if codec_match else "unknown",
        width=int(size_match.group(1)) if size_match else None,
        height=int(size_match.group(2)) if size_match else None,
        fps=rates.get("fps") or rates.get("tbr"),
        stderr=stderr,
    )


# --- decord ---------------------------------------------------------------------------------------------------


def _decord() -> Any | None:
    """The decord module, imported on first use (it loads its own libavcodec); None if not installed."""
    try:
        import decord
    except ImportError:
        return None
    return decord


def _open_decord(path: Path) -> tuple[Any | None, str]:
    decord = _decord()
    if decord is None:
        return None, "decord is not installed"
    from mtvr_data.c_stderr import call_logging_fd2

    try:
        # decord's libav prints its complaints about a broken file to fd 2: they go to the debug log instead
        # (the probe's reason code is what gets reported, once, as a dead letter).
        reader = call_logging_fd2(decord.VideoReader, str(path), num_threads=1, logger=log, what=f"decord on {path}")
        return reader, ""
    except Exception as exc:  # decord raises bare RuntimeError / DECORDError from C++ for every kind of failure
        return None, _short(str(exc))


def _probe_with_reader(path: Path, reader: Any) -> ProbeResult:
    num_frames = len(reader)
    if num_frames <= 0:
        return probe_video_ffmpeg(path, decord_error="decord found no frames")
    try:
        height, width = reader[num_frames - 1].shape[:2]
        first_start, last_end = (
            float(t) for t in (reader.get_frame_timestamp(0)[0], reader.get_frame_timestamp(num_frames - 1)[1])
        )
    except Exception as exc:  # decord's errors are untyped; a failed last frame is a cut file
        return _fail(
            path, "video_truncated", f"The last frame ({num_frames - 1}) does not decode: {_short(str(exc))}."
        )
    fps = float(reader.get_avg_fps())
    # decord's timestamps are float32: rounding to 0.1 ms drops the noise (149.99899 s) and no real precision.
    duration = round(last_end, 4) if math.isfinite(last_end) and last_end > first_start else 0.0
    if not (math.isfinite(fps) and fps > 0):
        fps = num_frames / duration if duration > 0 else 0.0
    if duration <= 0 and fps > 0:
        duration = num_frames / fps
    if duration <= 0:
        return _fail(path, "video_unreadable", "The frames carry no usable timestamps or frame rate.")
    try:
        header: FfmpegHeader | None = read_ffmpeg_header(path)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:  # the codec name is a nicety, not a requirement
        log.debug("no codec name for %s: %s", path, exc)
        header = None
    if header is not None and header.duration and _cut_short(duration, header.duration):
        return _fail(
            path,
            "video_truncated",
            f"Only {duration:.2f} s of the {header.duration:.2f} s the header announces can be read.",
        )
    codec = header.codec if header is not None and header.codec else "unknown"
    info = MediaInfo(
        duration=duration,
        fps=fps,
        num_frames=num_frames,
        width=int(width),
        height=int(height),
        codec=codec,
        backend="decord",
    )
    return ProbeResult(str(path), info, None)


def _cut_short(readable: float, announced: float) -> bool:
    return announced - readable > max(TRUNCATION_ABS_S, TRUNCATION_REL * announced)


# --- ffmpeg ---------------------------------------------------------------------------------------------------


def _tail_problem(path: Path, duration: float) -> ProbeResult | None:
    """A failed ProbeResult if the last seconds do not decode, else None."""
    tail = min(TAIL_CHECK_S, duration)
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-sseof",
        f"-{tail:.3f}",
        "-i",
        _file_url(path),
        "-map",
        "0:v:0",
        "-f",
        "framecrc",
        "-",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return _fail(path, "video_unreadable", f"Decoding the last {tail:.1f} s took over {FFMPEG_TIMEOUT_S:.0f} s.")
    frames = sum(1 for line in proc.stdout.splitlines() if line and not line.startswith(b"#"))
    errors = proc.stderr.decode("utf-8", "replace").strip()
    lowered = errors.lower()
    if frames and not any(marker in lowered for marker in TRUNCATION_MARKERS):
        return None
    if not frames and any(marker in lowered for marker in UNSUPPORTED_MARKERS):
        return _fail(path, "video_unreadable", f"ffmpeg cannot decode the stream ({_last_line(errors)}).")
    what = "no frame" if not frames else "the data ends early"
    detail = f"In the last {tail:.1f} s {what} decodes" + (f" ({_last_line(errors)})." if errors else ".")
    return _fail(path, "video_truncated", detail)


def _classify_open_failure(path: Path, stderr: str, head: bytes, decord_error: str) -> ProbeResult:
    """Reason for a file that neither decord nor ffmpeg could open as a video."""
    lowered = stderr.lower()
    if "moov atom not found" in lowered and head[4:8] in ISO_BOXES:
        return _fail(
            path, "video_truncated", "The mp4 index (moov atom) is missing: the file was cut before it was written."
        )
    if any(marker in lowered for marker in TRUNCATION_MARKERS):
        return _fail(path, "video_truncated", f"The container ends early ({_last_line(stderr)}).")
    if "permission denied" in lowered:
        return _fail(path, "video_unreadable", "Permission denied when reading the file.")
    if "Input #0" in stderr:  # opened, but no video stream in it (audio only, subtitles, ...)
        return _fail(path, "video_unreadable", "The file holds no video stream.")
    because = f"; decord: {decord_error}" if decord_error else ""
    return _fail(path, "video_unreadable", f"Not a video ffmpeg can open ({_last_line(stderr)}{because}).")


def _file_url(path: Path) -> str:
    """`file:` URL of a path, so that a name with ':' or a leading '-' is never read as a protocol or an option."""
    return "file:" + str(path.resolve())


# --- shared ---------------------------------------------------------------------------------------------------


def _check_file(path: Path) -> tuple[ProbeResult | None, bytes]:
    """(failure, first bytes): the checks every probe starts with, before any decoder sees the file."""
    try:
        if not path.exists():
            return _fail(path, "video_missing", "No such file."), b""
        if path.is_dir():
            return _fail(path, "video_unreadable", "The path is a directory, not a file."), b""
        if path.stat().st_size == 0:
            return _fail(path, "video_empty", "The file is empty (0 bytes)."), b""
        with open(path, "rb") as fh:
            return None, fh.read(16)
    except PermissionError:
        return _fail(path, "video_unreadable", "Permission denied when reading the file."), b""
    except OSError as exc:
        return _fail(path, "video_unreadable", f"The file cannot be read ({_short(str(exc))})."), b""


def _fail(path: Path, reason: str, detail: str) -> ProbeResult:
    return ProbeResult(str(path), None, reason, detail)


def _short(text: str, limit: int = 160) -> str:
    """One line of an error message, for a detail sentence (decord's messages carry a C++ file:line prefix)."""
    text = " ".join(text.split())
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", text)  # "[16:13:46] /src/.../decoder.cc:218: ", often nested
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Last message repeated")]
    return _short(lines[-1]) if lines else "no message"
