"""Teacher mode: answer-conditioned chains of thought for MTVR-CoT, run through the same rollout loop.

VITAL (docs/papers.md, "The datasets", step 3) has a strong teacher write the reasoning KNOWING the answer,
text-only for short videos and tool-calling for long ones; for long grounding the tool interval is the true one
with 20% noise, for long QA the teacher picks it. Here:

- The hint is appended to the USER turn (after the question), not to the system prompt: the system prompt
  stays byte-identical to the student's (Qwen's tool block), the hint sits next to the question it answers,
  and the student's prompt is rebuilt from the sample alone, so the hint cannot leak into a CoT row.
- A sample gets a tool chain when it is a video and its source is one of `tool_sources` (VITAL's tool CoT
  came from VidChapters and LongVideo-Reason) or it is longer than `long_video_s`; a caller can force
  either mode (VITAL also has text CoT rows of those sources).
- Noise rule (grounding, and grounded QA whose span is known): each end of the true span moves by
  u * 0.2 * (span length), u ~ Uniform(-1, 1) drawn independently per end from a generator seeded by the
  sample id (so a rerun hints the same interval); the result is kept inside the video, widened around its
  middle to a valid clip (> 1 s) if needed, and rounded to the 2 decimals the model writes.
- The teacher's tool calls are really executed by the rollout loop, so the chain only cites clips that
  exist. `verify` keeps a chain only if it is well formed, right (the task reward's pass rule), every tool
  call returned frames, and it never mentions the hint. `make_cot_row` stores the student's prompt (no
  hint) and the teacher's turns; SFT renders it with clips re-sampled from their spans (`train.data.sft_messages`,
  through `prompts.replay_conversation`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model.engine_api import Engine, SamplingSettings
from model.prompts import PromptConfig, system_text, user_text
from model.rollout import RolloutConfig, RolloutRunner
from model.trajectory import ANSWER, Trajectory, to_messages
from mtvr_data.frames import FrameBudget, FrameCache
from mtvr_data.parsing import check_format
from mtvr_data.rewards import DEFAULT_PASS_RULE, PassRule, task_reward
from mtvr_data.schema import CotRow, Message, Sample
from mtvr_data.tasks import GroundTruth, family
from mtvr_data.tools import MIN_CLIP_S

log = logging.getLogger(__name__)

#: SFT sees at most 128 frames of the whole video (docs/papers.md), so the teacher does too.
SFT_BUDGET = FrameBudget(max_frames=128)

HINT_HEAD = (
    "(Note for writing the reasoning.) The correct final answer is: {answer}\n"
    "Write reasoning that reaches this answer from what the video shows, as if you found it yourself. Never "
    "mention or imply that the answer, a hint or an interval was given to you."
)
HINT_TEXT = " Do not call any tool. End with the answer inside <answer> </answer> in the required format."
HINT_TOOL_SPAN = (
    " In your first <think>, reason about where the moment could be, then call get_video_clip_frame once with "
    "start_time {start:.2f} and end_time {end:.2f}. After the clip comes back, reason about what it shows and "
    "end with the answer inside <answer> </answer> in the required format."
)
HINT_TOOL_PICK = (
    " In your first <think>, reason about which part of the video holds the evidence, then call "
    "get_video_clip_frame once on a clip (longer than 1 second, inside the video) that shows it. After the clip "
    "comes back, reason about what it shows and end with the answer inside <answer> </answer> in the required format."
)
#: Every hint wording: part of the teacher's cache key, so rewording a hint never serves chains of the old one.
HINTS = (HINT_HEAD, HINT_TEXT, HINT_TOOL_SPAN, HINT_TOOL_PICK)
#: Phrases that give away answer-conditioning; a chain that uses one is rejected (`mentions_hint`).
LEAK = re.compile(
    r"\b(?:hint|hinted|note for writing|given answer|provided answer|answer (?:was|is) (?:given|provided)|"
    r"(?:i was|we were|i am|we are) told|correct final answer)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class TeacherConfig:
    """How the teacher runs. `rollout` is the tool-chain config; text chains use it with tools off, one turn.

    Sampling: VITAL does not publish the teacher's; temperature 0.7 (plain sampling would waste more
    rejected chains; greedy would give the same chain on every try).
    """

    rollout: RolloutConfig = field(
        default_factory=lambda: RolloutConfig(
            sampling=SamplingSettings(temperature=0.7), prompt=PromptConfig(budget=SFT_BUDGET)
        )
    )
    tool_sources: tuple[str, ...] = ("vidchapters", "longvideo_reason")
    long_video_s: float | None = 120.0
    span_noise: float = 0.2
    pass_rule: PassRule = DEFAULT_PASS_RULE

    def text_rollout(self) -> RolloutConfig:
        budget = self.rollout.sampling.max_new_tokens
        return dataclasses.replace(self.rollout, tools=False, max_turns=1, max_total_tokens=budget)

    def tool_rollout(self) -> RolloutConfig:
        return dataclasses.replace(self.rollout, tools=True)


def wants_tool_chain(sample: Sample, config: TeacherConfig) -> bool:
    """Whether the teacher writes a tool-calling chain for this sample (see the module docstring)."""
    if sample.modality != "video":
        return False
    if sample.source in config.tool_sources:
        return True
    return config.long_video_s is not None and sample.duration is not None and sample.duration > config.long_video_s


def expected_answer(sample: Sample) -> str:
    """The answer written exactly as the prompt asks for it (what the hint shows and the parser reads): the task
    family's (`mtvr_data.tasks`)."""
    return family(sample.task).expected_answer(GroundTruth.of(sample))


def _span(sample: Sample) -> tuple[float, float]:
    if sample.span is None:
        raise ValueError(f"sample {sample.id}: task {sample.task} has no span")
    return float(sample.span[0]), float(sample.span[1])


def noisy_interval(sample: Sample, noise: float = 0.2) -> tuple[float, float]:
    """The tool interval hinted for a grounding sample: the true span with up to `noise` of its length moved
    at each end, seeded by the sample id (deterministic), inside the video and longer than the minimum clip."""
    start, end = _span(sample)
    seed = int.from_bytes(hashlib.sha256(f"teacher-span:{sample.id}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    length = end - start
    lo, hi = start + rng.uniform(-noise, noise) * length, end + rng.uniform(-noise, noise) * length
    top = sample.duration if sample.duration is not None else max(hi, end)
    lo, hi = max(0.0, lo), min(top, hi)
    need = MIN_CLIP_S + 0.02  # stays > 1 s after rounding each end to 2 decimals
    if hi - lo <= need:  # too short (or reversed by the noise): widen around the middle, inside the video
        lo = min(max(0.0, (lo + hi - need) / 2), max(0.0, top - need))
        hi = min(top, lo + need)
    return round(lo, 2), round(hi, 2)


def hint_for(sample: Sample, tools: bool, config: TeacherConfig) -> str:
    """The extra instruction appended to the teacher's user turn."""
    head = HINT_HEAD.format(answer=expected_answer(sample))
    if not tools:
        return head + HINT_TEXT
    if family(sample.task).grounded and sample.span is not None:
        start, end = noisy_interval(sample, config.span_noise)
        return head + HINT_TOOL_SPAN.format(start=start, end=end)
    return head + HINT_TOOL_PICK


@dataclass(slots=True)
class TeacherRun:
    """The teacher's K chains for one sample, the mode and the hint they were written with."""

    sample: Sample
    tools: bool
    hint: str
    trajectories: list[Trajectory]


async def teacher_rollouts(
    samples: Sequence[Sample],
    engine: Engine,
    *,
    k: int = 1,
    config: TeacherConfig | None = None,
    video_root: str | Path | None = None,
    cache: FrameCache | None = None,
    tools: bool | None = None,
) -> list[TeacherRun]:
    """K hinted chains per sample through the rollout loop; `tools` forces a mode (None: `wants_tool_chain`)."""
    config = config or TeacherConfig()
    modes = [wants_tool_chain(s, config) if tools is None else tools and s.modality == "video" for s in samples]
    hints = {s.id: hint_for(s, mode, config) for s, mode in zip(samples, modes, strict=True)}
    groups: dict[bool, list[Sample]] = {False: [], True: []}
    for sample, mode in zip(samples, modes, strict=True):
        groups[mode].append(sample)

    async def run(mode: bool) -> list[list[Trajectory]]:
        rollout_config = config.tool_rollout() if mode else config.text_rollout()
        runner = RolloutRunner(engine, rollout_config, video_root=video_root, cache=cache)
        return await runner.run(groups[mode], k=k, hints=hints) if groups[mode] else []

    text_out, tool_out = await asyncio.gather(run(False), run(True))
    results = {False: iter(text_out), True: iter(tool_out)}
    return [TeacherRun(s, m, hints[s.id], next(results[m])) for s, m in zip(samples, modes, strict=True)]


def verify(
    trajectory: Trajectory,
    sample: Sample,
    *,
    rule: PassRule = DEFAULT_PASS_RULE,
    require_tools: bool | None = None,
) -> tuple[bool, str | None]:
    """(True, None) for a chain fit for SFT, else (False, reason code).

    Codes, first failing check wins: a finish reason other than `answer`; `format_<code>` (strict
    `parsing.check_format`); `tool_<code>` for a tool call that returned no frames; `no_tool_call` /
    `unexpected_tool_call` against `require_tools`; `mentions_hint`; `wrong_answer` (the task reward's pass
    rule fails).
    """
    if trajectory.finish_reason != ANSWER:
        return False, trajectory.finish_reason
    text = trajectory.assistant_text
    code = check_format(text, final=True)
    if code is not None:
        return False, f"format_{code}"
    for step in trajectory.tool_steps:
        if not step.ok:
            return False, f"tool_{step.error or 'no_frames'}"
    if require_tools is True and trajectory.num_tool_calls == 0:
        return False, "no_tool_call"
    if require_tools is False and trajectory.num_tool_calls > 0:
        return False, "unexpected_tool_call"
    if LEAK.search(text):
        return False, "mentions_hint"
    if not task_reward(sample, text, rule=rule).passed:
        return False, "wrong_answer"
    return True, None


def select(run: TeacherRun, *, rule: PassRule = DEFAULT_PASS_RULE) -> tuple[Trajectory | None, list[str]]:
    """The best verified chain of a run (highest reward, then fewest tokens) and the reject reasons of the rest."""
    kept: list[Trajectory] = []
    reasons: list[str] = []
    for traj in run.trajectories:
        ok, reason = verify(traj, run.sample, rule=rule, require_tools=run.tools)
        if ok:
            kept.append(traj)
        else:
            reasons.append(reason or "rejected")
    if not kept:
        return None, reasons
    return max(kept, key=lambda t: (t.reward.total if t.reward else 0.0, -t.completion_tokens)), reasons


def config_hash(config: TeacherConfig, teacher: str) -> str:
    """A short hash of what shaped the chains (model, sampling, what the prompt holds: templates, tool schemas, frame
    and clip budgets; hint words, noise): the CoT row's `config_hash` column."""
    r = config.rollout
    key = {
        "teacher": teacher,
        "sampling": dataclasses.asdict(r.sampling),
        "prompt": r.prompt.fingerprint_inputs(r.registry),
        "limits": [r.max_tool_calls, r.max_turns, r.max_total_tokens],
        "hints": list(HINTS),
        "routing": [list(config.tool_sources), config.long_video_s, config.span_noise],
    }
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def make_cot_row(
    sample: Sample, trajectory: Trajectory, *, teacher: str, config: TeacherConfig | None = None
) -> CotRow:
    """A CoT row from a verified chain: the student's prompt (system, user; no hint) and the teacher's turns."""
    config = config or TeacherConfig()
    tools = trajectory.tools
    schemas = config.rollout.registry.schemas() if tools else None
    prompt = dataclasses.replace(config.rollout.prompt, tools=tools)
    messages = [
        Message(role="system", content=system_text(prompt, schemas)),
        Message(role="user", content=user_text(sample, tools=tools, preset=prompt.preset)),
        *to_messages(trajectory),
    ]
    return CotRow(
        sample=sample,
        messages=messages,
        teacher=teacher,
        config_hash=config_hash(config, teacher),
        reward=trajectory.reward.total if trajectory.reward is not None else 0.0,
        num_tool_calls=trajectory.num_tool_calls,
        answer_conditioned=True,
        tools=tools,
    )


__all__ = [
    "HINTS",
    "HINT_HEAD",
    "SFT_BUDGET",
    "TeacherConfig",
    "TeacherRun",
    "config_hash",
    "expected_answer",
    "hint_for",
    "make_cot_row",
    "noisy_interval",
    "select",
    "teacher_rollouts",
    "verify",
    "wants_tool_chain",
]
