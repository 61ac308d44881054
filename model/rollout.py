"""The tool-augmented rollout loop: K conversations per sample, the model calling the clip tool between turns.

VITAL's loop (docs/papers.md): the model writes `<think>` then either `<answer>` (done) or a `<tool_call>`; a call
is executed on the sample's own video and its clip comes back as a `tool` turn; the model goes on. Each turn
stops at `</tool_call>` or `</answer>` with at most 1024 new tokens, and at most 2 calls are made, so 3 turns.

How the work is scheduled, and why:
- Each sample's first turn is ONE request with n = K, so an engine can share the prompt's prefix (vision
  encoding included) across the K rollouts. Later turns differ per rollout: one request each.
- Every conversation is its own coroutine and all of them are gathered, so a tool call (frame decoding in a
  worker thread) of one conversation overlaps the generation of the others. How concurrent requests reach
  the accelerator (batching, a server's queue) is the engine's business; only for engines that batch
  within one call and serialise calls (`TransformersEngine`) can the loop coalesce waiting requests into
  one call (`RolloutConfig.max_engine_calls`).
- `max_concurrent_samples` bounds the samples in flight (each with its K conversations), so frames of a
  huge batch are never all in memory at once.
- Media loading and tool calls run in a thread pool owned by one `run` call. A tool call that exceeds
  `tool_timeout_s` ends only its own trajectory (`tool_timeout`); Python cannot kill a thread, so the call
  is abandoned: its thread runs on until the decoder returns and its result is dropped. The pool is shut
  down without waiting, so `run` never blocks on such a thread (interpreter exit still joins it; the
  decoders' own ffmpeg timeouts bound that).
- Media in an object store (a URL video root) is staged first, in the same thread under the same
  `media_timeout_s` (`mtvr_data.media_staging`: downloaded once per worker, however many rollouts or samples
  share the video). The sample holds its local copy until its conversations end, so the clip tool, bound to
  that copy and to nothing else, never finds it evicted; a failed download is the sample's `media_error`.
- Nothing raises out of `run` for one sample or one conversation: each ends with a reason from the closed
  set `FINISH_REASONS` (see there), and only a caller error (k < 1, or k > MAX_ROLLOUTS with a seed) raises.

Seeds (reproducible rollouts): `config.sampling.seed` is the BUILD seed, never sent as is. With it set, every
request carries a seed derived from (build seed, sample id, rollout index, turn) by `rollout_seed`, so a rollout's
text does not depend on batch size, batch order, worker count or runner, only on the engine and the model:
- The engines' contract (model/engine_api.py): completion i of a request with seed s and n > 1 is sampled with
  seed s + i. vLLM V1 does exactly that for an n > 1 request's child requests; `OpenAIEngine` does it when it
  splits n into n = 1 calls; `TransformersEngine` gives each row its own generator seeded s + i.
- The first turn is one request with n = K and seed `rollout_seed(b, id, 0)`; by the rule above rollout i's
  first turn is sampled with `rollout_seed(b, id, 0) + i`, which is what `rollout_seed(b, id, i)` returns (turn 0
  is defined that way, so the function names the seed every turn of every rollout was sampled with).
- A later turn t of rollout i is its own request with n = 1 and seed `rollout_seed(b, id, i, t)`.
- Hints and perturbations (DA-Aug) change the prompt, not the seeds. With no build seed, no seed is sent.

The total token budget counts what follows the first prompt, as VITAL's 7168 does (3 x 1024 generated
+ 2 clips of ~2048 vision tokens): every generated token plus the tool turns' tokens, the latter measured
as the growth of the engine's reported prompt length between turns. A tool turn's size is known only after
the next turn's prompt is counted, so the budget can be exceeded by at most one tool turn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.engine_api import Completion, Engine, GenerationRequest, SamplingSettings
from model.prompts import PromptConfig, assistant_turn, build_messages, load_media, tool_turn
from model.trajectory import (
    ANSWER,
    ENGINE_ERROR,
    INTERNAL_ERROR,
    MAX_TURNS,
    MEDIA_ERROR,
    MODEL_OUTCOMES,
    NO_ANSWER,
    PROMPT_TOO_LONG,
    TOKEN_BUDGET,
    TOOL_TIMEOUT,
    ToolStep,
    Trajectory,
    Turn,
)
from mtvr_data.frames import FrameBudget, FrameCache, FrameError, FramePerturbation, Frames
from mtvr_data.media_staging import LeaseGroup, MediaUnavailable, acquire_media
from mtvr_data.normalize import MediaPathError, resolve_media
from mtvr_data.parsing import extract_answer, parse_blocks, parse_tool_call
from mtvr_data.rewards import DEFAULT_PASS_RULE, PassRule, total_reward
from mtvr_data.schema import Sample
from mtvr_data.tools import BoundTools, MediaContext, ToolRegistry, default_tools

log = logging.getLogger(__name__)

#: Request seeds stay below 2**31 (servers that keep seeds in an int32 accept them) with room for this many
#: completions of one request above the derived seed (completion i uses seed + i).
MAX_ROLLOUTS = 1 << 16
_SEED_SPACE = (1 << 31) - MAX_ROLLOUTS


def rollout_seed(build_seed: int, sample_id: str, rollout_index: int, turn: int = 0) -> int:
    """The seed that turn `turn` of rollout `rollout_index` of a sample is sampled with, from the build seed.

    A hash (sha256) of the parts, so it depends on nothing else (batching, order, workers, runner) and
    differs with each part. Turn 0 of all K rollouts is one n = K request whose completion i engines sample with
    the request's seed + i (model/engine_api.py), so turn 0 hashes (build seed, sample id) and adds the rollout
    index; later turns hash all four parts. The result is in [0, 2**31).
    """
    if not 0 <= rollout_index < MAX_ROLLOUTS:
        raise ValueError(f"rollout_index must be in [0, {MAX_ROLLOUTS}), got {rollout_index}")
    if turn < 0:
        raise ValueError(f"turn must be >= 0, got {turn}")
    parts = [build_seed, sample_id] if turn == 0 else [build_seed, sample_id, rollout_index, turn]
    digest = hashlib.sha256(json.dumps(["mtvr-rollout", *parts]).encode()).digest()
    base = int.from_bytes(digest[:8], "big") % _SEED_SPACE
    return base + rollout_index if turn == 0 else base


#: VITAL's prompt limit (docs/papers.md, RL settings): at most 3072 prompt tokens, text and vision together, at its
#: 64-frame budget (64 frames of ~224x224 are 2048 vision tokens, which leaves 1024 for the words).
MAX_PROMPT_TOKENS = 3072
#: Tokens the default limit leaves for the words over a frame budget's largest vision token count (see
#: `default_prompt_limit`): with VITAL's 64 frames that is exactly MAX_PROMPT_TOKENS.
PROMPT_TEXT_TOKENS = 1024
#: Qwen2.5-VL's vision tokens: one per 28x28 pixels (14-pixel patches merged 2x2) per pair of frames.
VISION_PATCH = 28
VIDEO_TEMPORAL_PATCH = 2
#: Chat-template tokens around each message (<|im_start|>role\n ... <|im_end|>\n) and each media part.
TEMPLATE_TOKENS = 8
#: Text longer than this many characters per token of the limit is too long without tokenizing it (no tokenizer
#: packs that many characters into a token on ordinary text), so a huge question costs no tokenizer time.
MAX_CHARS_PER_TOKEN = 16


def vision_tokens(frames: Frames, *, video: bool = True) -> int:
    """Vision tokens Qwen2.5-VL spends on `frames` ([T, H, W, 3], sides multiples of 28): (H/28) x (W/28) per
    frame, frames taken in pairs for a video."""
    shape = getattr(frames.frames, "shape", None)
    if shape is None or len(shape) < 3:
        return 0
    count, height, width = int(shape[0]), int(shape[1]), int(shape[2])
    per_frame = math.ceil(height / VISION_PATCH) * math.ceil(width / VISION_PATCH)
    return per_frame * (math.ceil(count / VIDEO_TEMPORAL_PATCH) if video else count)


def budget_vision_tokens(budget: FrameBudget) -> int:
    """The most vision tokens a whole video sampled under `budget` can take (max_frames at max_pixels)."""
    per_frame = budget.max_pixels // (VISION_PATCH * VISION_PATCH)
    return per_frame * math.ceil(budget.max_frames / VIDEO_TEMPORAL_PATCH)


def default_prompt_limit(budget: FrameBudget) -> int:
    """The prompt token limit when none is set: MAX_PROMPT_TOKENS, raised for a frame budget larger than VITAL's
    64 frames (the teacher's and SFT's 128) by its extra vision tokens, so frames alone never exceed it."""
    return max(MAX_PROMPT_TOKENS, budget_vision_tokens(budget) + PROMPT_TEXT_TOKENS)


def text_tokens(text: str, tokenizer: Any | None = None, *, limit: int | None = None) -> int:
    """Tokens of `text`: counted by `tokenizer` (an HF tokenizer, as engines and processors carry) when there is
    one, else estimated as one token per 3 bytes of UTF-8 (Qwen's BPE averages about 4 characters of English per
    token and about one CJK character, 3 bytes, per token: the estimate errs long). Text past
    `MAX_CHARS_PER_TOKEN` characters per token of `limit` is estimated, never tokenized."""
    estimate = math.ceil(len(text.encode("utf-8", "replace")) / 3)
    if tokenizer is None or (limit is not None and len(text) > MAX_CHARS_PER_TOKEN * limit):
        return estimate
    try:
        return len(tokenizer.encode(text, add_special_tokens=False))
    except Exception:  # a tokenizer of another shape: the estimate still guards the engine
        return estimate


def prompt_tokens(
    messages: Sequence[Mapping[str, Any]], tokenizer: Any | None = None, *, limit: int | None = None
) -> int:
    """Tokens of a rendered prompt, without the engine: its words (`text_tokens`) plus its frames' vision tokens
    (`vision_tokens`) plus the chat template's few tokens a message and a media part. Cheap: the frames are only
    measured, and text past the limit's size is not tokenized."""
    words: list[str] = []
    total = 0
    for message in messages:
        total += TEMPLATE_TOKENS
        content = message.get("content")
        if isinstance(content, str):
            words.append(content)
            continue
        for part in content or ():
            kind = part.get("type")
            if kind == "text":
                words.append(str(part.get("text", "")))
            elif kind in ("video", "image") and isinstance(part.get(kind), Frames):
                total += TEMPLATE_TOKENS + vision_tokens(part[kind], video=kind == "video")
    return total + text_tokens("\n".join(words), tokenizer, limit=limit)


class PromptTooLong(ValueError):
    """A prompt longer than its limit; `reason` is `prompt_too_long`."""

    reason = PROMPT_TOO_LONG

    def __init__(self, tokens: int, limit: int, what: str = "prompt") -> None:
        self.tokens, self.limit = tokens, limit
        self.detail = f"{what} of about {tokens} tokens is longer than max_prompt_tokens {limit}"
        super().__init__(f"{PROMPT_TOO_LONG}: {self.detail}")


BAD_CALL_TEXT = (
    'Error: the tool call could not be read ({code}). Write {{"name": "<tool>", "arguments": {{...}}}} '
    "as JSON inside <tool_call></tool_call>."
)


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    """How rollouts run. Defaults are VITAL's RL rollouts with tools (docs/papers.md).

    `sampling.seed` is the build seed: the runner turns it into one seed per request (`rollout_seed`, module
    docstring); None sends no seed.

    `max_turns` counts assistant turns (2 tool calls + the answer = 3); `sampling.max_new_tokens` is the
    per-turn budget, `max_total_tokens` the whole response's (see the module docstring). `prompt.tools` is
    ignored: `tools` decides, and only video samples are ever offered tools.

    `max_engine_calls`: None sends every request as its own `generate` call at once (right for a server
    engine, which runs concurrent calls side by side and returns each as soon as it is done). An int N keeps
    at most N calls in flight and sends the requests that queued meanwhile together in the next call (right
    for an engine that batches within one call but serialises calls, like `TransformersEngine`: use 1).
    `registry` runs the calls and gives the schemas the prompt advertises.

    `max_prompt_tokens`: the longest first prompt (text and vision tokens, `prompt_tokens`) sent to the engine; a
    longer one ends the sample as `prompt_too_long` before any engine call. None: `default_prompt_limit` of the
    prompt's frame budget (VITAL's 3072 at 64 frames).
    """

    tools: bool = True
    max_tool_calls: int = 2
    max_turns: int = 3
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    max_total_tokens: int = 7168
    tool_timeout_s: float = 60.0
    media_timeout_s: float = 300.0
    prompt: PromptConfig = field(default_factory=PromptConfig)
    pass_rule: PassRule = DEFAULT_PASS_RULE
    max_concurrent_samples: int = 64
    workers: int = 8
    max_engine_calls: int | None = None
    registry: ToolRegistry = field(default_factory=default_tools, compare=False)
    max_prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_tool_calls < 0:
            raise ValueError("max_turns must be >= 1 and max_tool_calls >= 0")
        if self.max_total_tokens < 1:
            raise ValueError(f"max_total_tokens must be >= 1, got {self.max_total_tokens}")
        if self.tool_timeout_s <= 0 or self.media_timeout_s <= 0:
            raise ValueError("tool_timeout_s and media_timeout_s must be > 0")
        if self.max_concurrent_samples < 1 or self.workers < 1 or (self.max_engine_calls or 1) < 1:
            raise ValueError("max_concurrent_samples, workers and max_engine_calls must be >= 1")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1 (or None for the default), got {self.max_prompt_tokens}")

    @property
    def prompt_limit(self) -> int:
        """The prompt token limit in force: `max_prompt_tokens`, or the default for the prompt's frame budget."""
        if self.max_prompt_tokens is not None:
            return self.max_prompt_tokens
        return default_prompt_limit(self.prompt.budget)


def _ends_with_tool_call(text: str) -> bool:
    return text.rstrip().endswith("</tool_call>")


@dataclass(slots=True)
class _Prepared:
    """A sample ready to roll out: its prompt messages, tool schemas and tools bound to its video."""

    sample: Sample
    messages: list[dict[str, Any]]
    schemas: list[dict[str, Any]] | None
    bound: BoundTools | None


def _stage_and_load(
    sample: Sample, source: str, prompt: PromptConfig, cache: FrameCache | None, leases: LeaseGroup
) -> tuple[str, Frames]:
    """(local path, prompt frames) of a sample's media, in a worker thread: staged (held in `leases`), then loaded.

    A failed download is a `FrameError` with the staging's reason, so the sample ends as a `media_error` whose
    text names the URL. If the rollout stopped waiting (media timeout), the lease is let go at once.
    """
    try:
        lease = acquire_media(source)
    except MediaUnavailable as exc:
        raise FrameError(exc.reason, exc.detail, source) from exc
    if not leases.add(lease):
        raise FrameError("timeout", "the rollout stopped waiting for this media", source)
    return lease.path, load_media(sample, lease.path, prompt, cache)


class RolloutRunner:
    """Runs rollouts of many samples against one engine (see the module docstring for the scheduling).

    Request keys name the conversation, for an engine's logs and caches: `<sample id>/t0` for the shared
    first turn, `<sample id>/<rollout index>/t<turn index>` for the later ones (turns counted from 0). Their
    seeds come from `rollout_seed` (see the module docstring).

    Before a sample's first request its prompt is measured (`prompt_tokens`, with `tokenizer`, else the engine's
    `tokenizer` attribute, else an estimate) against `config.prompt_limit`: a longer one ends as `prompt_too_long`
    and never reaches the engine. A question far past the limit is refused before its media is even loaded.
    """

    def __init__(
        self,
        engine: Engine,
        config: RolloutConfig | None = None,
        *,
        video_root: str | Path | None = None,
        cache: FrameCache | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or RolloutConfig()
        self.video_root = video_root
        self.cache = cache
        self.tokenizer = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher = _Dispatcher(engine, self.config.max_engine_calls)

    async def run(
        self,
        samples: Sequence[Sample],
        *,
        k: int,
        hints: Mapping[str, str] | None = None,
        perturbations: Mapping[str, FramePerturbation] | None = None,
    ) -> list[list[Trajectory]]:
        """K trajectories per sample, in input order. `hints` (by sample id) are appended to the user turn;
        `perturbations` (by sample id) change the prompt video's frames (DA-Aug)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.config.sampling.seed is not None and k > MAX_ROLLOUTS:
            raise ValueError(f"k must be <= {MAX_ROLLOUTS} with a build seed (rollout_seed), got {k}")
        if self._pool is not None:
            raise RuntimeError("a RolloutRunner runs one batch at a time; make another runner for concurrent batches")
        gate = asyncio.Semaphore(self.config.max_concurrent_samples)
        self._pool = ThreadPoolExecutor(self.config.workers, thread_name_prefix="mtvr-rollout")
        try:
            hints, perturbations = hints or {}, perturbations or {}
            results = await asyncio.gather(
                *(self._sample(s, k, hints.get(s.id), perturbations.get(s.id), gate) for s in samples)
            )
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)  # abandoned tool threads finish on their own
            self._pool = None
        counts = Counter(t.finish_reason for group in results for t in group)
        log.info("rollouts: %d samples x %d, finish reasons %s", len(samples), k, dict(counts))
        return list(results)

    # --- one sample --------------------------------------------------------------------------------------------

    async def _sample(
        self,
        sample: Sample,
        k: int,
        hint: str | None,
        perturbation: FramePerturbation | None,
        gate: asyncio.Semaphore,
    ) -> list[Trajectory]:
        async with gate:
            tools = self.config.tools and sample.modality == "video"
            leases = LeaseGroup()  # the staged copy of the sample's media, held until its conversations end
            limit = self.config.prompt_limit
            try:
                try:
                    words = "\n".join([sample.question, *sample.options, hint or ""])
                    if len(words) > MAX_CHARS_PER_TOKEN * limit:  # refused before its media is staged or decoded
                        raise PromptTooLong(text_tokens(words, limit=limit), limit, "question")
                    prepared = await self._prepare(sample, hint, perturbation, tools, leases)
                    tokens = prompt_tokens(prepared.messages, self.tokenizer, limit=limit)
                    if tokens > limit:
                        raise PromptTooLong(tokens, limit)
                except PromptTooLong as exc:
                    log.warning("sample %s: %s; not sent to the engine", sample.id, exc)
                    return [
                        Trajectory(sample.id, i, tools, finish_reason=PROMPT_TOO_LONG, error=exc.detail)
                        for i in range(k)
                    ]
                except Exception as exc:  # any failure before the first turn is this sample's alone
                    detail = (
                        f"{exc.reason}: {exc.detail}"
                        if isinstance(exc, FrameError | MediaPathError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    log.warning("sample %s: prompt not built (%s)", sample.id, detail)
                    return [Trajectory(sample.id, i, tools, finish_reason=MEDIA_ERROR, error=detail) for i in range(k)]
                budget = min(self.config.sampling.max_new_tokens, self.config.max_total_tokens)
                seed = self._request_seed(sample.id, 0, 0)
                settings = dataclasses.replace(self.config.sampling, n=k, max_new_tokens=budget, seed=seed)
                first = await self._generate(prepared, [], settings, key=f"{sample.id}/t0")
                trajectories = [Trajectory(sample.id, i, tools) for i in range(k)]
                await asyncio.gather(
                    *(self._converse(prepared, t, c, budget) for t, c in zip(trajectories, first, strict=True))
                )
                return trajectories
            finally:
                leases.release()

    async def _prepare(
        self,
        sample: Sample,
        hint: str | None,
        perturbation: FramePerturbation | None,
        tools: bool,
        leases: LeaseGroup,
    ) -> _Prepared:
        """The sample's prompt and bound tools. Its media is staged (a URL downloaded to the scratch cache, under
        the media timeout, in the executor) and held in `leases`; prompt frames and clips read the local copy.
        The sample is not changed: its `video` stays the root-relative path that rows are written with."""
        source = resolve_media(self.video_root, sample.video)
        perturbation = perturbation or self.config.prompt.perturbation  # a per-sample one over the config's
        prompt = dataclasses.replace(self.config.prompt, tools=tools, perturbation=perturbation)
        loop = asyncio.get_running_loop()
        try:
            path, media = await asyncio.wait_for(
                loop.run_in_executor(self._pool, _stage_and_load, sample, source, prompt, self.cache, leases),
                self.config.media_timeout_s,
            )
        except TimeoutError as exc:
            raise FrameError("timeout", f"media not loaded in {self.config.media_timeout_s:g} s", source) from exc
        messages, schemas = build_messages(sample, media, prompt, registry=self.config.registry, hint=hint)
        bound = None
        if tools:
            duration = sample.duration if sample.duration is not None else media.end
            # The clip budget is the prompt config's, so the trainer re-renders the clips the model saw here.
            # The tools read the staged local copy of this sample's own video, and nothing else.
            ctx = MediaContext(path=path, duration=duration, budget=prompt.clip_budget, cache=self.cache)
            bound = self.config.registry.bind(ctx)
        return _Prepared(sample, messages, schemas, bound)

    # --- one conversation --------------------------------------------------------------------------------------

    async def _converse(self, prepared: _Prepared, traj: Trajectory, first: Completion, max_new: int) -> None:
        try:
            await self._turns(prepared, traj, first, max_new)
        except Exception as exc:  # a bug here must end this trajectory only, loudly
            log.exception("sample %s rollout %d: internal error", traj.sample_id, traj.index)
            traj.finish_reason, traj.error = INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
        self._grade(prepared.sample, traj)

    async def _turns(self, prepared: _Prepared, traj: Trajectory, completion: Completion, max_new: int) -> None:
        config = self.config
        history: list[dict[str, Any]] = []
        while True:
            if not completion.ok:
                traj.finish_reason, traj.error = ENGINE_ERROR, completion.error or "engine error"
                return
            text = completion.text
            turn = Turn(
                text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
                max_new,
                token_ids=completion.token_ids,
            )
            traj.turns.append(turn)
            if completion.finish_reason == "length":
                traj.finish_reason = TOKEN_BUDGET
                return
            if not _ends_with_tool_call(text):
                traj.finish_reason = ANSWER if extract_answer(text) is not None else NO_ANSWER
                return
            if prepared.bound is None:
                traj.finish_reason, traj.error = NO_ANSWER, "tool call without tools"
                return
            if traj.num_tool_calls >= config.max_tool_calls or len(traj.turns) >= config.max_turns:
                traj.finish_reason = MAX_TURNS
                return
            remaining = config.max_total_tokens - traj.response_tokens
            if remaining < 1:  # no tokens left for the turn after the call: do not run it
                traj.finish_reason = TOKEN_BUDGET
                return
            turn.tool, frames = await self._call_tool(prepared.bound, text)
            if turn.tool.error == TOOL_TIMEOUT:
                traj.finish_reason, traj.error = TOOL_TIMEOUT, f"no result in {config.tool_timeout_s:g} s"
                return
            history += [assistant_turn(text), tool_turn(frames, turn.tool.text)]
            max_new = min(config.sampling.max_new_tokens, remaining)
            turn_index = len(traj.turns)
            seed = self._request_seed(traj.sample_id, traj.index, turn_index)
            settings = dataclasses.replace(config.sampling, n=1, max_new_tokens=max_new, seed=seed)
            key = f"{traj.sample_id}/{traj.index}/t{turn_index}"
            (completion,) = await self._generate(prepared, history, settings, key=key)

    def _request_seed(self, sample_id: str, rollout_index: int, turn: int) -> int | None:
        """The seed a request of this conversation carries: derived from the build seed, or none without one."""
        build_seed = self.config.sampling.seed
        return None if build_seed is None else rollout_seed(build_seed, sample_id, rollout_index, turn)

    async def _call_tool(self, bound: BoundTools, text: str) -> tuple[ToolStep, Frames | None]:
        """Parse the turn's call and run it in a worker thread under the timeout; never raises."""
        blocks = [b.content for b in parse_blocks(text) if b.kind == "tool_call"]
        if not blocks:  # ends with </tool_call> but no readable block (unopened, or nested in <think>)
            code = "no_tool_call_block"
            return ToolStep(None, None, "", False, code, BAD_CALL_TEXT.format(code=code)), None
        raw = blocks[-1].strip()
        parsed = parse_tool_call(raw)
        if not parsed.ok or parsed.arguments is None:
            code = parsed.error or "bad_arguments"
            return ToolStep(parsed.name, None, raw, False, code, BAD_CALL_TEXT.format(code=code)), None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(self._pool, bound.execute, parsed.name, parsed.arguments),
                self.config.tool_timeout_s,
            )
        except TimeoutError:
            log.warning("tool %s on %s timed out; its thread is abandoned", parsed.name, bound.ctx.path)
            text = "Error: the tool timed out."
            step = ToolStep(
                parsed.name, parsed.arguments, raw, False, TOOL_TIMEOUT, text, seconds=time.perf_counter() - started
            )
            return step, None
        frames = result.frames if result.returned_frames else None
        step = ToolStep(
            name=parsed.name,
            arguments=parsed.arguments,
            raw=raw,
            ok=frames is not None,
            error=result.error,
            text=result.text,
            clip=(frames.start, frames.end) if frames is not None else None,
            frame_times=list(frames.times) if frames is not None else [],
            seconds=time.perf_counter() - started,
        )
        return step, frames

    async def _generate(
        self, prepared: _Prepared, history: list[dict[str, Any]], settings: SamplingSettings, *, key: str
    ) -> list[Completion]:
        """Exactly `settings.n` completions; an engine exception or a short answer becomes error completions."""
        request = GenerationRequest(prepared.messages + history, settings, prepared.schemas, key)
        try:
            completions = list(await self._dispatcher.submit(request))[: settings.n]
        except Exception as exc:  # the engine retried already; this request's conversations end here
            log.warning("engine failed on %s: %s", key, exc)
            return [Completion("", "error", error=f"{type(exc).__name__}: {exc}") for _ in range(settings.n)]
        missing = settings.n - len(completions)
        return completions + [Completion("", "error", error="engine returned too few completions")] * missing

    def _grade(self, sample: Sample, traj: Trajectory) -> None:
        """Reward and pass flag of a trajectory that ended by the model's doing; machinery failures stay None."""
        if traj.finish_reason not in MODEL_OUTCOMES:
            return
        try:
            traj.reward = total_reward(
                sample,
                traj.assistant_text,
                num_successful_tool_calls=traj.num_successful_tool_calls,
                tools=traj.tools,
                rule=self.config.pass_rule,
            )
        except Exception as exc:  # e.g. the sample's own truth cannot be scored: a data bug, kept visible
            log.error("sample %s cannot be graded: %s", sample.id, exc)
            traj.error = f"reward: {exc}"
            return
        traj.passed = traj.reward.detail.passed


class _Dispatcher:
    """Hands requests to the engine: one call each, or coalesced under a cap on calls in flight (see
    `RolloutConfig.max_engine_calls`). A coalesced call that raises is retried request by request, so one bad
    request fails alone."""

    def __init__(self, engine: Engine, max_calls: int | None) -> None:
        self.engine = engine
        self.slots = asyncio.Semaphore(max_calls) if max_calls else None
        self.queue: list[tuple[GenerationRequest, asyncio.Future[list[Completion]]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.calls: set[asyncio.Task[None]] = set()

    async def submit(self, request: GenerationRequest) -> list[Completion]:
        if self.slots is None:
            return await self._one(request)
        future: asyncio.Future[list[Completion]] = asyncio.get_running_loop().create_future()
        self.queue.append((request, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def _one(self, request: GenerationRequest) -> list[Completion]:
        (completions,) = await self.engine.generate([request])
        return completions

    async def _flush(self) -> None:
        assert self.slots is not None
        while self.queue:
            await self.slots.acquire()
            await asyncio.sleep(0)  # requests made in this same tick join the call
            batch, self.queue = self.queue, []
            task = asyncio.create_task(self._send(batch))
            self.calls.add(task)  # keep a reference until done
            task.add_done_callback(self.calls.discard)

    async def _send(self, batch: list[tuple[GenerationRequest, asyncio.Future[list[Completion]]]]) -> None:
        assert self.slots is not None
        try:
            results = await self.engine.generate([request for request, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"engine answered {len(results)} of {len(batch)} requests")
            for (_, future), completions in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(completions)
        except Exception as exc:
            for request, future in batch:
                if future.done():
                    continue
                if len(batch) == 1:
                    future.set_exception(exc)
                    continue
                try:
                    future.set_result(await self._one(request))
                except Exception as single:
                    future.set_exception(single)
        finally:
            self.slots.release()


async def rollout(
    samples: Sequence[Sample],
    engine: Engine,
    *,
    k: int,
    config: RolloutConfig | None = None,
    video_root: str | Path | None = None,
    cache: FrameCache | None = None,
    hints: Mapping[str, str] | None = None,
    perturbations: Mapping[str, FramePerturbation] | None = None,
) -> list[list[Trajectory]]:
    """K rollouts of each sample (see `RolloutRunner`); one list of K trajectories per sample, in order."""
    runner = RolloutRunner(engine, config, video_root=video_root, cache=cache)
    return await runner.run(samples, k=k, hints=hints, perturbations=perturbations)
