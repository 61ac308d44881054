"""Capture what C code writes to file descriptor 2 during one call, so it can be logged instead of printed.

Why: decord's bundled libav and its C++ logger write straight to fd 2 ("moov atom not found", "ERROR opening:
..."), past Python's `sys.stderr` and `logging`. Opening a broken file is an expected, reported event here (the
probe stage turns it into a dead letter with a reason code), so those lines are noise on the console: the
caller gets them back as text and logs them at DEBUG (`mtvr -v` shows them).

fd 2 belongs to the whole process: while a capture is open, every thread's writes to fd 2 go to it. A lock
keeps captures from nesting, and the callers wrap only the open call (milliseconds), so little else can land
there; whatever does is logged with the decoder's text rather than lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_LOCK = threading.Lock()


class Captured:
    """The text written to fd 2 inside `capture_fd2()`; filled in when the block exits."""

    text: str = ""


@contextmanager
def capture_fd2() -> Iterator[Captured]:
    """Redirect fd 2 to a temporary file for the block; `.text` holds what was written there (stripped)."""
    captured = Captured()
    with _LOCK, tempfile.TemporaryFile() as sink:
        with contextlib.suppress(AttributeError, ValueError):  # no stderr, or it is closed
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace").strip()


def call_logging_fd2(fn: Callable[..., T], /, *args: Any, logger: logging.Logger, what: str, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` with its fd-2 output logged on `logger` at DEBUG (prefixed by `what`), not printed."""
    captured = Captured()
    try:
        with capture_fd2() as captured:
            return fn(*args, **kwargs)
    finally:
        if captured.text:
            logger.debug("%s: %s", what, " | ".join(captured.text.splitlines()))
