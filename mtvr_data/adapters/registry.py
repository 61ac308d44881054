"""Source name -> adapter class, so a pipeline config or the command line can name a source.

Built-in adapters register with `@register` when `mtvr_data.adapters` is imported. Adapters of other packages
register through the entry point group `mtvr.adapters` (`ENTRY_POINT_GROUP`): each entry point's name is the source
name and its object an adapter class (a `SourceAdapter` subclass whose `name` is that name), e.g. in the package's
pyproject.toml:

    [project.entry-points."mtvr.adapters"]
    my_clips = "my_package.adapter:MyClips"

The group is listed once, on first use, without importing anything (`available_sources` needs only the names); an
entry point's module is imported when its source is first asked for (`get_adapter`). A broken entry point (its
module fails to import, its object is not such a class, its name is taken by a built-in adapter) is an
`AdapterPluginError` naming the distribution and the entry point, raised only where that source is used (a config
naming it is refused with that line); `mtvr sources` warns about it and lists the others.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

from mtvr_data.adapters.base import SourceAdapter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mtvr.adapters"
BUILT_IN = "built-in"


class UnknownSourceError(LookupError):
    """A source name no adapter is registered under."""


class AdapterPluginError(LookupError):
    """An adapter entry point that cannot be used; the message names its distribution and entry point."""


_ADAPTERS: dict[str, type[SourceAdapter]] = {}
#: source name -> its entry point (listed once, lazily; `clear_entry_point_cache` lists again).
_ENTRY_POINTS: dict[str, metadata.EntryPoint] | None = None
#: source name -> the class its entry point loaded, or the error it raised (each entry point is loaded once).
_LOADED: dict[str, type[SourceAdapter] | AdapterPluginError] = {}


def clear_entry_point_cache() -> None:
    """Forget the listed and loaded entry points (after installing a package into a running process; tests)."""
    global _ENTRY_POINTS
    _ENTRY_POINTS = None
    _LOADED.clear()


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _describe(ep: metadata.EntryPoint) -> str:
    return f"entry point '{ep.name} = {ep.value}' ({ENTRY_POINT_GROUP}) of {_distribution(ep)}"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The `mtvr.adapters` entry points by name, listed once; names taken by built-in adapters are left out."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        found: dict[str, metadata.EntryPoint] = {}
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _ADAPTERS:
                log.warning("ignoring %s: %r is a built-in source", _describe(ep), ep.name)
            elif ep.name in found and found[ep.name].value != ep.value:
                log.warning("ignoring %s: %r is already %s", _describe(ep), ep.name, _describe(found[ep.name]))
            else:
                found.setdefault(ep.name, ep)
        _ENTRY_POINTS = found
    return _ENTRY_POINTS


def _load_entry_point(name: str, ep: metadata.EntryPoint) -> type[SourceAdapter]:
    """The adapter class of one entry point, loaded once; an `AdapterPluginError` (also remembered) if unusable."""
    if name not in _LOADED:
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party module is reported, not raised
            _LOADED[name] = AdapterPluginError(
                f"source {name!r}: {_describe(ep)} failed to load: {type(exc).__name__}: {exc}"
            )
        else:
            if not (isinstance(obj, type) and issubclass(obj, SourceAdapter)):
                _LOADED[name] = AdapterPluginError(
                    f"source {name!r}: {_describe(ep)} is {obj!r}, not a SourceAdapter subclass"
                )
            elif getattr(obj, "name", None) != name:
                _LOADED[name] = AdapterPluginError(
                    f"source {name!r}: {_describe(ep)} loads {obj.__name__}, whose name is "
                    f"{getattr(obj, 'name', None)!r}; the entry point's name and the class's `name` must agree"
                )
            else:
                _LOADED[name] = obj
    loaded = _LOADED[name]
    if isinstance(loaded, AdapterPluginError):
        raise loaded
    return loaded


def adapter_origins() -> dict[str, str]:
    """Source name -> where its adapter comes from: `built-in`, or `entry point <dist> (<module:object>)`."""
    out = dict.fromkeys(_ADAPTERS, BUILT_IN)
    for name, ep in _entry_points().items():
        out[name] = f"{_distribution(ep)} ({ep.value})"
    return dict(sorted(out.items()))


def register(cls: type[SourceAdapter]) -> type[SourceAdapter]:
    """Class decorator: make `cls` reachable by its `name`."""
    if cls.name in _ADAPTERS and _ADAPTERS[cls.name] is not cls:
        raise ValueError(f"two adapters are registered as {cls.name!r}")
    _ADAPTERS[cls.name] = cls
    return cls


def available_sources() -> list[str]:
    """Source names, sorted: the built-in adapters and the `mtvr.adapters` entry points (not loaded to list them)."""
    return sorted(set(_ADAPTERS) | set(_entry_points()))


def get_adapter(name: str) -> type[SourceAdapter]:
    """The adapter class registered as `name`; the error lists the known names. An entry point's class is loaded
    on first use; one that cannot be used raises `AdapterPluginError` naming its distribution and entry point."""
    if name in _ADAPTERS:
        return _ADAPTERS[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownSourceError(f"unknown source {name!r}; known sources: {', '.join(available_sources())}")
    return _load_entry_point(name, ep)


def make_adapter(name: str, annotations: Any, **options: Any) -> SourceAdapter:
    """An adapter instance for source `name` reading `annotations`, with per-source `options`."""
    return get_adapter(name)(annotations, **options)


def option_names(cls: type) -> frozenset[str]:
    """The keyword options an adapter class accepts: the keyword-only parameters of its `__init__` and of the
    classes it forwards `**options` to, up its MRO. A config's adapter options are checked against these when the
    file is read, so a typo fails there instead of on a worker."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return frozenset(names)
