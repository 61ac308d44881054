"""What every engine needs from a message's media: the frame arrays in order, their frame rate, and encodings.

Messages carry `Frames` objects (mtvr_data.frames) in their video and image parts. The engines only read three
attributes of them (`frames`, `times`, `sample_fps`), so they are typed here by a Protocol: the engines neither
import the frame sampler nor decode anything, and tests can pass any object with those attributes.

The walk over parts (`iter_media`: message order, then part order) is the
order in which a processor pairs arrays with the placeholders of the rendered text.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

from model.families import DEFAULT_FAMILY, ModelFamily

MEDIA_TYPES: tuple[str, ...] = ("image", "video")


@runtime_checkable
class FramesLike(Protocol):
    """The part of `mtvr_data.frames.Frames` the engines read: uint8 [T, H, W, 3] frames sampled at `sample_fps`."""

    frames: np.ndarray
    times: list[float]
    sample_fps: float


def iter_media(messages: list[dict[str, Any]]) -> Iterator[tuple[str, FramesLike]]:
    """(kind, frames) for each image or video part, in the order the rendered prompt holds their placeholders."""
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type")
            if kind in MEDIA_TYPES:
                yield kind, part[kind]


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with each media part reduced to its type, which is all the chat template reads.

    Rendering never needs the pixels, and a bare `{"type": "video"}` keeps the processor from trying to load
    anything itself.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [{"type": part["type"]} if part.get("type") in MEDIA_TYPES else part for part in content]
        out.append({**message, "content": content})
    return out


def frame_array(frames: FramesLike) -> np.ndarray:
    """The [T, H, W, 3] uint8 array of a Frames object, checked, so a bad array fails here with a clear message."""
    array = np.asarray(frames.frames)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    # The frame cache hands out read-only arrays (shared between rollouts); torch needs a writable buffer.
    return array if array.flags.writeable else array.copy()


def sample_fps(frames: FramesLike) -> float:
    """The rate the frames were sampled at; Qwen2.5-VL's temporal positions are 2 frames / fps per grid step."""
    fps = float(frames.sample_fps)
    if not fps > 0:
        raise ValueError(f"sample_fps must be > 0, got {fps}")
    return fps


def processor_media(
    messages: list[dict[str, Any]], family: ModelFamily = DEFAULT_FAMILY
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, Any]]]:
    """(images, videos, video metadata) of the messages, in placeholder order, as the family's processor takes them.

    Videos go in as the sampled arrays with the family's metadata (`ModelFamily.video_metadata`: the sampling rate
    for Qwen2.5-VL's temporal positions, the frames' times for Qwen3-VL's time text) so that, with the family's
    processor keywords (`do_sample_frames=False`, ...), the processor neither resamples them nor misplaces them in
    time. Shared by the engines and the trainers, so a prompt is turned into model inputs the same way when it is
    generated from and trained on.
    """
    images: list[np.ndarray] = []
    videos: list[np.ndarray] = []
    metadata: list[dict[str, Any]] = []
    for kind, frames in iter_media(messages):
        array = frame_array(frames)
        if kind == "image":
            images.append(array[0])
        else:
            videos.append(array)
            sample_fps(frames)  # checked here, with the array, for every family
            metadata.append(family.video_metadata(frames, int(array.shape[0])))
    return images, videos, metadata


def encode_frame(frame: np.ndarray, image_format: str = "JPEG", quality: int = 90) -> str:
    """One [H, W, 3] uint8 frame as base64 JPEG or PNG (PNG is lossless, JPEG is what vLLM's video loader reads)."""
    from PIL import Image

    buffer = io.BytesIO()
    fmt = image_format.upper()
    if fmt == "JPEG":
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    elif fmt == "PNG":
        Image.fromarray(frame).save(buffer, format="PNG")
    else:
        raise ValueError(f"image_format must be JPEG or PNG, got {image_format!r}")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_data_url(frame: np.ndarray, image_format: str = "JPEG", quality: int = 90) -> str:
    """`data:image/...;base64,...`, the form every OpenAI-compatible server takes for an inline image."""
    mime = "image/jpeg" if image_format.upper() == "JPEG" else "image/png"
    return f"data:{mime};base64,{encode_frame(frame, image_format, quality)}"


def video_data_url(frames: FramesLike, quality: int = 90) -> str:
    """`data:video/jpeg;base64,<f1>,<f2>,...`: vLLM's form for already-sampled frames (each a base64 JPEG)."""
    array = frame_array(frames)
    return "data:video/jpeg;base64," + ",".join(encode_frame(frame, "JPEG", quality) for frame in array)
