"""Time values of the native formats, converted to float seconds at the adapter boundary.

Sources write time as plain seconds (int or float, sometimes as strings), clock strings ("mm:ss",
"hh:mm:ss.ff"), "12.5s", frame indices, or percentages of the duration. Everything downstream sees
float seconds only; a value that cannot be converted raises `TimeFormatError` with the reason.
"""

from __future__ import annotations

import math
import re

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SECONDS = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*(?:s|sec|secs|seconds?)?$", re.IGNORECASE)
_PERCENT = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*%$")


class TimeFormatError(ValueError):
    """A time value that cannot be read as seconds."""


def parse_seconds(value: object, *, duration: float | None = None) -> float:
    """Seconds from a number, "12.5", "12.5s", "mm:ss", "hh:mm:ss(.ff)" or (with `duration`) "45%".

    >>> parse_seconds("01:02:03.5")
    3723.5
    >>> parse_seconds("50%", duration=30)
    15.0
    """
    if isinstance(value, bool):
        raise TimeFormatError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if m := _SECONDS.match(text):
            out = float(m.group(1))
        elif m := _CLOCK.match(text):
            hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
            if minutes >= 60 or seconds >= 60:
                raise TimeFormatError(f"clock field out of range: {value!r}")
            out = hours * 3600 + minutes * 60 + seconds
        elif m := _PERCENT.match(text):
            if duration is None:
                raise TimeFormatError(f"percentage {value!r} needs the video duration")
            out = float(m.group(1)) / 100.0 * duration
        else:
            raise TimeFormatError(f"not a time: {value!r}")
    else:
        raise TimeFormatError(f"not a time: {value!r}")
    if not math.isfinite(out):
        raise TimeFormatError(f"time is not finite: {value!r}")
    return out
