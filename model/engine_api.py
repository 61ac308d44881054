"""The one interface every generation engine implements (transformers, an OpenAI-compatible server, vLLM).

A caller (the grader, the teacher, the rollout loop, DGRPO) builds `GenerationRequest`s from the shared
prompt builder and gets back `n` `Completion`s per request with token counts and finish reasons, whatever
the engine. Engines differ in what their servers honour (`n`, `stop`), so each engine is responsible for
delivering exactly `n` completions, cut at the first stop string (kept in the text, so the parser sees
`</tool_call>` / `</answer>`), or for saying why not in `Completion.error`.

Seeds: `SamplingSettings.seed` is the request's seed, and completion i of a request with `n > 1` is sampled with
`seed + i`. That is vLLM V1's rule for the child requests of an n > 1 request, so a request with n = K and seed s
samples the same completions as K requests with n = 1 and seeds s, s + 1, ..., s + K - 1, whichever way an engine
serves it; the rollout loop relies on it to make each rollout's seed independent of batching (model/rollout.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: VITAL stops each turn at the end of a tool call or of the answer (docs/papers.md).
DEFAULT_STOP: tuple[str, ...] = ("</tool_call>", "</answer>")


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """How to sample. Defaults are VITAL's RL rollouts: temperature 1.0, 1024 new tokens per turn, rep. 1.05.

    `seed` is the per-request seed (completion i of n uses `seed + i`; None: unseeded). In a `RolloutConfig` it is
    the build seed instead, which the rollout loop turns into per-request seeds (`model.rollout.rollout_seed`).
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.05
    stop: tuple[str, ...] = DEFAULT_STOP
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@dataclass(slots=True)
class GenerationRequest:
    """One conversation to continue: Qwen-style chat messages (video parts carry `Frames`) and tool schemas."""

    messages: list[dict[str, Any]]
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    tools: list[dict[str, Any]] | None = None
    key: str = ""


@dataclass(slots=True)
class Completion:
    """One sampled continuation. `finish_reason` is "stop" (a stop string or EOS), "length" or "error"."""

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_string: str | None = None
    error: str | None = None
    #: The token ids the engine sampled for `text` (EOS included when it ended on one; up to the token that
    #: completed the stop string when cut at one), or None when the engine cannot say (a server that returns
    #: text only). Trainers train on these, so the loss is on what the policy actually sampled.
    token_ids: list[int] | None = None

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """`text` up to and including the earliest stop string, and which one it was (None if none occurs).

    Used by engines whose server cannot stop on strings itself, so every engine returns the same text.
    """
    best: tuple[int, str] | None = None
    for s in stop:
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    if best is None:
        return text, None
    return text[: best[0] + len(best[1])], best[1]


@runtime_checkable
class Engine(Protocol):
    """A generation back-end. `generate` returns, for each request, exactly `settings.n` completions."""

    name: str
    model: str

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]: ...

    async def aclose(self) -> None: ...
