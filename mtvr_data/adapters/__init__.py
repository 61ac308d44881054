"""Source adapters: each reads one dataset's native annotation files into `Sample`s.

Importing this package registers every adapter, so `get_adapter("nextgqa")` works by name.
"""

from mtvr_data.adapters import (  # noqa: F401  (importing registers each adapter)
    activitynet_captions,
    charades_sta,
    longvideo_reason,
    nextgqa,
    nextqa,
    qvhighlights,
    rextime,
    vidchapters,
    video_r1,
)
from mtvr_data.adapters.base import AdapterError, RawRecord, SourceAdapter
from mtvr_data.adapters.registry import UnknownSourceError, available_sources, get_adapter, make_adapter, register

__all__ = [
    "AdapterError",
    "RawRecord",
    "SourceAdapter",
    "UnknownSourceError",
    "available_sources",
    "get_adapter",
    "make_adapter",
    "register",
]
