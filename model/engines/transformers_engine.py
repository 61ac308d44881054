"""Local generation with transformers (CPU or GPU): the engine of the demo and the unit tests.

Why it looks like this:
- The prompt goes through the same processor and chat template the trainers use, and videos go in as the
  sampled frame arrays with their family's metadata and keywords (`model.families`: the sampling rate for
  Qwen2.5-VL's temporal positions, 2 frames / fps per grid step; the frames' times for Qwen3-VL's time text;
  never resampled or resized), so they match what SFT and DGRPO see.
- `n` samples are `n` repeated rows of one left-padded batch; requests are grouped by their sampling settings
  (everything but `n`), since one `generate` call takes one set.
- Stop strings use transformers' `stop_strings` criteria (the row stops as soon as the string is complete), and
  the decoded text is then cut at the first stop string, keeping it, exactly like the other engines.
- `generate` is synchronous torch work, so the async API runs it in a worker thread and never blocks the event
  loop (the rollout loop keeps decoding frames and running tools meanwhile). One lock serialises model calls.
- One bad request never sinks the batch: when a batch fails, its requests are retried one by one and only the
  failing ones come back as `finish_reason="error"` completions.

Determinism: temperature 0 is greedy and always reproducible. With a `seed` s, sample k of a request is row k
with its own `torch.Generator` seeded s + k (the engines' rule, model/engine_api.py), so its text does not depend
on which other rows share the batch, in what order, or on `batch_size`. HF `generate` samples from the global RNG,
shared by all rows, so seeded rows are decoded greedily over Gumbel-perturbed scores instead (`SeededSampler`):
per row, the scores (after HF's repetition penalty, which runs before custom processors) are divided by the
temperature, masked by top-k / top-p as HF's warpers do, and perturbed by Gumbel noise from that row's generator;
the argmax of logits / T + Gumbel is an exact sample of softmax(logits / T). Requests with and without a seed are
never batched together; rows without a seed sample from the global RNG as before. What can still differ between
batchings is float noise: a left-padded batch computes a row's logits with other kernels' rounding than the row
alone, which flips a token only when two perturbed scores are within that rounding of each other. Measured on the
tiny checkpoint in float32 on CPU: scores differ by at most 2e-7 between a batch of 8 mixed-length rows and each row
alone, and 90 sequences of 64 tokens came out identical in batches of 1, 3, 8, in reverse order and as n = 1
requests (0 of 450 differed). bf16 on a GPU rounds far more coarsely, so rare flips are possible there (not measured).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from model.engine_api import Completion, GenerationRequest, SamplingSettings, cut_at_stop
from model.engines.media import processor_media, template_messages
from model.families import ModelFamily, family_for_checkpoint

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Row:
    """One sequence to generate: request `index`, sample `k` of its `n`, sampled with `seed` (request seed + k)."""

    index: int
    k: int
    text: str
    images: list[Any]
    videos: list[Any]
    video_metadata: list[dict[str, Any]]
    seed: int | None = None


class SeededSampler:
    """A `LogitsProcessor` that turns greedy decoding into per-row seeded sampling (see the module docstring).

    Row r draws its noise from a generator seeded `seeds[r]` on the scores' device, one vector per step, so its
    tokens depend on its own seed and logits only. Temperature, then top-k (None or 0: off), then top-p, in HF's
    order; the returned scores are the perturbed ones, whose argmax is the sampled token.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float = 1.0, top_k: int | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 to sample, got {temperature}")
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self._generators: list[Any] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.seeds):
            raise ValueError(f"{scores.shape[0]} rows of scores for {len(self.seeds)} seeds")
        if self._generators is None:
            self._generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        scores = scores.float() / self.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, -math.inf)
        if self.top_p < 1.0:  # HF's TopPLogitsWarper: drop the low tail holding at most 1 - top_p of the mass
            ordered, order = torch.sort(scores, descending=False)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - self.top_p)
            remove[..., -1:] = False
            scores = scores.masked_fill(remove.scatter(1, order, remove), -math.inf)
        # Gumbel noise as -log(E), E ~ Exp(1): argmax(x - log E) = argmax(softmax(x) / E), a sample of softmax(x).
        tiny = torch.finfo(torch.float32).tiny
        noise = torch.stack(
            [
                torch.empty(scores.shape[-1], device=scores.device, dtype=torch.float32).exponential_(generator=g)
                for g in self._generators
            ]
        )
        return scores - noise.clamp_(min=tiny).log_()


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: Any, device: str) -> Any:
    """float32 on CPU (bf16 matmuls are slow there), bfloat16 on GPU, unless told otherwise."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if isinstance(dtype, str):
        return getattr(torch, dtype)
    return dtype


class TransformersEngine:
    """`Engine` backed by a local `AutoModelForImageTextToText` (a Qwen2.5-VL checkpoint: real or the tiny one).

    `batch_size` counts rows (request x sample) per `generate` call. `model`/`processor` may be passed in to share
    an already loaded model (the trainers do); otherwise they are loaded from `model_path_or_id`.
    """

    name = "transformers"

    def __init__(
        self,
        model_path_or_id: str,
        *,
        device: str | None = None,
        dtype: Any = "auto",
        batch_size: int = 8,
        attn_implementation: str | None = "sdpa",
        skip_special_tokens: bool = True,
        revision: str | None = None,
        model: Any | None = None,
        processor: Any | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model = str(model_path_or_id)
        self.device = _resolve_device(device)
        self.batch_size = batch_size
        self.skip_special_tokens = skip_special_tokens
        #: Passed to `generate` when set; None lets transformers decide (on under FSDP / ZeRO-3). A trainer running
        #: lockstep rollouts (`train.lockstep`) sets False: it keeps the ranks together itself.
        self.synced_gpus: bool | None = None
        #: A policy being trained (`model=` given) generates under `no_grad`, not `inference_mode`: under FSDP2 the
        #: all-gathered weights' buffers made in inference mode could not be written by the next training forward.
        self._grad_off = torch.no_grad if model is not None else torch.inference_mode
        self.processor = (
            processor if processor is not None else AutoProcessor.from_pretrained(model_path_or_id, revision=revision)
        )
        self.tokenizer = self.processor.tokenizer
        if model is None:
            kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype, self.device), "revision": revision}
            if attn_implementation:
                kwargs["attn_implementation"] = attn_implementation
            model = AutoModelForImageTextToText.from_pretrained(model_path_or_id, **kwargs)
        self.hf_model = model.to(self.device).eval()
        #: The model's family (its config's model_type): how frames, time and the template reach it.
        self.family: ModelFamily = family_for_checkpoint(self.hf_model.config)
        self._torch = torch
        self._lock = threading.Lock()
        eos = self.hf_model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self._eos_ids = frozenset(eos_ids)
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else min(self._eos_ids)

    # --- public API -------------------------------------------------------------------------------------------

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """`settings.n` completions per request; the torch work runs in a thread so the event loop stays free."""
        if not requests:
            return []
        return await asyncio.to_thread(self.generate_sync, requests)

    def generate_sync(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """The blocking form of `generate` (for callers that are not async, e.g. a Beam DoFn)."""
        results: list[list[Completion | None]] = [[None] * r.settings.n for r in requests]
        # One group per sampling setting; seeds are per row, so requests that differ only by seed share batches
        # (but seeded and unseeded sampling never do: they sample differently).
        groups: dict[tuple[SamplingSettings, bool], list[int]] = {}
        for i, request in enumerate(requests):
            settings = request.settings
            seeded = settings.seed is not None and settings.temperature > 0
            groups.setdefault((replace(settings, n=1, seed=None), seeded), []).append(i)
        with self._lock:
            for (settings, _), indices in groups.items():
                self._run_group(requests, indices, settings, results)
        return [[c if c is not None else _error("no completion produced") for c in row] for row in results]

    async def aclose(self) -> None:
        """Drop the model so its memory can be reused (the engine is unusable afterwards)."""
        self.hf_model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    # --- batching ---------------------------------------------------------------------------------------------

    def _run_group(
        self,
        requests: list[GenerationRequest],
        indices: list[int],
        settings: SamplingSettings,
        results: list[list[Completion | None]],
    ) -> None:
        rows: list[_Row] = []
        for i in indices:
            try:
                prepared = self._prepare(requests[i], i)
            except Exception as exc:  # a bad request (media, template) fails alone
                logger.warning("request %r could not be prepared: %s", requests[i].key, exc)
                results[i] = [_error(f"prepare: {type(exc).__name__}: {exc}") for _ in range(requests[i].settings.n)]
                continue
            seed = requests[i].settings.seed
            rows.extend(
                replace(prepared, k=k, seed=None if seed is None else seed + k) for k in range(requests[i].settings.n)
            )
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            for row, completion in zip(chunk, self._run_rows_isolating_failures(chunk, settings), strict=True):
                results[row.index][row.k] = completion

    def _run_rows_isolating_failures(self, rows: list[_Row], settings: SamplingSettings) -> list[Completion]:
        """Run a batch; if it fails, rerun each request's rows alone so only the culprit gets error completions."""
        try:
            return self._run_rows(rows, settings)
        except Exception as exc:
            if len({row.index for row in rows}) == 1:
                logger.warning("generation failed for request %d: %s", rows[0].index, exc)
                return [_error(f"generate: {type(exc).__name__}: {exc}") for _ in rows]
            logger.warning("batch of %d rows failed (%s); retrying request by request", len(rows), exc)
        by_request: dict[int, list[_Row]] = {}
        for row in rows:
            by_request.setdefault(row.index, []).append(row)
        completions: dict[tuple[int, int], Completion] = {}
        for group in by_request.values():
            for row, completion in zip(group, self._run_rows_isolating_failures(group, settings), strict=True):
                completions[(row.index, row.k)] = completion
        return [completions[(row.index, row.k)] for row in rows]

    def _prepare(self, request: GenerationRequest, index: int) -> _Row:
        """Render the prompt text and collect the media arrays (and the video frame rates) in placeholder order."""
        # Qwen2.5-VL's template ignores `tools=`; the system prompt already carries the tool block (model.prompts).
        text = self.processor.apply_chat_template(
            template_messages(request.messages), add_generation_prompt=True, tokenize=False
        )
        images, videos, metadata = processor_media(request.messages, self.family)
        return _Row(index=index, k=0, text=text, images=images, videos=videos, video_metadata=metadata)

    def _run_rows(self, rows: list[_Row], settings: SamplingSettings) -> list[Completion]:
        images = [image for row in rows for image in row.images]
        videos = [video for row in rows for video in row.videos]
        metadata = [m for row in rows for m in row.video_metadata]
        kwargs = self.family.processor_call_kwargs(images, videos, metadata)
        # Left padding: batched decoder-only generation needs every prompt to end at the same column. Passed per
        # call, so a processor shared with a trainer keeps its own padding side.
        inputs = self.processor(
            text=[row.text for row in rows], padding=True, padding_side="left", return_tensors="pt", **kwargs
        )
        inputs = inputs.to(self.device)
        gen: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "pad_token_id": self._pad_id,
            "repetition_penalty": settings.repetition_penalty,
        }
        seeds = [row.seed for row in rows if row.seed is not None]
        if settings.temperature > 0 and len(seeds) == len(rows):
            from transformers import LogitsProcessorList

            sampler = SeededSampler(seeds, settings.temperature, settings.top_p)
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            gen["logits_processor"] = LogitsProcessorList([sampler])
        elif settings.temperature > 0:
            gen.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.stop:
            gen.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
        if self.synced_gpus is not None:
            gen["synced_gpus"] = self.synced_gpus
        with self._grad_off():
            output = self.hf_model.generate(**inputs, **gen)
        width = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._completion(output[r, width:].tolist(), int(prompt_tokens[r]), settings) for r in range(len(rows))
        ]

    # --- decoding ---------------------------------------------------------------------------------------------

    def _completion(self, ids: list[int], prompt_tokens: int, settings: SamplingSettings) -> Completion:
        """Text cut at the first stop string (kept), the tokens it took, and why it ended.

        A row that stopped early is padded with the pad token, which is also an EOS id for Qwen, so the first EOS
        marks the end; EOS counts as a generated token (as in vLLM's usage). "length" means the token limit was
        reached with neither a stop string nor EOS.
        """
        end = next((k + 1 for k, token in enumerate(ids) if token in self._eos_ids), None)
        generated = ids if end is None else ids[:end]
        text = self._decode(generated)
        cut, stop = cut_at_stop(text, settings.stop)
        if stop is not None:
            used = _first_prefix(len(generated), lambda k: cut_at_stop(self._decode(generated[:k]), (stop,))[1])
            return Completion(cut, "stop", prompt_tokens, used, stop_string=stop, token_ids=generated[:used])
        finish = "stop" if end is not None or len(generated) < settings.max_new_tokens else "length"
        return Completion(text, finish, prompt_tokens, len(generated), token_ids=list(generated))

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=self.skip_special_tokens)


def _first_prefix(size: int, found: Callable[[int], str | None]) -> int:
    """Smallest k in [1, size] whose prefix already holds the stop string (prefix decoding is monotone)."""
    lo, hi = 1, size
    while lo < hi:
        mid = (lo + hi) // 2
        if found(mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _error(message: str) -> Completion:
    return Completion(text="", finish_reason="error", error=message)
