"""Decoders behind `mtvr_data.frames`: PyAV first (`frame_decode_pyav`), decord for what it declines (rotated files),
ffmpeg for what neither can open (`DEFAULT_ORDER`; docs/model.md "Frames" has the figures behind the order).

All give the same thing, a `FrameSource`: the presentation time of every frame (from the container's
index, without decoding) and a `read(indices)` that decodes just those frames, already scaled to the output
size. `frames` decides which indices to read from the times; this module only decodes.

- decord: `VideoReader(num_threads=1, width=W, height=H)` scales inside its ffmpeg filter graph, so no
  full-resolution RGB frame ever reaches Python, and `get_batch` seeks to the key frame before each wanted
  frame instead of decoding the whole video. Opening reads the container's packet index (the whole file's
  packet headers, not its pictures).
- ffmpeg (the CLI, through ffmpeg-python, binary from `ffmpeg_exe()`): for codecs decord's bundled libavcodec
  lacks (AV1 in the demo corpus). One `-c copy` pass lists every packet's time stamp and key flag (no
  decoding), then one ffmpeg run per group of wanted frames seeks with `-ss`, picks the frames by time stamp
  with `select`, scales them and pipes raw RGB back. Every run has a timeout, so a bad file cannot hang a
  worker.

Known cost of decord (measured with a 10-minute 720p h264 file, see bench/frames.py): opening reads the whole
file (its packet index), and while decoding, the calling thread reads packets ahead of the decoder in a busy
loop until the next seek: 64 frames of that 350 MB file read 7 GB from the page cache (1.5 GB for a 20 s
clip), hold 200-300 MB of compressed packets at the peak, and keep a second core busy. The ffmpeg path reads
the file once (0.4 GB) and holds only the output frames in-process;
`frames.sample_frames_with(backend="ffmpeg")` selects it. PyAV reads the file once too, in-process, without a
process per run of frames: hence the default.

Failures become `FrameError` with the probe's reason codes: when a decoder fails, `video_probe.probe_video`
classifies the file (missing, empty, truncated, unreadable), so the sampler and the probe stage never
disagree about why a file is bad.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mtvr_data.ffmpeg_bin import ffmpeg_exe
from mtvr_data.video_probe import FFMPEG_TIMEOUT_S, probe_video, read_ffmpeg_header

log = logging.getLogger(__name__)

#: decord's get_batch allocates its own batch and `asnumpy` copies it: reading in chunks keeps that extra
#: memory to a few frames instead of a second copy of the whole output.
DECORD_CHUNK = 8
#: Estimated resident memory of an open decord reader, in source frames (YUV 4:2:0): the decoder's pictures
#: plus the compressed packets decord reads ahead (measured 70-300 MB for a 10-minute 720p h264 file).
DECORD_READER_FRAMES = 64
#: Starting an ffmpeg process and seeking costs about as much as decoding this many frames (30-50 ms).
SEEK_COST_FRAMES = 48
#: Times are kept to 0.1 ms: decord's are float32 (149.99899 s), and no frame rate needs finer.
TIME_DECIMALS = 4
ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
NOPTS = -(2**63)


class FrameError(Exception):
    """Frames could not be produced. `reason` is a short code (`video_missing`, `video_empty`,
    `video_truncated`, `video_unreadable`, `bad_window`), `detail` one sentence for a person."""

    def __init__(self, reason: str, detail: str = "", path: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.path = path

    def __reduce__(self) -> tuple[type[FrameError], tuple[str, str, str]]:
        # Beam moves exceptions between processes: keep the fields, not just the message.
        return (type(self), (self.reason, self.detail, self.path))


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the ffmpeg header says about a file: the displayed size (rotation applied) and the codec."""

    width: int
    height: int
    codec: str


class FrameSource(Protocol):
    """An opened video: frame times and a decoder of chosen frames at one output size."""

    backend: str
    pts: np.ndarray  # float64 [N]: start time of each frame in presentation order, seconds from the video start
    duration: float  # end time of the last frame
    keyframes: np.ndarray  # int64 [K]: indices (into pts) of the key frames, sorted; may be empty if unknown
    width: int  # output size
    height: int
    lock: threading.Lock
    nbytes: int  # estimated resident memory while open (for the cache's byte budget)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [len(indices), height, width, 3] RGB: the frames at these (sorted, distinct) indices."""
        ...


class DecodeFailed(Exception):
    """A backend could not open or decode the file; the caller classifies it (see `classify`)."""


# --- facts and classification ---------------------------------------------------------------------------------


def stat_video(path: Path) -> os.stat_result:
    """os.stat, with the cheap failures (missing, directory, empty, no permission) as FrameErrors."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FrameError("video_missing", "No such file.", str(path)) from None
    except OSError as exc:
        raise FrameError("video_unreadable", f"The file cannot be read ({exc.strerror}).", str(path)) from None
    if path.is_dir():
        raise FrameError("video_unreadable", "The path is a directory, not a file.", str(path))
    if st.st_size == 0:
        raise FrameError("video_empty", "The file is empty (0 bytes).", str(path))
    return st


def read_facts(path: Path) -> SourceFacts:
    """The displayed size and codec from `ffmpeg -i` (headers only): decord needs the output size up front."""
    try:
        header = read_ffmpeg_header(path)
    except subprocess.TimeoutExpired:
        raise FrameError(
            "video_unreadable", f"ffmpeg did not read the header within {FFMPEG_TIMEOUT_S:.0f} s.", str(path)
        ) from None
    if header.codec is None or not header.width or not header.height:
        raise classify(path, "ffmpeg finds no video stream with a size in it.")
    width, height = header.width, header.height
    rotation = ROTATION_RE.search(header.stderr)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:  # decord and ffmpeg both show it upright
        width, height = height, width
    return SourceFacts(width=width, height=height, codec=header.codec)


def classify(path: Path, detail: str) -> FrameError:
    """The FrameError for a file a decoder failed on: the probe's reason when it finds one, else unreadable."""
    result = probe_video(path)
    if result.reason is not None:
        return FrameError(result.reason, result.detail, str(path))
    return FrameError("video_unreadable", detail, str(path))


# --- decord ---------------------------------------------------------------------------------------------------


def _new_decord_reader(path: str, width: int, height: int) -> Any:
    """Open a decord reader that decodes straight to width x height (module-level so tests can watch it)."""
    import decord

    from mtvr_data.c_stderr import call_logging_fd2

    # libav's complaints about a file it cannot open go to fd 2: logged at DEBUG instead (mtvr_data.c_stderr).
    return call_logging_fd2(
        decord.VideoReader, path, num_threads=1, width=width, height=height, logger=log, what=f"decord on {path}"
    )


class DecordSource:
    """A decord reader at the output size, with its frame times. Not thread-safe: hold `lock` to read."""

    backend = "decord"

    def __init__(self, path: Path, width: int, height: int, facts: SourceFacts) -> None:
        self.path, self.width, self.height = path, width, height
        self.lock = threading.Lock()
        try:
            self._reader = _new_decord_reader(str(path), width, height)
            count = len(self._reader)
            stamps = np.asarray(self._reader.get_frame_timestamp(np.arange(count)), dtype=np.float64)
        except Exception as exc:  # decord raises bare RuntimeError / DECORDError for every kind of failure
            raise DecodeFailed(f"decord cannot open it: {_one_line(exc)}") from exc
        if count <= 0 or stamps.shape != (count, 2) or not np.isfinite(stamps).all():
            raise DecodeFailed("decord finds no frames with usable time stamps")
        self.pts = np.round(stamps[:, 0], TIME_DECIMALS)
        self.duration = round(float(stamps[-1, 1]), TIME_DECIMALS)
        if self.duration <= float(self.pts[-1]):
            raise DecodeFailed("decord's last frame has no duration")
        try:  # from the container's index: no decoding
            keys = np.asarray(self._reader.get_key_indices(), dtype=np.int64)
        except Exception as exc:  # only costs the key-frame snapping
            log.debug("%s: decord gives no key frames (%s)", path, _one_line(exc))
            keys = np.empty(0, dtype=np.int64)
        self.keyframes = np.unique(keys[(keys >= 0) & (keys < count)])
        self.nbytes = DECORD_READER_FRAMES * facts.width * facts.height * 3 // 2 + count * 64

    def read(self, indices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(indices), self.height, self.width, 3), dtype=np.uint8)
        try:
            for lo in range(0, len(indices), DECORD_CHUNK):
                chunk = [int(i) for i in indices[lo : lo + DECORD_CHUNK]]
                out[lo : lo + len(chunk)] = self._reader.get_batch(chunk).asnumpy()
        except Exception as exc:
            raise DecodeFailed(f"decord failed while decoding: {_one_line(exc)}") from exc
        return out


# --- ffmpeg ---------------------------------------------------------------------------------------------------


class FfmpegSource:
    """The ffmpeg CLI as a frame source: a packet index from one `-c copy` pass, then seeks per group."""

    backend = "ffmpeg"

    def __init__(self, path: Path, width: int, height: int, facts: SourceFacts) -> None:
        self.path, self.width, self.height = path, width, height
        self.lock = threading.Lock()
        raw, durations, keys, time_base = _scan_packets(path)
        order = np.argsort(raw, kind="stable")
        raw, durations, keys = raw[order], durations[order], keys[order]
        self._start_raw = int(raw[0])
        seconds = (raw - self._start_raw).astype(np.float64) * float(time_base)
        self.pts = np.round(seconds, TIME_DECIMALS)
        gaps = np.diff(seconds)
        positive = gaps[gaps > 0]
        last = float(durations[-1] * time_base) or (float(np.median(positive)) if positive.size else 0.0)
        self.duration = round(float(seconds[-1]) + last, TIME_DECIMALS)
        if self.duration <= float(self.pts[-1]):
            raise DecodeFailed("ffmpeg's packet index gives the last frame no duration")
        self._key_positions = np.flatnonzero(keys)
        self.keyframes = self._key_positions
        # Frames are picked by time stamp, within a quarter of the closest spacing (never more than 1 ms).
        self._tolerance = min(1e-3, 0.25 * float(positive.min())) if positive.size else 1e-3
        self._raw_seconds = raw.astype(np.float64) * float(time_base)
        self.nbytes = raw.size * 64

    def read(self, indices: Sequence[int]) -> np.ndarray:
        wanted = [int(i) for i in indices]
        out = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)
        done = 0
        for group in self._groups(wanted):
            out[done : done + len(group)] = self._decode_group(group)
            done += len(group)
        return out

    def _groups(self, wanted: list[int]) -> list[list[int]]:
        """Runs of wanted frames decoded by one ffmpeg each. A new run (a new process that seeks) starts where
        the key frame before the next wanted frame lies more than `SEEK_COST_FRAMES` after the previous one:
        seeking there saves more decoding than starting a process costs. A 2-fps clip is one run; 64 frames
        spread over a long video are 64."""
        groups: list[list[int]] = []
        for index in wanted:
            if groups and self._key_before(index) - groups[-1][-1] <= SEEK_COST_FRAMES:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def _key_before(self, index: int) -> int:
        position = int(np.searchsorted(self._key_positions, index, side="right")) - 1
        return int(self._key_positions[position]) if position >= 0 else 0

    def _decode_group(self, group: list[int]) -> np.ndarray:
        import ffmpeg

        first = group[0]
        # -ss counts from the file's start even with -copyts. Half a frame before the first wanted frame, with
        # the frames before it dropped (accurate seek); the demuxer lands on the key frame before that time.
        # When the first wanted frame is a key frame, half a frame AFTER it without dropping: the demuxer lands
        # on it, so that a group of key frames (snapped samples) decodes no GOP before them.
        options: dict[str, Any] = {"copyts": None, "threads": 1}
        if first == 0:
            seek = 0.0
        elif self._key_before(first) == first:
            after = float(self.pts[first + 1]) if first + 1 < len(self.pts) else self.duration
            seek = (float(self.pts[first]) + after) / 2
            options["noaccurate_seek"] = None
        else:
            seek = float(self.pts[first] + self.pts[first - 1]) / 2
        tol = f"{self._tolerance:.6f}"
        expr = "+".join(f"lt(abs(t-{self._raw_seconds[i]:.6f}),{tol})" for i in group)
        stream = ffmpeg.input(_file_url(self.path), ss=f"{seek:.6f}", **options)
        stream = stream.output(
            "pipe:",
            map="0:v:0",
            vf=f"select='{expr}',scale={self.width}:{self.height}:flags=bicubic",
            fps_mode="passthrough",
            frames=len(group),
            format="rawvideo",
            pix_fmt="rgb24",
        ).global_args("-hide_banner", "-nostdin", "-v", "error", "-filter_threads", "1")
        cmd = stream.compile(cmd=ffmpeg_exe())
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise DecodeFailed(f"ffmpeg did not decode {len(group)} frames within {FFMPEG_TIMEOUT_S:.0f} s") from None
        frame_bytes = self.width * self.height * 3
        if proc.returncode != 0 or len(proc.stdout) != frame_bytes * len(group):
            message = _last_line(proc.stderr.decode("utf-8", "replace"))
            raise DecodeFailed(
                f"ffmpeg gave {len(proc.stdout) // frame_bytes} of {len(group)} frames "
                f"(exit {proc.returncode}: {message})"
            )
        return np.frombuffer(proc.stdout, dtype=np.uint8).reshape(len(group), self.height, self.width, 3)


def _scan_packets(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, Fraction]:
    """(pts, duration, is_key, time base) of every packet of the first video stream, from `-f framecrc`.

    `-c copy` reads the packets without decoding them; `-copyts` keeps the container's own time stamps so
    that `select` can match them later. A packet without pts takes its dts (AVI).
    """
    import ffmpeg

    cmd = (
        ffmpeg.input(_file_url(path), copyts=None)
        .output("pipe:", map="0:v:0", c="copy", format="framecrc")
        .global_args("-hide_banner", "-nostdin", "-v", "error")
        .compile(cmd=ffmpeg_exe())
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeFailed(f"ffmpeg did not list the packets within {FFMPEG_TIMEOUT_S:.0f} s") from None
    time_base: Fraction | None = None
    pts: list[int] = []
    durations: list[int] = []
    keys: list[bool] = []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
            continue
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6:
            continue
        dts, value = int(fields[1]), int(fields[2])
        flags = int(fields[6].split("=")[1], 16) if len(fields) > 6 and fields[6].startswith("F=") else 1
        pts.append(value if value != NOPTS else dts)
        durations.append(max(0, int(fields[3])))
        keys.append(bool(flags & 1))
    if proc.returncode != 0 or time_base is None or not pts or NOPTS in pts:
        message = _last_line(proc.stderr.decode("utf-8", "replace"))
        raise DecodeFailed(f"ffmpeg cannot list the video packets (exit {proc.returncode}: {message})")
    return np.asarray(pts, dtype=np.int64), np.asarray(durations, dtype=np.int64), np.asarray(keys), time_base


# --- opening --------------------------------------------------------------------------------------------------


#: Backends `open_source` accepts; None tries `DEFAULT_ORDER`.
BACKENDS = ("pyav", "decord", "ffmpeg")
#: The default order, from bench/frames.py's figures (docs/model.md, "Frames"): PyAV first (fastest on clips,
#: bounded memory), decord for what PyAV will not take (rotated files), the ffmpeg CLI last.
DEFAULT_ORDER = ("pyav", "decord", "ffmpeg")


def open_source(path: Path, width: int, height: int, facts: SourceFacts, backend: str | None = None) -> FrameSource:
    """The first backend of `DEFAULT_ORDER` that opens the file (or `backend` alone); FrameError if none can."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be None or one of {BACKENDS}, not {backend!r}")
    order = DEFAULT_ORDER if backend is None else (backend,)
    why: list[str] = []
    for name in order:
        try:
            return _open_one(name, path, width, height, facts)
        except DecodeFailed as exc:
            why.append(str(exc))
            if name != order[-1]:
                log.info("%s: %s; trying the next decoder", path, exc)
    raise classify(path, "; ".join(why))


def _open_one(name: str, path: Path, width: int, height: int, facts: SourceFacts) -> FrameSource:
    if name == "pyav":
        from mtvr_data.frame_decode_pyav import PyavSource  # imports this module: not at the top

        return PyavSource(path, width, height, facts)
    if name == "decord":
        return DecordSource(path, width, height, facts)
    return FfmpegSource(path, width, height, facts)


def _file_url(path: Path) -> str:
    """`file:` URL, so that a name with ':' or a leading '-' is never read as a protocol or an option."""
    return "file:" + str(path.resolve())


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"\[[\d:]+\] \S+:\d+: ", "", text)  # decord's C++ "[16:13:46] /src/...cc:218: " prefixes
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return _one_line(Exception(lines[-1])) if lines else "no message"
