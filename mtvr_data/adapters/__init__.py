"""Source adapters: each reads one dataset's native annotation files into `Sample`s.

Importing this package registers every adapter, so `get_adapter("nextgqa")` works by name.
"""

from mtvr_data.adapters import charades_sta  # noqa: F401  (registers)
from mtvr_data.adapters import activitynet_captions  # noqa: F401
from mtvr_data.adapters import qvhighlights  # noqa: F401
from mtvr_data.adapters import rextime  # noqa: F401
from mtvr_data.adapters import vidchapters  # noqa: F401
from mtvr_data.adapters.base import AdapterError, RawRecord, SourceAdapter
from mtvr_data.adapters.registry import UnknownSourceError, available_sources, get_adapter, make_adapter, register

__all__ = ["AdapterError", "RawRecord", "SourceAdapter", "UnknownSourceError", "available_sources", "get_adapter", "make_adapter", "register"]
