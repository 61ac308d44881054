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

Two chain wordings, chosen by the engine's `model` name. Any name but `TERSE_MODEL` gets the VITAL-style chain
above. `TERSE_MODEL` ("oracle-terse", the demo's practice chains, `configs/demo_warmup.yaml`) writes the
shortest well-formed turn, `<think>I watch the video.</think>` and the answer, spans in their shortest
"S - E seconds" form ("5 - 12.5 seconds"). Why: the demo's warm-up teaches a 2-layer tiny model to grade, and it
reproduces a ~20-token turn reliably at temperature 1 where it garbles a ~70-token one (README, the demo section).

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
#: A grounding answer as the prompt asks for it (`temporal_grounding.expected_answer`): "S - E seconds".
_SPAN_ANSWER = re.compile(r"(\d+(?:\.\d+)?) - (\d+(?:\.\d+)?) seconds")
_DURATION = re.compile(r"This is a video with duration (\d+(?:\.\d+)?) seconds\.")
UNKNOWN = "unknown"
TOOL_NAME = "get_video_clip_frame"
#: The `model` name that selects the terse wording (module docstring).
TERSE_MODEL = "oracle-terse"
TERSE_THINK = "I watch the video."


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


def terse_answer(answer: str) -> str:
    """A hinted "S - E seconds" span in its shortest form ("5.00 - 12.50 seconds" -> "5 - 12.5 seconds"); any
    other answer as it is. Fewer digits to write: the same span, and the format the prompt asks for."""
    found = _SPAN_ANSWER.fullmatch(answer)
    return f"{float(found.group(1)):g} - {float(found.group(2)):g} seconds" if found else answer


def oracle_text(messages: list[dict[str, Any]], tools_offered: bool, *, terse: bool = False) -> str:
    """The next assistant turn for `messages` (see the module docstring; `terse`: the `TERSE_MODEL` wording)."""
    user = next((_texts(m) for m in messages if m.get("role") == "user"), "")
    answer, span = read_hint(user)
    called = any(m.get("role") == "tool" for m in messages)
    if terse and answer is not None and not (tools_offered and not called):
        return f"<think>{TERSE_THINK}</think>\n<answer>{terse_answer(answer)}</answer>"
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
    """The DEMO/TEST teacher engine (module docstring). `model` names it in rows and cache keys, and
    `TERSE_MODEL` picks the terse wording."""

    def __init__(self, model: str = "oracle", name: str = "oracle") -> None:
        self.model = model
        self.name = name
        self.terse = model == TERSE_MODEL
        self.calls = 0  # generate() calls, so tests can count model work

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        out: list[list[Completion]] = []
        for request in requests:
            settings = request.settings
            text, stop = cut_at_stop(
                oracle_text(request.messages, bool(request.tools), terse=self.terse), settings.stop
            )
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
