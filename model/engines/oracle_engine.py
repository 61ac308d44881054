"""A deterministic DEMO/TEST teacher: writes a well-formed VITAL chain from the answer hint in its prompt.

The tiny demo checkpoint is random, so as a teacher it never writes a chain that passes `model.teacher.verify`,
and MTVR-CoT would be empty. `OracleEngine` stands in for the large teacher model in `make demo` and the tests,
so that the real teacher path (hinted prompts, tool execution by the rollout loop, verify, select, balance and
the writer) runs end to end. It is NOT a model and must never be used for a real build.

It reads nothing but the request's words, like a model would:

- the answer comes only from the hint `model.teacher` appends to the user turn (`HINT_HEAD`: "The correct final
  answer is: ..."), already written in the format the prompt asks for (a letter; "S - E seconds"; "From S to E,
  letter"; the text). Without the hint it does not know the answer and writes `unknown`, which fails
  verification: the demo cannot cheat past the teacher's prompt.
- when the request offers tools and no tool turn came back yet, it first calls `get_video_clip_frame` on the
  hinted interval ("start_time S and end_time E"), or else on the middle half of the video (its duration read from
  the user turn), so the call is valid and the rollout loop executes it; after the tool turn it answers.

Engine protocol: exactly `n` (identical) completions per request, each cut at the first stop string (kept), a
"length" finish when the chain exceeds `max_new_tokens`; token counts are approximate (`len(text.split())`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from model.engine_api import Completion, GenerationRequest, cut_at_stop

#: The hinted tool interval, as `model.teacher.HINT_TOOL_SPAN` writes it.
_SPAN = re.compile(r"start_time (\d+(?:\.\d+)?) and end_time (\d+(?:\.\d+)?)")
_DURATION = re.compile(r"This is a video with duration (\d+(?:\.\d+)?) seconds\.")
UNKNOWN = "unknown"
TOOL_NAME = "get_video_clip_frame"


def _hint_prefix() -> str:
    """What `model.teacher.HINT_HEAD` writes before the answer: read from it, so a reworded hint stays readable."""
    from model.teacher import HINT_HEAD

    return HINT_HEAD.split("{answer}")[0]


def _texts(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def read_hint(user_text: str) -> tuple[str | None, tuple[float, float] | None]:
    """(hinted answer, hinted tool interval) from a user turn's words; None where the prompt holds none."""
    prefix = _hint_prefix()
    answer = None
    at = user_text.find(prefix)
    if at >= 0:
        answer = user_text[at + len(prefix) :].split("\n", 1)[0].strip() or None
    span = _SPAN.search(user_text) if at >= 0 else None
    return answer, ((float(span.group(1)), float(span.group(2))) if span else None)


def fallback_interval(user_text: str) -> tuple[float, float]:
    """The middle half of the video (longer than the tool's 1 s minimum when the video allows it)."""
    found = _DURATION.search(user_text)
    duration = float(found.group(1)) if found else 4.0
    start, end = duration / 4, 3 * duration / 4
    if end - start <= 1.05:
        start, end = max(0.0, duration / 2 - 0.55), min(duration, duration / 2 + 0.55)
    return round(start, 2), round(end, 2)


def oracle_text(messages: list[dict[str, Any]], tools_offered: bool) -> str:
    """The next assistant turn for `messages` (see the module docstring)."""
    user = next((_texts(m) for m in messages if m.get("role") == "user"), "")
    answer, span = read_hint(user)
    called = any(m.get("role") == "tool" for m in messages)
    if tools_offered and not called:
        start, end = span or fallback_interval(user)
        call = json.dumps({"name": TOOL_NAME, "arguments": {"start_time": start, "end_time": end}})
        think = (
            f"The question needs a closer look at one part of the video. The moment between {start:.2f} and "
            f"{end:.2f} seconds should show the evidence, so I will look at that clip."
        )
        return f"<think>{think}</think>\n<tool_call>\n{call}\n</tool_call>"
    if answer is None:
        think = "From these frames alone I cannot work out the answer."
        return f"<think>{think}</think>\n<answer>{UNKNOWN}</answer>"
    if called:
        think = f"The clip shows the relevant moment clearly; together with the whole video it points to {answer}."
    else:
        media = "the image" if user.startswith("This is an image.") else "the frames of the video"
        think = f"Looking at {media} step by step, what they show points to {answer}."
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(_texts(m).split()) for m in messages)


class OracleEngine:
    """The DEMO/TEST teacher engine (module docstring). `model` only names it in rows and cache keys."""

    def __init__(self, model: str = "oracle", name: str = "oracle") -> None:
        self.model = model
        self.name = name
        self.calls = 0  # generate() calls, so tests can count model work

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        out: list[list[Completion]] = []
        for request in requests:
            settings = request.settings
            text, stop = cut_at_stop(oracle_text(request.messages, bool(request.tools)), settings.stop)
            words = text.split()
            finish = "stop"
            if len(words) > settings.max_new_tokens:
                text, stop, finish = " ".join(words[: settings.max_new_tokens]), None, "length"
            completion = Completion(
                text=text,
                finish_reason=finish,
                prompt_tokens=_prompt_tokens(request.messages),
                completion_tokens=min(len(words), settings.max_new_tokens),
                stop_string=stop,
            )
            out.append([dataclasses.replace(completion) for _ in range(settings.n)])
        return out

    async def aclose(self) -> None:
        return None
