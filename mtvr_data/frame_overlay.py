"""The time stamp drawn on every frame a model sees ("12.50s", bottom right).

VITAL's model reads absolute time from the frames themselves: every frame, of the whole video and of a clip
returned by the tool, carries its presentation time, so a clip's frames say where in the video they are
without any text around them. The label is white on a solid dark box (legible whatever the video shows),
sized from the frame's smaller side so that it stays readable at ~224x224 (about 16 px high there, a bit
more than one 14 px vision patch) and does not cover more of a large frame than of a small one.

Text is drawn with Pillow's bundled font, never a system font, so that the pixels are the same on every
machine (the demo corpus does the same for its images).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Font height as a fraction of the frame's smaller side, and its floor in pixels.
FONT_FRACTION = 0.072
MIN_FONT_PX = 9
TEXT_COLOR = (255, 255, 255)
BOX_COLOR = (16, 16, 16)


def format_timestamp(seconds: float) -> str:
    """The label text: seconds with two decimals and an "s", as VITAL writes times ("12.50s")."""
    return f"{seconds:.2f}s"


def draw_timestamp_inplace(frame: np.ndarray, seconds: float) -> None:
    """Draw the label into `frame` (uint8 [H, W, 3]) itself, bottom right: the sampler owns its output array."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
    height, width = frame.shape[:2]
    label = _render_label(format_timestamp(seconds), _font_px(height, width))
    box_h, box_w = label.shape[:2]
    margin = max(1, _font_px(height, width) // 6)
    # A label wider or taller than the frame (only for frames far below the pixel budget) is cut on its left/top.
    box_h, box_w = min(box_h, height - margin), min(box_w, width - margin)
    if box_h <= 0 or box_w <= 0:
        return
    y1, x1 = height - margin, width - margin
    frame[y1 - box_h : y1, x1 - box_w : x1] = label[-box_h:, -box_w:]


def _font_px(height: int, width: int) -> int:
    return max(MIN_FONT_PX, round(min(height, width) * FONT_FRACTION))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _render_label(text: str, font_px: int) -> np.ndarray:
    """The label as a read-only uint8 [h, w, 3] array; cached, since rollouts draw the same labels many times."""
    array = _render(text, font_px)
    array.setflags(write=False)
    return array


def _render(text: str, font_px: int) -> np.ndarray:
    font = _font(font_px)
    pad = max(2, font_px // 4)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    box = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), BOX_COLOR)
    ImageDraw.Draw(box).text((pad - left, pad - top), text, font=font, fill=TEXT_COLOR)
    return np.asarray(box, dtype=np.uint8)
