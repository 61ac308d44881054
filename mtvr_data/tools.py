"""The visual toolbox: tools a model may call while it reasons, their JSON schemas, and safe executors.

VITAL's one tool, `get_video_clip_frame(start_time, end_time)`, returns the frames of a clip of the
sample's own video. The model's call is untrusted input: the executor is bound to one sample's media
(`MediaContext`) when the rollout starts, so no argument can name a file, and every call is validated
strictly (nothing is clamped) and answered with a short error text instead of an exception, so one bad
call can never end a rollout or a batch.

Tools live in a `ToolRegistry` so more can be added without touching the rollout loop: the registry
gives the schemas for the system prompt and binds executors to a sample.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mtvr_data.frames import FrameBudget, FrameCache, FrameError, Frames, sample_frames

log = logging.getLogger(__name__)

#: The clip tool's frame rules (docs/papers.md): 2 fps, at most 64 frames, ~224x224 each, time stamps drawn.
CLIP_BUDGET = FrameBudget(fps=2.0, max_frames=64, min_frames=2, max_pixels=64 * 28 * 28, overlay=True)
#: The text after a clip's frames in the tool turn (`clip_caption`); part of what the model sees.
CLIP_CAPTION = "Video clip from {start:.2f} to {end:.2f} seconds."
#: A clip must be longer than this (docs/papers.md: end - start > 1 s).
MIN_CLIP_S = 1.0


@dataclass(frozen=True, slots=True)
class MediaContext:
    """The one video a rollout's tools may read: fixed by the pipeline, never by the model.

    `path` is a local file: for media in an object store, the rollout's staged copy (`media_staging`), which the
    rollout holds in the scratch cache until its conversations are over, so no clip finds it evicted.
    """

    path: str
    duration: float
    budget: FrameBudget = CLIP_BUDGET
    cache: FrameCache | None = None


@dataclass(slots=True)
class ToolResult:
    """What a call produced: `text` is what the model reads in the tool turn (clip caption or error)."""

    name: str | None
    arguments: Any
    ok: bool
    text: str
    frames: Frames | None = None
    error: str | None = None

    @property
    def returned_frames(self) -> bool:
        """Whether the call counts for the tool bonus (docs/papers.md: a call that returned frames)."""
        return self.ok and self.frames is not None and len(self.frames.times) > 0


class ToolArgumentError(Exception):
    """A call's arguments break the tool's rules; `code` is counted, `message` is shown to the model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Tool(ABC):
    """A tool: its name, description and JSON-schema parameters, and how to run it on a bound video."""

    name: str
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        """The OpenAI / Qwen function schema that goes into the system prompt's <tools> block."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @abstractmethod
    def run(self, ctx: MediaContext, arguments: dict[str, Any]) -> ToolResult:
        """Run on validated-by-type arguments; raise `ToolArgumentError` for a rule the call breaks."""


def _number(arguments: dict[str, Any], key: str) -> float:
    value = arguments[key]
    # bool is an int in Python, and a numeric-looking string is still a string: both are refused.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolArgumentError("not_a_number", f"Error: {key} must be a number of seconds, got {_short(value)}.")
    if not math.isfinite(value):
        raise ToolArgumentError("not_finite", f"Error: {key} must be a finite number of seconds.")
    return float(value)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class VideoClipTool(Tool):
    """`get_video_clip_frame(start_time, end_time)`: the frames of [start, end] at 2 fps, time-stamped."""

    name = "get_video_clip_frame"
    description = (
        "Get the frames of a clip of the video between start_time and end_time (in seconds), sampled at "
        f"{CLIP_BUDGET.fps:g} frames per second up to {CLIP_BUDGET.max_frames} frames (a longer clip is sampled "
        "evenly), each frame with its time. Use it to look closely at a moment."
    )
    parameters = {
        "type": "object",
        "properties": {
            "start_time": {"type": "number", "description": "Start of the clip in seconds."},
            "end_time": {"type": "number", "description": "End of the clip in seconds."},
        },
        "required": ["start_time", "end_time"],
    }

    def run(self, ctx: MediaContext, arguments: dict[str, Any]) -> ToolResult:
        expected = set(self.parameters["required"])
        missing, extra = expected - set(arguments), set(arguments) - expected
        if missing:
            raise ToolArgumentError("missing_argument", f"Error: missing argument {sorted(missing)[0]}.")
        if extra:
            raise ToolArgumentError("unexpected_argument", f"Error: unexpected argument {_short(sorted(extra)[0])}.")
        start, end = _number(arguments, "start_time"), _number(arguments, "end_time")
        if start < 0:
            raise ToolArgumentError("negative_time", "Error: start_time must not be negative.")
        if end <= start:
            raise ToolArgumentError("reversed_window", "Error: end_time must be greater than start_time.")
        if end > ctx.duration:
            raise ToolArgumentError(
                "past_end", f"Error: end_time {end:.2f} is past the end of the video ({ctx.duration:.2f} seconds)."
            )
        if end - start <= MIN_CLIP_S:
            raise ToolArgumentError("window_too_short", f"Error: the clip must be longer than {MIN_CLIP_S:g} second.")
        frames = sample_frames(ctx.path, start=start, end=end, budget=ctx.budget, cache=ctx.cache)
        return ToolResult(
            name=self.name,
            arguments=arguments,
            ok=True,
            text=clip_caption(start, end),
            frames=frames,
        )


def clip_caption(start: float, end: float) -> str:
    """The text after a clip's frames in the tool turn (docs/papers.md), seconds with two decimals."""
    return CLIP_CAPTION.format(start=start, end=end)


@dataclass
class ToolRegistry:
    """Tools by name; `schemas()` for the system prompt, `bind()` for one sample's executor."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolRegistry:
        registry = cls()
        for tool in tools:
            registry.register(tool)
        return registry

    def register(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self.tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self.tools.values()]

    def bind(self, ctx: MediaContext) -> BoundTools:
        return BoundTools(self, ctx)


@dataclass
class BoundTools:
    """The registry's tools bound to one sample's video: `execute` answers every call, never raises."""

    registry: ToolRegistry
    ctx: MediaContext

    def execute(self, name: Any, arguments: Any) -> ToolResult:
        """Run a call as the model wrote it; any failure becomes an error result with a reason code."""
        tool = self.registry.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            known = ", ".join(self.registry.names)
            return self._error(name, arguments, "unknown_tool", f"Error: unknown tool {_short(name)}; use {known}.")
        if not isinstance(arguments, dict):
            return self._error(name, arguments, "bad_arguments", "Error: arguments must be a JSON object.")
        try:
            return tool.run(self.ctx, arguments)
        except ToolArgumentError as exc:
            return self._error(name, arguments, exc.code, exc.message)
        except FrameError as exc:
            log.warning("tool %s on %s failed: %s (%s)", name, self.ctx.path, exc.reason, exc.detail)
            return self._error(name, arguments, exc.reason, "Error: the clip could not be read from the video.")
        except Exception as exc:  # untrusted input must never end the rollout; the log keeps the cause
            log.exception("tool %s raised on %s", name, self.ctx.path)
            return self._error(name, arguments, "tool_failed", f"Error: the tool failed ({type(exc).__name__}).")

    @staticmethod
    def _error(name: Any, arguments: Any, code: str, text: str) -> ToolResult:
        return ToolResult(
            name=name if isinstance(name, str) else None, arguments=arguments, ok=False, text=text, error=code
        )


def default_tools() -> ToolRegistry:
    """The toolbox VITAL trains with: the clip tool alone (caption and clip-QA tools hurt, docs/papers.md)."""
    return ToolRegistry.of([VideoClipTool()])
