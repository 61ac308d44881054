"""The one error type for a config that cannot be used: build, eval and train configs all raise it.

The `mtvr` command prints it as one line (`FILE: key.path: what is allowed`) and exits 2, with no traceback
(`mtvr -v` shows it), so a user fixes the named key instead of reading a worker's stack.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value or key that cannot be used. `str()` is the whole message: file, key path, what is allowed."""
