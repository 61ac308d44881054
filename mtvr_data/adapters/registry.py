"""Source name -> adapter class, so a pipeline config or the command line can name a source."""

from __future__ import annotations

from typing import Any

from mtvr_data.adapters.base import SourceAdapter


class UnknownSourceError(LookupError):
    """A source name no adapter is registered under."""


_ADAPTERS: dict[str, type[SourceAdapter]] = {}


def register(cls: type[SourceAdapter]) -> type[SourceAdapter]:
    """Class decorator: make `cls` reachable by its `name`."""
    if cls.name in _ADAPTERS and _ADAPTERS[cls.name] is not cls:
        raise ValueError(f"two adapters are registered as {cls.name!r}")
    _ADAPTERS[cls.name] = cls
    return cls


def available_sources() -> list[str]:
    """Registered source names, sorted."""
    return sorted(_ADAPTERS)


def get_adapter(name: str) -> type[SourceAdapter]:
    """The adapter class registered as `name`; the error lists the known names."""
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise UnknownSourceError(f"unknown source {name!r}; known sources: {', '.join(available_sources())}") from None


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
