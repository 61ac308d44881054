"""vLLM rollouts for DGRPO: TRL's engine lifecycle, the project's generate call (issue 18, item 3).

What is TRL's (reused, not rewritten; docs/design.md, "What TRL 1.16 already has for vLLM rollouts"): with
`use_vllm: true` in the config's `args:`, TRL's `GRPOTrainer.__init__` builds `trl.generation.VLLMGeneration`,
which in `colocate` mode makes one `vllm.LLM` per rank (sleep mode, level 2, when `vllm_enable_sleep_mode`) and in
`server` mode connects a `VLLMClient` to a `trl vllm-serve` server and opens its NCCL weight channel. Its
`sync_weights()` walks the policy's parameters (gathering FSDP1/FSDP2/ZeRO-3 shards, merging PEFT adapters, names
as vLLM expects them), wakes the sleeping weights first and resets the prefix cache.

What is ours: the generate call. TRL's generation takes token ids and images, one turn; VITAL's rollouts are video
prompts with clip-tool turns that return videos, and the trainer trains on the ids the engine sampled in every turn
(`train.rollouts`). So DGRPO keeps its own rollout loop and gives it an `Engine` (model/engine_api.py) over TRL's
vLLM objects:
- colocate: `ColocateEngine` renders each request as `TransformersEngine` does (the processor's chat template over
  `template_messages`, media from `processor_media` in the policy's family) and calls `llm.generate` with
  `multi_modal_data` holding each video as (frames, metadata): the already sampled frames with the family's metadata
  (fps, or the frames' times), the same facts the pipelines' `vllm serve` path sends through `media_io_kwargs`, and
  the family's processor keywords (`do_sample_frames: false`, ...) per request.
- server: TRL's server is vLLM's own OpenAI server (`trl vllm-serve` runs `vllm serve` with its weight-transfer
  flags and forwards extra flags). Its `/v1/completions` and `/inference/v1/generate` take token ids and image
  features only; `/v1/chat/completions` takes chat messages with `video_url` parts. So the generate call is the
  pipelines' `OpenAIEngine` in its vLLM form (`data:video/jpeg` frame lists, fps in `media_io_kwargs`, stop strings
  kept, `return_token_ids` for the sampled ids), and only the weights go through TRL's `VLLMClient`. The server must
  be launched with the family's multimodal flags (`ModelFamily.vllm_serve_args`), which `trl vllm-serve` forwards.

The lifecycle around each rollout phase (`VLLMRollouts.rollout_phase`, entered by `DGRPOTrainer._generation_mode`)
follows TRL's `_generate` and `VLLMGeneration.generate`: push the weights when the optimizer has stepped since the
last push (`trainer._last_loaded_step`, -1 at start, so also before the first rollouts) or when sleep level 2 dropped
them; in colocate sleep mode wake the KV cache before generating and sleep (level 2) after. One phase covers every
engine call of a generation batch: all tool turns, dynamic-sampling rounds and DA-Aug re-rollouts.

Not supported, refused with a message: TRL's importance-sampling correction (the rollout loop returns no sampling
log-probs; the old-policy pass is the trainer's own) and colocate tensor parallelism above 1 (TRL gathers one
generate call across the TP group; the rollout loop makes many per rank).

vLLM is imported lazily (only `vllm.SamplingParams`, in colocate generation); importing this module imports neither
vLLM nor TRL. Coded against vLLM's documented `LLM.generate` / `SamplingParams` / multimodal-input API for
`VLLM_VERSIONS`, the range TRL 1.16 declares; vLLM cannot be installed on the machines the tests run on, so the
tests check the protocol against fakes (tests/train/test_vllm_rollouts.py) and no real vLLM has run this code.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from model.engine_api import Completion, Engine, GenerationRequest, SamplingSettings, cut_at_stop
from model.engines.media import processor_media, template_messages
from model.engines.vllm_engine import INSTALL_HINT, VLLM_CLIENT_OPTIONS, VLLMNotInstalledError
from model.families import ModelFamily

log = logging.getLogger(__name__)

#: The vLLM releases this module is written for: TRL 1.16's `vllm` extra (`vllm>=0.22,<=0.31`).
VLLM_VERSIONS = ">=0.22,<=0.31"


def vllm_available() -> bool:
    """Whether `vllm` can be imported here (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def check_vllm_args(args: Any) -> None:
    """Refuse, before any model is built, a `use_vllm` run this module cannot serve, saying what to change.

    Call it on the trainer arguments before TRL's `GRPOTrainer.__init__`, which would otherwise fail later and
    name TRL's own extra (`trl[vllm]`) instead of the project's.
    """
    if not getattr(args, "use_vllm", False):
        return
    if not vllm_available():
        raise VLLMNotInstalledError(
            "use_vllm is set, but vLLM is not installed. Install the project's `vllm` extra on a CUDA machine "
            f"(`{INSTALL_HINT}`, vLLM {VLLM_VERSIONS}), or set use_vllm: false to generate with the policy itself."
        )
    check_rollout_args(args)


def check_rollout_args(args: Any) -> None:
    """The vLLM settings DGRPO's rollout loop cannot honour (see the module docstring), as errors that say why."""
    if getattr(args, "vllm_importance_sampling_correction", False):
        raise ValueError(
            "DGRPO's rollouts return no vLLM sampling log-probs (the old-policy log-probs are the trainer's own "
            "pass), so set args.vllm_importance_sampling_correction: false with use_vllm"
        )
    if args.vllm_mode == "colocate" and int(args.vllm_tensor_parallel_size) != 1:
        raise ValueError(
            "colocate vLLM with vllm_tensor_parallel_size > 1 is not supported by DGRPO's rollout loop (many "
            "generate calls per rank, TRL's TP groups need one); use vllm_mode: server for a sharded generator"
        )


# --- colocate: the generate call over one `vllm.LLM` ------------------------------------------------------------


def _sampling_params_class() -> Any:
    """vLLM's `SamplingParams` (imported on first use; a test replaces this function)."""
    from vllm import SamplingParams

    return SamplingParams


def sampling_params(settings: SamplingSettings) -> Any:
    """`settings` as vLLM sampling parameters. Child i of an n > 1 request is seeded `seed + i` by vLLM V1, the
    engines' seed rule; the stop string stays in the text (`include_stop_str_in_output`), as every engine keeps it."""
    return _sampling_params_class()(
        n=settings.n,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repetition_penalty=settings.repetition_penalty,
        max_tokens=settings.max_new_tokens,
        seed=settings.seed,
        stop=list(settings.stop),
        include_stop_str_in_output=True,
    )


class ColocateEngine:
    """`Engine` over an in-process `vllm.LLM` (TRL's colocated one): prompts rendered and media collected exactly as
    `TransformersEngine` does, so vLLM sees the frames, times and template the trainer's log-prob pass sees.

    `llm.generate` blocks, so the async API runs it in a worker thread under one lock (one engine, many rollouts).
    """

    name = "vllm-colocate"

    def __init__(self, llm: Any, processor: Any, family: ModelFamily, model: str = "policy") -> None:
        self.llm = llm
        self.processor = processor
        self.family = family
        self.model = model
        self._lock = threading.Lock()

    def build_prompt(self, request: GenerationRequest) -> dict[str, Any]:
        """One vLLM prompt: the rendered text, each video as (frames [T, H, W, 3] uint8, metadata), images as
        arrays, and the family's processor keywords, so vLLM's HF processor neither resamples nor resizes them."""
        text = self.processor.apply_chat_template(
            template_messages(request.messages), add_generation_prompt=True, tokenize=False
        )
        images, videos, metadata = processor_media(request.messages, self.family)
        prompt: dict[str, Any] = {"prompt": text}
        media: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if videos:
            # vLLM's own video loader returns (frames, metadata) with `do_sample_frames`; ours are sampled already.
            media["video"] = [(v, {**m, "do_sample_frames": False}) for v, m in zip(videos, metadata, strict=True)]
            kwargs.update(self.family.video_kwargs)
        if images:
            media["image"] = images
            kwargs.update(self.family.image_kwargs)
        if media:
            prompt["multi_modal_data"] = media
        if kwargs:
            prompt["mm_processor_kwargs"] = kwargs
        return prompt

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        return await asyncio.to_thread(self.generate_sync, requests)

    def generate_sync(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """One `llm.generate` call for every request that could be prepared; a bad request fails alone."""
        results: list[list[Completion]] = [[] for _ in requests]
        prompts, params, index = [], [], []
        for i, request in enumerate(requests):
            try:
                prompts.append(self.build_prompt(request))
                params.append(sampling_params(request.settings))
                index.append(i)
            except Exception as exc:  # media or template: this request's completions are errors, the rest run
                log.warning("request %r could not be prepared: %s", request.key, exc)
                results[i] = _errors(request, f"prepare: {type(exc).__name__}: {exc}")
        if prompts:
            try:
                with self._lock:
                    outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
            except Exception as exc:  # the engine failed: a machinery failure of every request, never trained on
                log.warning("vLLM generate failed for %d request(s): %s", len(prompts), exc)
                outputs = None
            for k, i in enumerate(index):
                if outputs is None:
                    results[i] = _errors(requests[i], "generate failed")
                else:
                    results[i] = [_completion(outputs[k], seq, requests[i].settings) for seq in outputs[k].outputs]
        return results

    async def aclose(self) -> None:
        return None  # the LLM is TRL's: it lives as long as the trainer


def _completion(output: Any, seq: Any, settings: SamplingSettings) -> Completion:
    """A vLLM `CompletionOutput` as a `Completion`: text cut at the first stop string (kept), the sampled ids."""
    text = str(seq.text)
    ids = [int(i) for i in seq.token_ids]
    cut, stop = cut_at_stop(text, settings.stop)
    reason = getattr(seq, "finish_reason", None)
    if reason not in ("stop", "length"):
        return Completion("", "error", error=f"vLLM finish_reason {reason!r}")
    finish = "length" if reason == "length" and stop is None else "stop"
    prompt_tokens = len(getattr(output, "prompt_token_ids", None) or [])
    # ids are the engine's only when the text was not cut here (with include_stop_str_in_output it never is)
    return Completion(cut, finish, prompt_tokens, len(ids), stop_string=stop, token_ids=ids if cut == text else None)


def _errors(request: GenerationRequest, message: str) -> list[Completion]:
    return [Completion("", "error", error=message) for _ in range(request.settings.n)]


# --- server: the pipelines' OpenAI engine on TRL's server ---------------------------------------------------------


def server_engine(trainer: Any) -> Engine:
    """An `OpenAIEngine` on the `trl vllm-serve` server the trainer's `VLLMClient` is connected to, in the form the
    pipelines' `VLLMServer.engine()` uses, plus `return_token_ids` so each completion carries its sampled ids.

    Every rank generates over HTTP itself; only rank 0 holds the client (and pushes the weights). The model name is
    the client's (the server's `/v1/models`), or on other ranks the policy's `name_or_path`, the path the server
    was started with."""
    from model.engines.openai_engine import OpenAIEngine

    args = trainer.args
    base = args.vllm_server_base_url or f"http://{args.vllm_server_host}:{args.vllm_server_port}"
    client = getattr(trainer.vllm_generation, "vllm_client", None)
    model = getattr(client, "model", None) or trainer.accelerator.unwrap_model(trainer.model).name_or_path
    return OpenAIEngine(
        base.rstrip("/") + "/v1",
        str(model),
        name="vllm-server",
        **VLLM_CLIENT_OPTIONS,
        extra_body={"return_token_ids": True},
    )


# --- the lifecycle around a rollout phase ----------------------------------------------------------------------


class VLLMRollouts:
    """The `Engine` DGRPO's rollout loop calls when `use_vllm` is on, and the hooks around each rollout phase.

    `generation` is TRL's `VLLMGeneration` (`trainer.vllm_generation`); `engine` makes the calls (colocate or
    server). `weights_version` is the optimizer step whose weights vLLM holds (None before the first push), and
    `calls_by_version` counts the generate calls made with each version, so a run (and a test) can see that the
    rollouts after step k used step k's weights.
    """

    def __init__(self, generation: Any, engine: Engine) -> None:
        self.generation = generation
        self.engine = engine
        self.name = f"vllm-{generation.mode}"
        self.model = getattr(engine, "model", "policy")
        self.weights_version: int | None = None
        self.calls_by_version: Counter[int | None] = Counter()
        self.syncs = 0

    @property
    def sleeps(self) -> bool:
        """Colocate with sleep mode: the engine sleeps (level 2: weights and KV cache dropped) between phases."""
        return self.generation.mode == "colocate" and bool(self.generation.enable_sleep_mode)

    @contextmanager
    def rollout_phase(self, trainer: Any) -> Iterator[VLLMRollouts]:
        """Weights current and engine awake inside; asleep again after, even when a rollout raised."""
        self.before_rollouts(trainer)
        try:
            yield self
        finally:
            self.after_rollouts()

    def before_rollouts(self, trainer: Any) -> None:
        """TRL's rule: push when the step moved since the last push, or when sleep level 2 dropped the weights."""
        step = int(trainer.state.global_step)
        dropped = self.sleeps and bool(getattr(self.generation, "_llm_weights_sleeping", False))
        if step != trainer._last_loaded_step or dropped:
            self.generation.sync_weights()  # wakes the weights first in sleep mode; resets the prefix cache
            trainer._last_loaded_step = step
            self.syncs += 1
        self.weights_version = trainer._last_loaded_step
        if self.sleeps:
            self.generation.llm.wake_up(tags=["kv_cache"])

    def after_rollouts(self) -> None:
        if self.sleeps:
            self.generation.llm.sleep(level=2)
            self.generation._llm_weights_sleeping = True  # so the next phase re-pushes, as TRL's generate does

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls_by_version[self.weights_version] += 1
        return await self.engine.generate(requests)

    async def aclose(self) -> None:
        await self.engine.aclose()


def engine_for(trainer: Any) -> VLLMRollouts:
    """The trainer's vLLM rollout engine over TRL's `trainer.vllm_generation`, built once and kept on `_engine`."""
    current = getattr(trainer, "_engine", None)
    generation = trainer.vllm_generation
    if isinstance(current, VLLMRollouts) and current.generation is generation:
        return current
    check_rollout_args(trainer.args)
    if generation.mode == "colocate":
        name = getattr(trainer.accelerator.unwrap_model(trainer.model), "name_or_path", "policy")
        engine: Engine = ColocateEngine(generation.llm, trainer.processing_class, trainer.rollouts.family, str(name))
    else:
        engine = server_engine(trainer)
    trainer._engine = VLLMRollouts(generation, engine)
    log.info("DGRPO rollouts on vLLM (%s mode, sleep %s)", generation.mode, trainer._engine.sleeps)
    return trainer._engine
