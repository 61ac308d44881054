"""Source adapters: each reads one dataset's native annotation files into `Sample`s.

Importing this package registers every built-in adapter, so `get_adapter("nextgqa")` works by name. Adapters of
other packages register through the `mtvr.adapters` entry point group, loaded on first use (`registry`).
"""

from mtvr_data.adapters import (  # noqa: F401  (importing registers each adapter)
    activitynet_captions,
    charades_sta,
    longvideo_reason,
    nextgqa,
    nextqa,
    qvhighlights,
    rextime,
    samples,
    vidchapters,
    video_r1,
)
from mtvr_data.adapters.base import AdapterError, RawRecord, SourceAdapter
from mtvr_data.adapters.registry import (
    AdapterPluginError,
    UnknownSourceError,
    adapter_origins,
    available_sources,
    get_adapter,
    make_adapter,
    register,
)

__all__ = [
    "AdapterError",
    "AdapterPluginError",
    "RawRecord",
    "SourceAdapter",
    "UnknownSourceError",
    "adapter_origins",
    "available_sources",
    "get_adapter",
    "make_adapter",
    "register",
]
