"""DGRPO's rollouts: the shared tool loop (`model.rollout`) run on the policy, turned into token sequences.

Why the shared loop and not TRL's: TRL's generation takes images only, its tool responses can add images but not
videos, and its log-prob pass forwards image fields only (docs/design.md, "TRL's video gap"). VITAL's prompt is a
video and its tool returns a video clip, so the rollout must be the project's loop: the same prompt builder, frame
sampler, tool executor, parser and rewards as the grader that built MTVR-RL.

Each trajectory is encoded as a conversation by `train.encoding.encode_conversation` (the same function SFT
uses): prompt ids up to the first assistant token, completion ids after it, and a mask that is 1 on tokens the
policy wrote and 0 on tool turns (their text and the clip's vision tokens) and turn headers, which TRL takes as
its `tool_mask`. Each assistant turn's ids are then replaced by the ids the engine sampled (`Turn.token_ids`,
`splice_sampled_ids`): decoding and re-encoding the text can give other ids where the tokenizer would merge
differently, and the loss must be on the tokens the policy sampled. The template supplies only what the policy did
not write: turn headers, tool turns, and the closing `<|im_end|>` after a turn cut at a stop string. A turn whose
engine returned text only (an OpenAI-compatible server without ids, a scripted policy) falls back to the
re-encoded ids; such turns are counted (`PolicyRollouts.id_sources`), logged, and reported per batch as
`rollouts/reencoded_turn_share`.

What is still re-rendered: the engine builds a later turn's prompt from the conversation's text, so within one
rollout turn 2 was generated after the re-encoded turn 1, while the loss puts the sampled turn-1 ids before it. The
two differ only where the re-encoding differs, and never in what is trained.

A trajectory that failed for machinery reasons (media, engine, tool timeout, internal) is kept in the batch as a
one-token completion with mask 0 and `rollout_ok = False`, which the reward wrappers turn into "unscorable" (TRL
gives it advantage 0): the batch keeps its shape and nothing is trained on a failure that was not the model's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.engine_api import Engine, SamplingSettings
from model.families import DEFAULT_FAMILY, ModelFamily, get_family
from model.prompts import DEFAULT_PRESET, PromptConfig, build_messages, load_media, replay_conversation
from model.rollout import RolloutConfig, RolloutRunner
from model.trajectory import MODEL_OUTCOMES, PROMPT_TOO_LONG, TOKEN_BUDGET, Trajectory, to_messages
from mtvr_data.frames import FrameBudget, FrameCache, FramePerturbation
from mtvr_data.media_staging import staged_media
from mtvr_data.normalize import resolve_media
from mtvr_data.schema import Sample
from train.data import rl_record
from train.encoding import Encoded, EncodingError, encode_conversation

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RolloutBatch:
    """What TRL's `_generate` returns, per row of the generation batch, plus the media and reward columns."""

    prompt_ids: list[list[int]] = field(default_factory=list)
    completion_ids: list[list[int]] = field(default_factory=list)
    tool_mask: list[list[int]] = field(default_factory=list)
    completions: list[list[dict[str, Any]]] = field(default_factory=list)
    media: list[dict[str, torch.Tensor]] = field(default_factory=list)
    trajectories: list[Trajectory | None] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    #: Per row: assistant turns trained on re-encoded ids because the engine returned no sampled ids.
    reencoded_turns: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @classmethod
    def pick(cls, rows: list[tuple[RolloutBatch, int]]) -> RolloutBatch:
        """A batch made of the given (batch, row) pairs, in order (DA-Aug swaps augmented groups in)."""
        out = cls()
        for batch, i in rows:
            for f in dataclasses.fields(cls):
                getattr(out, f.name).append(getattr(batch, f.name)[i])
        return out

    def extra_fields(self) -> dict[str, list[Any]]:
        """Columns the reward functions read (merged into TRL's inputs)."""
        return {
            "num_successful_tool_calls": [t.num_successful_tool_calls if t else 0 for t in self.trajectories],
            "tools": [bool(t.tools) if t else False for t in self.trajectories],
            "rollout_ok": [t is not None and t.finish_reason in MODEL_OUTCOMES for t in self.trajectories],
        }


def runs_of_same_id(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(start, length) of the runs of consecutive rows with the same sample id (TRL repeats each prompt G times)."""
    runs: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        if runs and rows[runs[-1][0]]["id"] == row["id"]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def splice_sampled_ids(
    encoded: Encoded,
    trajectory: Trajectory,
    end_id: int,
    stop_ids: frozenset[int],
    placeholder_ids: frozenset[int] = frozenset(),
) -> tuple[list[int], list[int], int]:
    """The encoded conversation with each assistant turn's template ids replaced by the engine's sampled ids.

    Returns (ids, trainable mask, turns that kept the re-encoded ids). A turn's trained ids are its sampled ids,
    plus the template's `end_id` (`<|im_end|>`) when the turn did not end on a stop id itself and the trajectory
    did not run out of tokens there (the policy must learn to stop; a cut-off turn has no end to learn). The ids
    end after the last assistant turn: the template's newline after it is not part of the completion.

    A turn whose sampled ids hold a media placeholder (`placeholder_ids`: `<|video_pad|>`, `<|image_pad|>`; an
    untrained policy can sample them) keeps its re-encoded ids: the forward would look for media behind them.
    """
    turns = trajectory.turns
    sampled_all = len(encoded.spans) == len(turns)
    ids: list[int] = []
    mask: list[int] = []
    position = 0
    reencoded = 0
    for k, (start, end) in enumerate(encoded.spans):
        ids += encoded.input_ids[position:start]
        mask += encoded.trainable[position:start]
        position = end
        cut_off = k == len(encoded.spans) - 1 and trajectory.finish_reason == TOKEN_BUDGET
        sampled = turns[k].token_ids if sampled_all else None
        if sampled is not None and placeholder_ids.intersection(sampled):
            sampled = None
        if sampled is None:
            reencoded += 1
            turn_ids = encoded.input_ids[start:end]
            if cut_off and turn_ids and turn_ids[-1] == end_id:
                turn_ids = turn_ids[:-1]  # the template's <|im_end|> after a cut-off turn was not the policy's
        else:
            turn_ids = list(sampled)
            if not cut_off and not (turn_ids and turn_ids[-1] in stop_ids):
                turn_ids.append(end_id)
        ids += turn_ids
        mask += [1] * len(turn_ids)
    return ids, mask, reencoded


def completion_messages(trajectory: Trajectory) -> list[dict[str, Any]]:
    """The trajectory's turns as chat messages for the reward functions (`rewards.completion_text` joins them)."""
    return [{"role": m.role, "content": m.content} for m in to_messages(trajectory)]


class PolicyRollouts:
    """Runs the shared rollout loop for a generation batch and encodes the results for TRL.

    Each row's `tools` column decides whether its rollouts get the clip tool (MTVR-RL marks its tool rows).

    The engine is passed per call, so the trainer hands over the current policy each time (the policy itself
    through `TransformersEngine`, or a vLLM engine whose weights the trainer keeps in sync).

    A row whose prompt is longer than `max_prompt_tokens` (None: `model.rollout.default_prompt_limit`, VITAL's 3072
    at 64 frames; counted with the processor's tokenizer) is refused by the loop before the engine sees it: its
    trajectory ends `prompt_too_long`, it is a placeholder row that is never trained on, and it is logged and
    counted in `refused` (by reason).

    `family` is the policy's (`model.families`; `train.modeling.policy_family`): the rollout's prompts and clips are
    sampled in its geometry and the re-encoding uses its processor inputs, so the log-probs are of what it saw.
    """

    def __init__(
        self,
        processor: Any,
        *,
        video_root: str | Path | None,
        budget: FrameBudget,
        sampling: SamplingSettings,
        max_tool_calls: int = 2,
        max_total_tokens: int = 7168,
        tool_timeout_s: float = 60.0,
        max_engine_calls: int | None = 1,
        cache: FrameCache | None = None,
        max_prompt_tokens: int | None = None,
        preset: str = DEFAULT_PRESET,
        family: str | ModelFamily = DEFAULT_FAMILY,
    ) -> None:
        self.processor = processor
        self.family = get_family(family)
        self.refused: Counter[str] = Counter()
        #: Assistant turns trained on, by where their ids came from: "sampled" (the engine's) or "reencoded".
        self.id_sources: Counter[str] = Counter()
        self.video_root = video_root
        self.budget = budget
        self.cache = cache if cache is not None else FrameCache(max_bytes=2 << 30)
        self.config = RolloutConfig(
            tools=False,
            max_tool_calls=max_tool_calls,
            max_turns=max_tool_calls + 1,
            sampling=sampling,
            max_total_tokens=max_total_tokens,
            tool_timeout_s=tool_timeout_s,
            # the train config's `prompt:`, in the policy's family's frames
            prompt=PromptConfig(tools=False, budget=budget, preset=preset, family=self.family.name),
            max_engine_calls=max_engine_calls,
            max_prompt_tokens=max_prompt_tokens,
        )

    def __call__(
        self,
        rows: list[dict[str, Any]],
        engine: Engine,
        *,
        hints: Mapping[str, str] | None = None,
        perturbations: Mapping[str, FramePerturbation] | None = None,
    ) -> RolloutBatch:
        """Roll out and encode a generation batch. `hints`/`perturbations` (by sample id, DA-Aug) change the
        prompt of those samples, in the rollout and in the encoding the loss is computed on alike."""
        samples = [rl_record(row).sample for row in rows]
        trajectories = self.trajectories(rows, engine, hints=hints, perturbations=perturbations)
        batch = RolloutBatch()
        for sample, trajectory in zip(samples, trajectories, strict=True):
            self._append(batch, sample, trajectory, (hints or {}).get(sample.id), (perturbations or {}).get(sample.id))
        reencoded = sum(batch.reencoded_turns)
        if reencoded:
            turns = sum(len(t.turns) for t in batch.trajectories if t is not None)
            log.warning(
                "%d of %d assistant turn(s) trained on re-encoded text: the engine returned no sampled ids "
                "(%d so far, %d sampled)",
                reencoded,
                turns,
                self.id_sources["reencoded"],
                self.id_sources["sampled"],
            )
        return batch

    def trajectories(
        self,
        rows: list[dict[str, Any]],
        engine: Engine,
        *,
        hints: Mapping[str, str] | None = None,
        perturbations: Mapping[str, FramePerturbation] | None = None,
    ) -> list[Trajectory]:
        """One trajectory per row, in row order; each run of rows with the same id is one group of the loop."""
        records = [rl_record(row) for row in rows]
        samples = [r.sample for r in records]
        trajectories: list[Trajectory | None] = [None] * len(rows)
        # One runner call per (tools flag, group size): a row's own `tools` column says whether it has the tool.
        calls: dict[tuple[bool, int], list[int]] = {}
        for start, length in runs_of_same_id(rows):
            calls.setdefault((bool(records[start].tools), length), []).append(start)
        for (tools, k), starts in calls.items():
            config = dataclasses.replace(self.config, tools=tools)
            tokenizer = getattr(self.processor, "tokenizer", None)
            runner = RolloutRunner(engine, config, video_root=self.video_root, cache=self.cache, tokenizer=tokenizer)
            groups = asyncio.run(
                runner.run([samples[s] for s in starts], k=k, hints=hints, perturbations=perturbations)
            )
            for start, group in zip(starts, groups, strict=True):
                for j, trajectory in enumerate(group):
                    trajectories[start + j] = trajectory
        assert all(t is not None for t in trajectories)
        too_long = sorted(
            {samples[i].id for i, t in enumerate(trajectories) if t and t.finish_reason == PROMPT_TOO_LONG}
        )
        if too_long:
            self.refused[PROMPT_TOO_LONG] += len(too_long)
            log.warning(
                "%d row(s) refused, %s (never trained on; %d so far): %s",
                len(too_long),
                PROMPT_TOO_LONG,
                self.refused[PROMPT_TOO_LONG],
                ", ".join(too_long[:10]),
            )
        return trajectories  # type: ignore[return-value]

    def _append(
        self,
        batch: RolloutBatch,
        sample: Sample,
        trajectory: Trajectory,
        hint: str | None = None,
        perturbation: FramePerturbation | None = None,
    ) -> None:
        encoded: Encoded | None = None
        if trajectory.turns:
            try:
                encoded = self.encode(sample, trajectory, hint=hint, perturbation=perturbation)
            except (EncodingError, OSError, ValueError) as exc:
                log.warning("sample %s rollout %d: not encodable (%s)", sample.id, trajectory.index, exc)
                trajectory.finish_reason, trajectory.error = "internal_error", f"encoding: {exc}"
        if encoded is None or encoded.first_trainable() >= len(encoded):
            self._append_failed(batch, sample, trajectory)
            return
        cut = encoded.first_trainable()
        tokenizer = self.processor.tokenizer
        end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        stop_ids = frozenset(i for i in (end_id, tokenizer.eos_token_id) if i is not None)
        placeholders = frozenset(tokenizer.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|image_pad|>"))
        ids, mask, reencoded = splice_sampled_ids(encoded, trajectory, end_id, stop_ids, placeholders)
        self.id_sources["reencoded"] += reencoded
        self.id_sources["sampled"] += len(encoded.spans) - reencoded
        batch.prompt_ids.append(ids[:cut])
        batch.completion_ids.append(ids[cut:])
        batch.tool_mask.append(mask[cut:])
        batch.completions.append(completion_messages(trajectory))
        batch.media.append(encoded.media)
        batch.trajectories.append(trajectory)
        batch.tasks.append(sample.task)
        batch.reencoded_turns.append(reencoded)

    def encode(
        self,
        sample: Sample,
        trajectory: Trajectory,
        *,
        hint: str | None = None,
        perturbation: FramePerturbation | None = None,
    ) -> Encoded:
        """The trajectory as the policy saw it: prompt (video re-sampled, cached; hint and perturbation as in the
        rollout) and turns with clips re-rendered. Media under a URL video root is read from its staged copy
        (`media_staging`, held while the frames are decoded), as the rollout read it."""
        perturbation = perturbation or self.config.prompt.perturbation
        prompt = dataclasses.replace(self.config.prompt, tools=trajectory.tools, perturbation=perturbation)
        with staged_media(resolve_media(self.video_root, sample.video)) as path:
            media = load_media(sample, path, prompt, self.cache)
            messages, _ = build_messages(sample, media, prompt, registry=self.config.registry, hint=hint)
            messages += replay_conversation(
                sample, path, to_messages(trajectory), self.cache, clip_budget=prompt.clip_budget
            )
        return encode_conversation(self.processor, messages, self.family)

    def _append_failed(self, batch: RolloutBatch, sample: Sample, trajectory: Trajectory) -> None:
        """A placeholder row for a failed rollout: text-only prompt, one masked token, never trained on."""
        tokenizer = self.processor.tokenizer
        question = "" if trajectory.finish_reason == PROMPT_TOO_LONG else sample.question  # never tokenize a huge one
        ids = tokenizer(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
        batch.prompt_ids.append(list(ids))
        batch.completion_ids.append([tokenizer.convert_tokens_to_ids("<|im_end|>")])
        batch.tool_mask.append([0])
        batch.completions.append([{"role": "assistant", "content": ""}])
        batch.media.append({})
        batch.trajectories.append(trajectory)
        batch.tasks.append(sample.task)
        batch.reencoded_turns.append(0)


def scorable_only(fn: Callable[..., list[float | None]]) -> Callable[..., list[float | None]]:
    """A TRL reward function that returns None (unscorable) for rows whose rollout failed for machinery reasons."""

    def wrapped(completions: list[Any], rollout_ok: list[bool] | None = None, **columns: Any) -> list[float | None]:
        values = fn(completions, **columns)
        if rollout_ok is None:
            return values
        return [v if ok else None for v, ok in zip(values, rollout_ok, strict=True)]

    wrapped.__name__ = getattr(fn, "__name__", "reward")
    return wrapped
