"""What a rollout produced: trajectories, their turns and tool steps, and why each ended.

Kept apart from the loop (`model.rollout`) because the grader, the teacher's verifier, the CoT writer and
DGRPO read these records without running anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mtvr_data.parsing import extract_answer, parse_blocks, parse_tool_call
from mtvr_data.rewards import RewardBreakdown
from mtvr_data.schema import Clip, Message, ToolCall

# --- finish reasons: a closed set ----------------------------------------------------------------------------------
#: The last turn holds a closed top-level <answer> block (its format and correctness are the reward's business).
ANSWER = "answer"
#: The model stopped (EOS or stop string) with neither an answer nor a tool call to run, e.g. EOS after
#: <think>, an <answer> nested in <think>, or a tool call while tools are off.
NO_ANSWER = "no_answer"
#: The model asked for a tool call when no more were allowed (max_tool_calls or max_turns reached). The call
#: is NOT executed and no error turn is fed back: VITAL allows at most 2 calls, and a 4th turn would break it.
MAX_TURNS = "max_turns"
#: A turn ran out of new tokens (engine finish_reason "length"), or the total response budget is spent.
TOKEN_BUDGET = "token_budget"
#: The engine returned an error completion or raised, after its own retries.
ENGINE_ERROR = "engine_error"
#: A tool call did not return within `tool_timeout_s` (its thread is abandoned).
TOOL_TIMEOUT = "tool_timeout"
#: The sample's prompt could not be built (its media could not be read: FrameError, or a timeout); no turn ran.
MEDIA_ERROR = "media_error"
#: The rendered prompt (text tokens plus the frames' vision tokens) is longer than the rollout's `max_prompt_tokens`;
#: the sample is refused before any engine call, so no turn ran.
PROMPT_TOO_LONG = "prompt_too_long"
#: A bug in the loop itself (logged with its traceback); kept apart so it is never mistaken for the model's doing.
INTERNAL_ERROR = "internal_error"

FINISH_REASONS: tuple[str, ...] = (
    ANSWER,
    NO_ANSWER,
    MAX_TURNS,
    TOKEN_BUDGET,
    ENGINE_ERROR,
    TOOL_TIMEOUT,
    MEDIA_ERROR,
    PROMPT_TOO_LONG,
    INTERNAL_ERROR,
)
#: Reasons that describe the model's own output: such trajectories count for pass rates. The others are
#: failures of the machinery; a grader should leave them out (or retry) rather than score them as wrong.
MODEL_OUTCOMES: frozenset[str] = frozenset({ANSWER, NO_ANSWER, MAX_TURNS, TOKEN_BUDGET})


@dataclass(slots=True)
class ToolStep:
    """One tool call a turn ended with, and what the model was shown back (`text`; frames by time only)."""

    name: str | None
    arguments: dict[str, Any] | None
    raw: str  # the JSON text inside <tool_call>, as written
    ok: bool  # the call returned frames (counts for the tool bonus)
    error: str | None  # parse code, executor code, or "tool_timeout"
    text: str
    clip: tuple[float, float] | None = None
    frame_times: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(slots=True)
class Turn:
    """One assistant turn as generated, its engine accounting, and the tool call it ended with (if run)."""

    text: str
    finish_reason: str  # the engine's: stop / length
    prompt_tokens: int
    completion_tokens: int
    max_new_tokens: int
    tool: ToolStep | None = None
    #: The engine's sampled ids for `text` (`Completion.token_ids`); None when the engine returned text only.
    token_ids: list[int] | None = field(default=None, repr=False)


@dataclass(slots=True)
class Trajectory:
    """One rollout of one sample: its turns, why it ended (`FINISH_REASONS`), its reward and pass flag.

    Only trajectories that ended by the model's doing (`MODEL_OUTCOMES`) are graded; for the others (engine,
    tool, media or internal failures) `reward` is None and `passed` False, so they cannot pass for wrong answers.
    """

    sample_id: str
    index: int
    tools: bool
    turns: list[Turn] = field(default_factory=list)
    finish_reason: str = INTERNAL_ERROR
    error: str | None = None
    reward: RewardBreakdown | None = None
    passed: bool = False

    @property
    def assistant_text(self) -> str:
        """Every assistant turn joined, tool turns left out: what `total_reward` reads."""
        return "\n".join(t.text for t in self.turns)

    @property
    def tool_steps(self) -> list[ToolStep]:
        return [t.tool for t in self.turns if t.tool is not None]

    @property
    def num_tool_calls(self) -> int:
        return len(self.tool_steps)

    @property
    def num_successful_tool_calls(self) -> int:
        return sum(1 for s in self.tool_steps if s.ok)

    @property
    def prompt_tokens(self) -> int:
        """The first turn's prompt (system, user, media)."""
        return self.turns[0].prompt_tokens if self.turns else 0

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.turns)

    @property
    def response_tokens(self) -> int:
        """Tokens after the first prompt: generated ones plus tool turns (see the module docstring)."""
        if not self.turns:
            return 0
        if all(t.prompt_tokens > 0 for t in self.turns):
            last = self.turns[-1]
            return last.prompt_tokens + last.completion_tokens - self.turns[0].prompt_tokens
        return self.completion_tokens

    @property
    def answer(self) -> str | None:
        return extract_answer(self.turns[-1].text) if self.turns else None


def to_messages(trajectory: Trajectory) -> list[Message]:
    """The turns after the user turn as CoT-row messages: assistant text with its tool calls, tool clips by time.

    A tool turn is written only for calls whose result was fed back to the model (not a timed-out one), so the
    messages replay exactly what the model saw (`prompts.replay_conversation` re-renders the clips).
    """
    out: list[Message] = []
    for turn in trajectory.turns:
        out.append(Message(role="assistant", content=turn.text, tool_calls=_written_calls(turn.text)))
        step = turn.tool
        if step is None or step.error == TOOL_TIMEOUT:
            continue
        clip = Clip(step.clip[0], step.clip[1], list(step.frame_times)) if step.clip is not None else None
        out.append(Message(role="tool", content=step.text, clip=clip))
    return out


def _written_calls(text: str) -> list[ToolCall]:
    calls = []
    for block in parse_blocks(text):
        if block.kind == "tool_call":
            parsed = parse_tool_call(block.content)
            arguments = json.dumps(parsed.arguments, ensure_ascii=False) if parsed.ok else block.content.strip()
            calls.append(ToolCall(name=parsed.name or "", arguments=arguments))
    return calls
