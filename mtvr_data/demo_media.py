"""The demo corpus's media: scripted videos, two images and two broken files, made with ffmpeg and Pillow.

No real dataset can be downloaded where the project is built and tested, yet every stage (probing, frame
sampling, the clip tool, rewards) needs videos whose content is known, so that an answer can be checked
against what is on screen. Each video here is a plain (or moving) background on which coloured squares
appear between scripted times (`Event`), optionally over background colour changes (`Scene`, the chapters of
VidChapters). The annotation writers in `demo_annotations` state only facts of these scripts.

Bytes are reproducible: single-threaded encoders, bit-exact flags, no metadata, fixed inputs (lavfi sources
have no randomness). Text is drawn with Pillow's bundled font, never ffmpeg's drawtext, which would depend
on the fonts a machine happens to have.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

#: Encoders fast enough for a corpus built in seconds on 2 cores, single-threaded so that the bytes do not
#: depend on thread scheduling.
CODEC_ARGS: dict[str, tuple[str, ...]] = {
    "h264": ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "28", "-threads", "1"),
    "mpeg4": ("-c:v", "mpeg4", "-q:v", "5", "-threads", "1"),
    "vp8": (
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-crf",
        "30",
        "-b:v",
        "400k",
        "-threads",
        "1",
    ),
    "vp9": (
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-row-mt",
        "0",
        "-crf",
        "40",
        "-b:v",
        "0",
        "-threads",
        "1",
    ),
    "av1": (
        "-c:v",
        "libaom-av1",
        "-usage",
        "realtime",
        "-cpu-used",
        "8",
        "-row-mt",
        "0",
        "-crf",
        "40",
        "-threads",
        "1",
    ),
}
MUXERS = {".mp4": "mp4", ".avi": "avi", ".webm": "webm"}
BITEXACT = ("-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1", "-an")
#: A 1/30000 time base holds every frame duration used here (1/10, 1/15, 1/24, 1/25, 1/30, 1001/30000 s) exactly.
VFR_TIMEBASE = 30000
ENCODE_TIMEOUT_S = 300.0

RED, GREEN, BLUE, YELLOW = "FF0000", "00FF00", "0000FF", "FFFF00"
CYAN, MAGENTA, WHITE, ORANGE, PURPLE = "00FFFF", "FF00FF", "FFFFFF", "FF8000", "8000FF"
NTSC = Fraction(30000, 1001)

#: Where a square sits: (x, y) as fractions of the frame; its side is BOX_SIDE of the frame height.
LEFT, CENTER, RIGHT, TOP_LEFT = (0.08, 0.25), (0.33, 0.25), (0.58, 0.25), (0.04, 0.04)
BOX_SIDE = 0.4


@dataclass(frozen=True, slots=True)
class Event:
    """A filled square of `color` (RGB hex) visible for start <= t <= end, at `where` (see LEFT, RIGHT...)."""

    label: str
    color: str
    start: float
    end: float
    where: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Scene:
    """The background colour for start <= t < end."""

    label: str
    color: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """One scripted video. `segments` [(fps, seconds), ...] makes it variable-frame-rate (concatenated rates)."""

    file: str  # relative to the corpus's videos/ folder
    duration: float  # seconds asked of the lavfi source (see `true_duration` for what comes out)
    fps: Fraction  # unused when `segments` is set
    size: tuple[int, int]
    codec: str
    background: str  # RGB hex, or "testsrc2" for ffmpeg's moving test pattern
    events: tuple[Event, ...] = ()
    scenes: tuple[Scene, ...] = ()
    moving: bool = False  # a small grey square slides along the bottom (motion without meaning)
    segments: tuple[tuple[Fraction, float], ...] = field(default=())

    @property
    def vfr(self) -> bool:
        return bool(self.segments)

    @property
    def num_frames(self) -> int:
        """Frames ffmpeg's lavfi sources emit: every t = k / fps with t < duration, per segment."""
        if self.segments:
            return sum(math.ceil(Fraction(str(d)) * r) for r, d in self.segments)
        return math.ceil(Fraction(str(self.duration)) * self.fps)

    @property
    def true_duration(self) -> float:
        """End time of the last frame: what a probe reads (30.03 s for 30 s at 29.97 fps)."""
        if self.segments:
            return float(sum(math.ceil(Fraction(str(d)) * r) / r for r, d in self.segments))
        return float(self.num_frames / self.fps)

    @property
    def avg_fps(self) -> float:
        return self.num_frames / self.true_duration

    def box(self, event: Event) -> tuple[int, int, int, int]:
        """Pixel box (x, y, w, h) of an event's square, even-aligned."""
        width, height = self.size
        side = _even(height * BOX_SIDE)
        return _even(width * event.where[0]), _even(height * event.where[1]), side, side


def _even(value: float) -> int:
    return int(value) // 2 * 2


# --- the scripted videos (the annotation writers refer to these by name) -------------------------------------

CHARADES_A = VideoSpec(
    "DM0A1.mp4",
    30,
    Fraction(24),
    (320, 240),
    "h264",
    "202020",
    events=(Event("red square", RED, 5.0, 12.0, LEFT), Event("blue square", BLUE, 15.0, 24.5, RIGHT)),
)
CHARADES_B = VideoSpec(
    "DM0B2.mp4",
    30,
    NTSC,
    (240, 180),
    "h264",
    "101040",
    moving=True,
    events=(Event("green square", GREEN, 2.0, 9.5, CENTER), Event("yellow square", YELLOW, 18.0, 27.0, TOP_LEFT)),
)
CHARADES_C = VideoSpec(
    "DM0C3.mp4",
    20,
    Fraction(25),
    (160, 120),
    "h264",
    "testsrc2",
    events=(Event("magenta square", MAGENTA, 4.0, 10.0, LEFT), Event("cyan square", CYAN, 14.0, 20.0, RIGHT)),
)
NEXT_A = VideoSpec(
    "90000000001.mp4",
    40,
    NTSC,
    (320, 180),
    "h264",
    "303030",
    events=(
        Event("red square", RED, 3.0, 8.0, LEFT),
        Event("blue square", BLUE, 12.0, 18.0, RIGHT),
        Event("green square", GREEN, 22.0, 26.0, CENTER),
        Event("green square", GREEN, 31.0, 35.0, CENTER),
    ),
)
NEXT_B = VideoSpec(
    "90000000002.mp4",
    25,
    Fraction(25),
    (160, 120),
    "h264",
    "102010",
    moving=True,
    events=(Event("yellow square", YELLOW, 5.0, 11.0, LEFT), Event("cyan square", CYAN, 14.0, 20.0, RIGHT)),
)
R1_FLASH = VideoSpec(
    "demo/r1_flash.mp4",
    15,
    Fraction(10),
    (160, 120),
    "h264",
    "202020",
    events=(
        Event("red square", RED, 2.0, 4.0, CENTER),
        Event("red square", RED, 6.0, 8.0, CENTER),
        Event("red square", RED, 10.0, 12.0, CENTER),
    ),
)
R1_MPEG4 = VideoSpec(
    "demo/r1_mpeg4.avi",
    12,
    Fraction(25),
    (320, 240),
    "mpeg4",
    "303030",
    events=(Event("blue square", BLUE, 3.0, 9.0, LEFT),),
)
R1_VP8 = VideoSpec(
    "demo/r1_vp8.webm",
    10,
    Fraction(24),
    (240, 180),
    "vp8",
    "202020",
    moving=True,
    events=(Event("green square", GREEN, 2.0, 7.0, RIGHT),),
)
#: AV1: decord's bundled libavcodec cannot decode it, so every stage's ffmpeg fallback runs in the demo.
R1_AV1 = VideoSpec(
    "demo/r1_av1.mp4",
    10,
    Fraction(24),
    (160, 120),
    "av1",
    "202040",
    events=(Event("yellow square", YELLOW, 1.0, 5.0, TOP_LEFT),),
)
ANET_VFR = VideoSpec(
    "v_mtvrVfr0001.mp4",
    30,
    Fraction(0),
    (240, 180),
    "h264",
    "202020",
    segments=((Fraction(10), 10), (Fraction(30), 10), (Fraction(15), 10)),
    events=(
        Event("red square", RED, 2.0, 8.0, LEFT),
        Event("green square", GREEN, 12.0, 18.0, CENTER),
        Event("blue square", BLUE, 22.0, 28.0, RIGHT),
    ),
)
ANET_B = VideoSpec(
    "v_mtvrANet002.mp4",
    60,
    Fraction(30),
    (320, 180),
    "h264",
    "202020",
    events=(
        Event("white square", WHITE, 5.0, 20.0, LEFT),
        Event("orange square", ORANGE, 25.0, 45.0, RIGHT),
        Event("purple square", PURPLE, 40.0, 55.0, CENTER),
    ),
    scenes=(Scene("dark teal background", "104040", 30.0, 60.0),),
)
LONG_A = VideoSpec(
    "longvila_videos/mtvrLong001.mp4",
    240,
    Fraction(24),
    (320, 240),
    "h264",
    "102060",
    events=(
        Event("red square", RED, 20.0, 35.0, LEFT),
        Event("yellow square", YELLOW, 80.0, 95.0, RIGHT),
        Event("white square", WHITE, 150.0, 170.0, CENTER),
        Event("cyan square", CYAN, 200.0, 230.0, LEFT),
    ),
    scenes=(
        Scene("blue background", "102060", 0.0, 60.0),
        Scene("green background", "106020", 60.0, 120.0),
        Scene("purple background", "402060", 120.0, 180.0),
        Scene("brown background", "604020", 180.0, 240.0),
    ),
)
LONG_B = VideoSpec(
    "longvila_videos/mtvrLong002.webm",
    150,
    Fraction(15),
    (160, 120),
    "vp9",
    "202020",
    moving=True,
    events=(
        Event("green square", GREEN, 10.0, 30.0, LEFT),
        Event("red square", RED, 60.0, 80.0, RIGHT),
        Event("blue square", BLUE, 110.0, 140.0, CENTER),
    ),
)
CHAPTERS_A = VideoSpec(
    "mtvrChapt01.mp4",
    180,
    Fraction(25),
    (240, 180),
    "h264",
    "102060",
    events=(Event("white square", WHITE, 50.0, 70.0, CENTER), Event("yellow square", YELLOW, 110.0, 130.0, LEFT)),
    scenes=(
        Scene("dark blue background", "102060", 0.0, 40.0),
        Scene("green background", "106020", 40.0, 95.0),
        Scene("red background", "601010", 95.0, 150.0),
        Scene("grey background", "606060", 150.0, 180.0),
    ),
)

VIDEOS: tuple[VideoSpec, ...] = (
    CHARADES_A,
    CHARADES_B,
    CHARADES_C,
    NEXT_A,
    NEXT_B,
    R1_FLASH,
    R1_MPEG4,
    R1_VP8,
    R1_AV1,
    ANET_VFR,
    ANET_B,
    LONG_A,
    LONG_B,
    CHAPTERS_A,
)

#: The source of the truncated file: a valid mp4 (index written last, as ffmpeg does by default) cut in half.
TRUNCATED_SOURCE = VideoSpec(
    "broken_truncated.mp4",
    10,
    Fraction(25),
    (160, 120),
    "h264",
    "202020",
    events=(Event("red square", RED, 2.0, 6.0, CENTER),),
)
BROKEN = {"broken_empty.mp4": "video_empty", "broken_truncated.mp4": "video_truncated"}
MISSING_VIDEO = "ZZ9ZZ.mp4"  # named by a Charades-STA line, never written

SQUARES_IMAGE, SQUARES_COUNT = "demo/squares_4.png", 4
OCR_IMAGE, OCR_TEXT = "demo/sign_ocr.png", "MTVR 42"


# --- ffmpeg ---------------------------------------------------------------------------------------------------


def filter_graph(spec: VideoSpec) -> str:
    """The lavfi graph drawing a spec; its output pad is [v]."""
    width, height = spec.size
    chains: list[str] = []
    if spec.vfr:
        pads = []
        for i, (rate, seconds) in enumerate(spec.segments):
            chains.append(f"{_source(spec.background, width, height, rate, seconds)},settb=1/{VFR_TIMEBASE}[s{i}]")
            pads.append(f"[s{i}]")
        chains.append(f"{''.join(pads)}concat=n={len(pads)}:v=1:a=0[base]")
    else:
        chains.append(f"{_source(spec.background, width, height, spec.fps, spec.duration)}[base]")
    last = "base"
    if spec.moving:
        side = _even(height / 10)
        rate = spec.segments[0][0] if spec.vfr else spec.fps
        chains.append(f"color=c=0xB0B0B0:s={side}x{side}:r={rate}:d={spec.true_duration}[mover]")
        chains.append(f"[{last}][mover]overlay=x='mod(t*40,W-w)':y=H-h-4:eval=frame:shortest=1[moved]")
        last = "moved"
    draws = [
        f"drawbox=x=0:y=0:w=iw:h=ih:color=0x{s.color}:t=fill:enable='gte(t,{s.start})*lt(t,{s.end})'"
        for s in spec.scenes
    ]
    for event in spec.events:
        x, y, w, h = spec.box(event)
        draws.append(
            f"drawbox=x={x}:y={y}:w={w}:h={h}:color=0x{event.color}:t=fill:"
            f"enable='between(t,{event.start},{event.end})'"
        )
    draws.append("format=yuv420p")
    chains.append(f"[{last}]{','.join(draws)}[v]")
    return ";".join(chains)


def _source(background: str, width: int, height: int, rate: Fraction, seconds: float) -> str:
    if background == "testsrc2":
        return f"testsrc2=s={width}x{height}:r={rate}:d={seconds}"
    return f"color=c=0x{background}:s={width}x{height}:r={rate}:d={seconds}"


def encode_command(ffmpeg: str, spec: VideoSpec, target: Path) -> list[str]:
    """The ffmpeg command writing `spec` to `target` (the muxer is named, so any temporary name works)."""
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-filter_complex",
        filter_graph(spec),
        "-map",
        "[v]",
        *CODEC_ARGS[spec.codec],
        *BITEXACT,
    ]
    if spec.vfr:  # keep each frame's own timestamp instead of resampling to one rate
        cmd += ["-fps_mode", "passthrough", "-video_track_timescale", str(VFR_TIMEBASE)]
    return [*cmd, "-f", MUXERS[Path(spec.file).suffix], "-y", str(target)]


def encode(ffmpeg: str, spec: VideoSpec, videos: Path) -> Path:
    """Write one video; a temporary name then a rename, so an interrupted build never leaves a half file."""
    out = videos / spec.file
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    proc = subprocess.run(
        encode_command(ffmpeg, spec, tmp), capture_output=True, timeout=ENCODE_TIMEOUT_S, check=False
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed on {spec.file}: {proc.stderr.decode('utf-8', 'replace').strip()[-800:]}")
    tmp.replace(out)
    return out


def write_broken(ffmpeg: str, videos: Path) -> None:
    """broken_empty.mp4 (0 bytes) and broken_truncated.mp4 (a valid mp4 cut before its moov atom)."""
    (videos / "broken_empty.mp4").write_bytes(b"")
    whole = encode(ffmpeg, TRUNCATED_SOURCE, videos)
    data = whole.read_bytes()
    moov = data.rfind(b"moov")
    if moov < len(data) // 2:
        raise RuntimeError("expected the moov atom at the end of the mp4 (was +faststart set?)")
    whole.write_bytes(data[: len(data) // 2])


def available_encoders(ffmpeg: str) -> set[str]:
    """Names in `ffmpeg -encoders` (a build on PATH may lack libx264, libvpx or libaom)."""
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-encoders"], capture_output=True, timeout=60, check=False
    )
    names = set()
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0].startswith("V"):
            names.add(parts[1])
    return names


def required_encoders(specs: tuple[VideoSpec, ...] = VIDEOS) -> set[str]:
    return {CODEC_ARGS[s.codec][CODEC_ARGS[s.codec].index("-c:v") + 1] for s in specs} | {"libx264"}


# --- images (Pillow) ------------------------------------------------------------------------------------------


def write_images(videos: Path) -> None:
    """squares_4.png (four red squares on white) and sign_ocr.png (white text on dark blue)."""
    from PIL import Image, ImageDraw, ImageFont

    squares = Image.new("RGB", (320, 240), (255, 255, 255))
    draw = ImageDraw.Draw(squares)
    for x, y in ((30, 30), (200, 40), (60, 150), (220, 160))[:SQUARES_COUNT]:
        draw.rectangle((x, y, x + 50, y + 50), fill=(255, 0, 0))
    _save_png(squares, videos / SQUARES_IMAGE)

    sign = Image.new("RGB", (320, 120), (16, 32, 96))
    draw = ImageDraw.Draw(sign)
    font = ImageFont.load_default(size=44)  # Pillow's bundled font: the same pixels on every machine
    draw.text((160, 60), OCR_TEXT, fill=(255, 255, 255), font=font, anchor="mm")
    _save_png(sign, videos / OCR_IMAGE)


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False)
