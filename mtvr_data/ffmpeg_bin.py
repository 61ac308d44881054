"""Find the ffmpeg binary once, for every module that shells out to it.

Machines differ: a workstation may have ffmpeg on PATH, a fresh container only has the one shipped inside
the imageio-ffmpeg wheel (a pinned static build, with no ffprobe beside it). Callers must not care which, so
they ask `ffmpeg_exe()` and use the answer; nothing in the project relies on ffprobe.
"""

from __future__ import annotations

import functools
import shutil

INSTALL_HINT = (
    "no ffmpeg binary found: put ffmpeg on PATH (e.g. `apt-get install ffmpeg`) "
    "or `pip install imageio-ffmpeg`, whose wheel ships a static ffmpeg"
)


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg to run: the one on PATH if any (the user chose it), else imageio-ffmpeg's.

    Cached, because the lookup walks PATH and imageio-ffmpeg checks its binary on every call, and probing
    a corpus asks thousands of times. Raises RuntimeError with an install hint when there is none.
    """
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    wheel = wheel_ffmpeg_exe()
    if wheel:
        return wheel
    raise RuntimeError(INSTALL_HINT)


@functools.cache
def wheel_ffmpeg_exe() -> str | None:
    """The imageio-ffmpeg wheel's binary, or None when the wheel (or its binary) is missing.

    Separate from `ffmpeg_exe` for callers that want the pinned build on purpose (the demo corpus,
    whose bytes should not depend on whatever ffmpeg a machine has on PATH).
    """
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # the wheel is installed but its binary was removed or is for another platform
        return None
