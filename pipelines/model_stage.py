"""The one model stage: a RunInference handler and a cached-inference transform that grading, teaching and
evaluation define their work on.

    samples -> CachedInference(stage) -> ModelResult per sample (hits decoded from the cache, misses run)
            -> the stage's own conversion (RL row, CoT row, scored answer) | dead letters

Why it looks like this:
- A stage is a small definition (`StageDefinition`): a name, its `ModelCall` settings and an async `run(samples,
  engine, frames)`. Everything else is here, once: engine loading and sharing across a worker's processes, the
  per-sample retry when a batch raises, cache writes, metrics, failed batches as error results.
- The cache holds the model's text (trajectories: turns, tool steps, finish reasons), never a score. Results are
  scored when read with the current reward code and pass rule, so a reward fix reaches every cached result and a
  changed pass rule redoes no model work. The key covers what the model saw (`StageDefinition.config_hash`).
- The engine is created when the first batch arrives, not when Beam sets the handler up: a stage whose results are
  all cached loads no model. Server kinds (vllm, openai) are shared by a worker's processes through `EngineHost`,
  which starts `vllm serve` on first use too.
- Nothing is lost: a batch that raises is retried sample by sample, and Beam's batch-level dead letters become
  results with `error` set, so every sample that went in comes out once, as a result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from model.engine_api import Engine
from model.engines import make_engine
from model.request_scheduler import StreamingScheduler
from model.rollout import rollout
from model.settings import EngineConfig, ModelCall, fingerprint
from model.trajectory import MODEL_OUTCOMES, PROMPT_TOO_LONG, ToolStep, Trajectory, Turn
from mtvr_data.frames import FrameCache
from mtvr_data.normalize import MediaPathError, MediaRoot, resolve_media
from mtvr_data.rewards import PassRule, total_reward
from mtvr_data.schema import Sample
from pipelines.result_cache import CacheKey, ResultCache

log = logging.getLogger(__name__)

#: Engines reached over HTTP: one server per worker machine is shared by its processes (`EngineHost`).
SERVER_KINDS = frozenset({"vllm", "openai"})


# --- results ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ModelResult:
    """What a model stage produced for one sample: its trajectories (and the teacher's mode and hint), or `error`
    when the sample's run raised as a whole. `cached` says it came from the cache. `reason` is the code of a sample
    refused before any engine call: `path_outside_root` (its media path leads out of its video root) or
    `prompt_too_long` (its prompt is longer than `rollout.max_prompt_tokens`); `error` then starts with it."""

    sample: Sample
    model: str
    trajectories: list[Trajectory] = field(default_factory=list)
    tools: bool = False
    hint: str = ""
    error: str | None = None
    cached: bool = False
    reason: str | None = None

    @property
    def finish_reasons(self) -> list[str]:
        return [t.finish_reason for t in self.trajectories]

    def cache_value(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tools": self.tools,
            "hint": self.hint,
            "trajectories": [trajectory_to_dict(t) for t in self.trajectories],
        }

    @classmethod
    def from_cache(cls, sample: Sample, value: Mapping[str, Any], *, rule: PassRule) -> ModelResult:
        chains = [rescore(sample, trajectory_from_dict(t), rule) for t in value["trajectories"]]
        return cls(sample, str(value["model"]), chains, bool(value["tools"]), str(value["hint"]), cached=True)


def trajectory_to_dict(traj: Trajectory) -> dict[str, Any]:
    """A trajectory as cached: everything the model wrote and the tools returned, no reward (scored on read)."""
    data = dataclasses.asdict(traj)
    data.pop("reward")
    data.pop("passed")
    for turn in data["turns"]:
        turn.pop("token_ids", None)  # the sampled ids are for training, not the cache (the text is what it keeps)
    return data


def trajectory_from_dict(data: Mapping[str, Any]) -> Trajectory:
    turns = []
    for t in data["turns"]:
        tool = t.get("tool")
        if tool is not None:
            tool = ToolStep(**{**tool, "clip": tuple(tool["clip"]) if tool.get("clip") is not None else None})
        turns.append(Turn(**{**t, "tool": tool}))
    fields = {k: data[k] for k in ("sample_id", "index", "tools", "finish_reason", "error")}
    return Trajectory(**fields, turns=turns)


def rescore(sample: Sample, traj: Trajectory, rule: PassRule) -> Trajectory:
    """Reward and pass flag as the rollout loop sets them (only for trajectories that ended by the model's doing)."""
    if traj.finish_reason in MODEL_OUTCOMES:
        text, calls = traj.assistant_text, traj.num_successful_tool_calls
        traj.reward = total_reward(sample, text, num_successful_tool_calls=calls, tools=traj.tools, rule=rule)
        traj.passed = traj.reward.detail.passed
    return traj


# --- stage definitions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageDefinition:
    """What one model stage does. `name` names its cache folder (`<out>/cache/<name>/`), its Beam metrics
    (`mtvr.<name>`) and its dead letters. A subclass writes only `run` (and, if its results depend on more than
    the `ModelCall`, `fingerprint_inputs`)."""

    call: ModelCall
    name: str = "model"
    tools: bool = False

    def fingerprint_inputs(self) -> dict[str, Any]:
        return {**self.call.fingerprint_inputs(), "tools": self.tools}

    @functools.cached_property
    def config_hash(self) -> str:
        return fingerprint(self.fingerprint_inputs())

    @property
    def model(self) -> str:
        """The model's portable name in rows and cache entries."""
        return self.call.engine.name

    def key(self, sample: Sample | str) -> CacheKey:
        sample_id = sample if isinstance(sample, str) else sample.id
        engine = self.call.engine
        return CacheKey(sample_id, engine.kind, engine.identity, self.config_hash)

    def cacheable(self, result: ModelResult) -> bool:
        """Final results only: a machinery failure (engine, media, tool timeout) is retried by the next run."""
        return result.error is None and all(r in MODEL_OUTCOMES for r in result.finish_reasons)

    async def run(self, samples: list[Sample], engine: Engine, frames: FrameCache) -> list[ModelResult]:
        raise NotImplementedError


@dataclass(frozen=True)
class RolloutStage(StageDefinition):
    """K rollouts of each sample through the shared loop (`model.rollout`), with the tool as `tools` says: the
    work of grading (K policy rollouts) and of evaluation (one greedy rollout)."""

    async def run(self, samples: list[Sample], engine: Engine, frames: FrameCache) -> list[ModelResult]:
        config = self.call.rollout_config(tools=self.tools)
        groups = await rollout(samples, engine, k=self.call.k, config=config, cache=frames)
        return [ModelResult(s, self.model, g, tools=self.tools) for s, g in zip(samples, groups, strict=True)]


# --- the handler -----------------------------------------------------------------------------------------------------


def build_engine(engine: EngineConfig) -> Engine:
    """The default engine factory: `model.engines.make_engine`."""
    return make_engine(engine.kind, **dict(engine.settings))


def engine_tag(engine: EngineConfig) -> str:
    """RunInference's model tag: one per engine (kind and settings), never per stage, so the grading parts, the
    teacher and both evaluation settings that name one engine reach ONE server. Beam names lock files after the tag,
    so no "/" of a model id may reach it."""
    return f"mtvr-engine-{fingerprint({'kind': engine.kind, 'settings': dict(engine.settings)})}"


class EngineHost:
    """What a server kind shares across a worker's processes: the `vllm serve` process (or nothing, for an existing
    OpenAI-compatible server) and the recipe of a client for it. The server starts on the first `recipe()` call,
    so a fully cached stage starts none. Only the recipe crosses the process boundary: each process speaks HTTP
    with its own client, so frames are encoded where they were decoded and never pickled through Beam's proxy."""

    def __init__(self, engine: EngineConfig) -> None:
        self.engine = engine
        self.server: Any = None
        self._recipe: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def recipe(self) -> dict[str, Any]:
        with self._lock:
            if self._recipe is None:
                self._recipe = self._start()
            return dict(self._recipe)

    def _start(self) -> dict[str, Any]:
        settings = dict(self.engine.settings)
        if self.engine.kind != "vllm":
            return settings
        from model.engines.vllm_engine import VLLMServerPool, VLLMSettings

        names = {f.name for f in dataclasses.fields(VLLMSettings)}
        self.server = VLLMServerPool(VLLMSettings(**{k: v for k, v in settings.items() if k in names})).start()
        client_settings = {k: v for k, v in settings.items() if k not in names}
        # the client options VLLMServer chooses, read off one server's client; a client per server reaches them all
        probe = self.server.servers[0].engine(**{**client_settings, "on_close": None})
        chosen = ("model", "name", "video_mode", "vllm_extensions", "exact_token_counts", "stop_mode")
        urls = self.server.base_urls
        return {
            **{f: getattr(probe, f) for f in chosen},
            "base_url": urls[0] if len(urls) == 1 else urls,
            **client_settings,
        }


class LazyEngine:
    """An in-process engine built on first use (`get`), so a worker whose samples were all cached loads none."""

    def __init__(self, engine: EngineConfig, factory: Callable[[EngineConfig], Engine], namespace: str) -> None:
        self.engine, self.factory, self.namespace = engine, factory, namespace
        self._built: Engine | None = None
        self._lock = threading.Lock()

    def get(self) -> Engine:
        with self._lock:
            if self._built is None:
                log.info("loading %s engine for %s", self.engine.kind, self.engine.model_id)
                Metrics.counter(self.namespace, "engine_loads").inc()
                self._built = self.factory(self.engine)
            return self._built


class StageHandler(ModelHandler[Sample, ModelResult, Any]):
    """RunInference handler of every model stage: a batch of samples in, one `ModelResult` per sample out.

    `share_model_across_processes()` is True for the server kinds: one server per worker machine, reached by every
    SDK process. The in-process engines (transformers, oracle) live in the process that calls them (Beam's proxy
    would pickle every request's frames and cannot run a coroutine), one copy per process. `engine_factory` runs on
    the worker, so it must pickle; tests inject scripted engines through it.
    """

    def __init__(
        self,
        stage: StageDefinition,
        video_roots: Mapping[str, str | None] | None = None,
        *,
        cache: ResultCache | None = None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        batching = stage.call.batching
        super().__init__(min_batch_size=batching.min_batch_size, max_batch_size=batching.max_batch_size)
        self.stage = stage
        # A `MediaRoot` keeps its source's allow_absolute_paths switch (`resolve_media` reads it).
        self.video_roots = {
            k: v if isinstance(v, MediaRoot) or v is None else str(v) for k, v in (video_roots or {}).items()
        }
        self.cache = cache
        self.engine_factory = engine_factory
        self.namespace = f"mtvr.{stage.name}"
        self._local = threading.local()  # per-thread clients of a shared server
        self._frames: FrameCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_local"], state["_frames"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def model_name(self) -> str:
        return self.stage.model

    def get_metrics_namespace(self) -> str:
        return self.namespace

    def share_model_across_processes(self) -> bool:
        return self.stage.call.engine.kind in SERVER_KINDS

    def load_model(self) -> Any:
        if self.share_model_across_processes():
            return EngineHost(self.stage.call.engine)
        return LazyEngine(self.stage.call.engine, self.engine_factory, self.namespace)

    def _engine(self, model: Any) -> Engine:
        """The engine to call in this thread: the lazily built one, or this thread's client of a shared server."""
        if not self.share_model_across_processes():
            return model.get()
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client(model)
        return client

    @staticmethod
    def _client(model: Any) -> Engine:
        """A client of the shared server(s) (`make_engine("openai", ...)`: several base URLs are balanced)."""
        return make_engine("openai", **model.recipe())

    def _streamed_engine(self, model: Any, scheduler: StreamingScheduler) -> Engine:
        """The engine behind the scheduler's gate. A server's client is made once per scheduler (its HTTP
        connections belong to the scheduler's event loop), an in-process engine is the lazily built one."""
        if self.share_model_across_processes():
            base = scheduler.shared("client", lambda: self._client(model))
        else:
            base = model.get()
        return scheduler.engine(base)

    def run_inference(
        self, batch: Sequence[Sample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[ModelResult]:
        """One batch in its own event loop (`batching.streaming: false`; streaming goes through
        `StreamingInference`): the batch's rollouts run concurrently and the call returns when the slowest is done."""
        samples = list(batch)
        engine = self._engine(model)
        if self._frames is None:
            self._frames = FrameCache()
        Metrics.counter(self.namespace, "model_calls").inc(len(samples))
        try:
            results = asyncio.run(self._run(samples, engine))
        except Exception as exc:
            log.warning("%s batch of %d failed (%s); retrying sample by sample", self.stage.name, len(samples), exc)
            Metrics.counter(self.namespace, "batch_retried_per_sample").inc()
            results = [self._one(sample, engine) for sample in samples]
        return [self.finish_one(result) for result in results]

    def start_one(self, sample: Sample, model: Any) -> Any:
        """Start one sample on the streaming scheduler; a `concurrent.futures.Future` of its result (never raises:
        a run that raises is retried once, then becomes an error result, as in `run_inference`)."""
        batching = self.stage.call.batching
        key = engine_tag(self.stage.call.engine)
        scheduler = StreamingScheduler.for_server(key, batching.in_flight, batching.ordering)
        engine = self._streamed_engine(model, scheduler)
        if self._frames is None:
            self._frames = FrameCache()
        Metrics.counter(self.namespace, "model_calls").inc()

        async def one() -> ModelResult:
            try:
                (result,) = await self._run([sample], engine)
                return result
            except Exception as exc:
                log.warning("%s of sample %s failed (%s); retrying it once", self.stage.name, sample.id, exc)
                Metrics.counter(self.namespace, "batch_retried_per_sample").inc()
            try:
                (result,) = await self._run([sample], engine)
                return result
            except Exception as exc:
                log.exception("%s of sample %s failed", self.stage.name, sample.id)
                return ModelResult(sample, self.stage.model, error=f"{type(exc).__name__}: {exc}")

        future = scheduler.start(one())
        stats = scheduler.gate.stats  # process-wide figures of the server's gate
        Metrics.gauge(self.namespace, "stream_max_in_flight").set(stats.max_in_use)
        Metrics.gauge(self.namespace, "stream_wait_ms").set(int(1000 * stats.wait_seconds))
        return future

    def finish_one(self, result: ModelResult) -> ModelResult:
        """What `run_inference` does with each result: finish-reason metrics and the cache write."""
        for reason, n in Counter(result.finish_reasons).items():
            Metrics.counter(self.namespace, f"finish_{reason}").inc(n)
        if self.cache is not None and self.stage.cacheable(result):
            self.cache.put(self.stage.key(result.sample), result.cache_value())
        return result

    def _one(self, sample: Sample, engine: Engine) -> ModelResult:
        try:
            (result,) = asyncio.run(self._run([sample], engine))
            return result
        except Exception as exc:
            log.exception("%s of sample %s failed", self.stage.name, sample.id)
            return ModelResult(sample, self.stage.model, error=f"{type(exc).__name__}: {exc}")

    async def _run(self, samples: list[Sample], engine: Engine) -> list[ModelResult]:
        """The stage's work on the samples with their media resolved; results carry the samples as given.

        Refused without an engine call, each as a result with `reason` and `error` set: a sample whose media path
        leads outside its video root (`path_outside_root`, decided by `resolve_media`), and one whose prompt the
        rollout loop measured as longer than the limit (`prompt_too_long`: all its trajectories end so).
        """
        refused: dict[int, ModelResult] = {}
        resolved: list[Sample] = []
        for i, s in enumerate(samples):
            try:
                resolved.append(dataclasses.replace(s, video=resolve_media(self.video_roots.get(s.source), s.video)))
            except MediaPathError as exc:
                refused[i] = self._refused(s, exc.reason, exc.detail)
        assert self._frames is not None
        results = await self.stage.run(resolved, engine, self._frames) if resolved else []
        todo = iter(results)
        out = [refused[i] if i in refused else next(todo) for i in range(len(samples))]
        for sample, result in zip(samples, out, strict=True):
            result.sample = sample  # the row names the root-relative path, not the resolved one
            reasons = set(result.finish_reasons)
            if result.error is None and reasons == {PROMPT_TOO_LONG}:
                detail = next((t.error for t in result.trajectories if t.error), "")
                result.reason, result.error = PROMPT_TOO_LONG, f"{PROMPT_TOO_LONG}: {detail}"
                Metrics.counter(self.namespace, f"refused_{PROMPT_TOO_LONG}").inc()
        return out

    def _refused(self, sample: Sample, reason: str, detail: str) -> ModelResult:
        log.warning("%s: sample %s refused (%s: %s)", self.stage.name, sample.id, reason, detail)
        Metrics.counter(self.namespace, f"refused_{reason}").inc()
        return ModelResult(
            sample, self.stage.model, tools=self.stage.tools, error=f"{reason}: {detail}", reason=reason
        )


# --- the transform ---------------------------------------------------------------------------------------------------


class _LookUp(beam.DoFn):
    """Samples whose result is cached -> the decoded result (main); the others -> `misses`, for the engine."""

    MISSES = "misses"

    def __init__(self, stage: StageDefinition, cache: ResultCache) -> None:
        self.stage, self.cache = stage, cache

    def process(self, sample: Sample) -> Iterator[Any]:
        value = self.cache.get(self.stage.key(sample))
        namespace = f"mtvr.{self.stage.name}"
        if value is not None:
            try:
                result = ModelResult.from_cache(sample, value, rule=self.stage.call.pass_rule)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("cache entry of %s unreadable (%s): recomputing", sample.id, exc)
            else:
                Metrics.counter(namespace, "cache_hits").inc()
                yield result
                return
        Metrics.counter(namespace, "cache_misses").inc()
        yield beam.pvalue.TaggedOutput(self.MISSES, sample)


class StreamingInference(beam.DoFn):
    """The model stage without a batch barrier (`batching.streaming`): each sample is started on the process's
    streaming scheduler as it arrives, and each result is emitted as soon as it is done, whichever sample it is.

    Why not RunInference: it hands the handler one batch and needs that batch's results back before it reads the
    next elements, so the server's slots drain at the end of every batch while the slowest rollout finishes. Here
    the only barrier is the end of a bundle (`finish_bundle` waits for what is still running), and between, the
    scheduler's gate keeps `batching.in_flight` sequences at the engine across every thread of the process.

    Frames ahead of the model: a sample's prompt frames are decoded as soon as it starts (in its rollout's worker
    threads), while its first request waits for a slot, so no request waits on a decode that could have started
    earlier. What bounds that read-ahead is the samples in progress per DoFn instance: at most
    `batching.max_concurrent_samples`, and at most `batching.prefetch_bytes` of prompt frames (each sample counted at
    its frame budget's largest output, `frame_budget_bytes`).

    What a sample goes through is the handler's, unchanged: media path checks, the stage's `run`, one retry of a
    sample whose run raised, cache writes, metrics. The engine is shared as RunInference shares it: a server
    kind's `EngineHost` across the worker's processes, an in-process engine across the process's threads.
    """

    def __init__(self, handler: StageHandler) -> None:
        from apache_beam.utils import shared

        self.handler = handler
        self._shared = shared.Shared()
        self._model: Any = None

    def setup(self) -> None:
        tag = engine_tag(self.handler.stage.call.engine)
        if self.handler.share_model_across_processes():
            from apache_beam.utils import multi_process_shared

            shared = multi_process_shared.MultiProcessShared(self.handler.load_model, tag=tag, always_proxy=True)
            with quiet_retries("the worker's shared engine host"):
                self._model = shared.acquire()
        else:
            self._model = self._shared.acquire(self.handler.load_model, tag=tag)

    def start_bundle(self) -> None:
        self._pending: list[Any] = []

    def _room(self) -> bool:
        """Whether one more sample may start: fewer than `max_concurrent_samples` in progress, and their frames
        (each at most the prompt budget's bytes) within `prefetch_bytes`; one always may when none is running."""
        batching = self.handler.stage.call.batching
        if not self._pending:
            return True
        per_sample = frame_budget_bytes(self.handler.stage.call.frames)
        return (
            len(self._pending) < batching.max_concurrent_samples
            and (len(self._pending) + 1) * per_sample <= batching.prefetch_bytes
        )

    def process(self, sample: Sample) -> Iterator[ModelResult]:
        import concurrent.futures

        while not self._room():  # back pressure: wait for the first to finish, and hand it on
            futures = [future for _, future in self._pending]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
            yield from self._done()
        try:
            future = self.handler.start_one(sample, self._model)
        except Exception as exc:  # the engine could not even be built: this sample's error, not the bundle's
            log.exception("%s of sample %s could not start", self.handler.stage.name, sample.id)
            yield ModelResult(sample, self.handler.stage.model, error=f"batch failed: {type(exc).__name__}: {exc}")
        else:
            self._pending.append((sample, future))
        yield from self._done()

    def _done(self, wait: bool = False) -> Iterator[ModelResult]:
        keep = []
        for sample, future in self._pending:
            if wait or future.done():
                yield self._finish(sample, future)
            else:
                keep.append((sample, future))
        self._pending = keep

    def _finish(self, sample: Sample, future: Any) -> ModelResult:
        """The sample's result, cached; an error outside the per-sample net (the cache cannot be written) becomes
        the sample's error result, as RunInference's batch dead letters do (`failed_batch_results`)."""
        try:
            return self.handler.finish_one(future.result())
        except Exception as exc:
            log.exception("%s of sample %s failed outside its run", self.handler.stage.name, sample.id)
            return ModelResult(sample, self.handler.stage.model, error=f"batch failed: {type(exc).__name__}: {exc}")

    def finish_bundle(self) -> Iterator[Any]:
        from apache_beam.transforms.window import GlobalWindow
        from apache_beam.utils.windowed_value import WindowedValue

        for result in self._done(wait=True):
            yield WindowedValue(result, GlobalWindow().max_timestamp(), [GlobalWindow()])


class quiet_retries:  # noqa: N801 (a context manager, named as the phrase it reads as)
    """Hold back Beam's retry log records (`apache_beam.utils.retry`: a full traceback per try) in this thread while
    the block runs. Under load the first connection to the worker's model manager often needs a few tries, and
    tracebacks that end in success read as failures: on success they become one line when there was more than one
    try; on failure every held record is logged as it was, traceback and all, before the error goes on."""

    LOGGER = "apache_beam.utils.retry"

    def __init__(self, what: str) -> None:
        self.what = what
        self.held: list[logging.LogRecord] = []
        self._thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self._thread:
            return True
        self.held.append(record)
        return False

    def __enter__(self) -> quiet_retries:
        logging.getLogger(self.LOGGER).addFilter(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        logger = logging.getLogger(self.LOGGER)
        logger.removeFilter(self)
        if exc is not None:
            for record in self.held:
                logger.handle(record)
        elif self.held:
            log.info("connected to %s after %d retries", self.what, len(self.held))


def frame_budget_bytes(budget: Any) -> int:
    """The largest output of a frame budget: max_frames frames of max_pixels RGB pixels, known before any decode."""
    return int(budget.max_frames) * int(budget.max_pixels) * 3


def failed_batch_results(failed: tuple[Any, Any], model: str) -> Iterator[ModelResult]:
    """Beam's batch dead-letter element -> an error result per sample of the batch.

    Beam gives `(batch, (exception type, repr, traceback lines))` (an exception instance is accepted too).
    """
    batch, exc = failed
    what = exc[1] if isinstance(exc, tuple) and len(exc) > 1 else f"{type(exc).__name__}: {exc}"
    for sample in batch if isinstance(batch, list | tuple) else [batch]:
        yield ModelResult(sample, model, error=f"batch failed: {what}")


class CachedInference(beam.PTransform[beam.PCollection[Sample], tuple[beam.PCollection, beam.PCollection]]):
    """samples -> (one `ModelResult` per sample, tallies): cache lookup, RunInference on the misses, failed batches
    as error results. The tallies `((stage, source, "cached" | "computed"), n)` are what the accounting table
    shows of resume. Without `out_dir` nothing is cached (every sample is computed)."""

    def __init__(
        self,
        stage: StageDefinition,
        video_roots: Mapping[str, str | None] | None = None,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.cache = ResultCache(out_dir, stage.name) if out_dir is not None else None
        self.handler = StageHandler(stage, video_roots, cache=self.cache, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]):
        todo, hits = samples, []
        if self.cache is not None:
            split = samples | "LookUpCache" >> beam.ParDo(_LookUp(self.stage, self.cache)).with_outputs(
                _LookUp.MISSES, main="hits"
            )
            hits, todo = [split.hits], split[_LookUp.MISSES]
        if self.stage.call.batching.streaming:
            computed = todo | "StreamingInference" >> beam.ParDo(StreamingInference(self.handler))
            outputs = [computed]
        else:
            inference = RunInference(self.handler, model_identifier=engine_tag(self.stage.call.engine))
            computed, dlq = todo | "RunInference" >> inference.with_exception_handling()
            failed = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_results, self.stage.model)
            outputs = [computed, failed]
        results = (*hits, *outputs) | "Results" >> beam.Flatten()
        name = self.stage.name
        counts = results | "Tally" >> beam.Map(
            lambda r: ((name, r.sample.source, "cached" if r.cached else "computed"), 1)
        )
        return results, counts | "SumTallies" >> beam.CombinePerKey(sum)


__all__ = [
    "CachedInference",
    "EngineHost",
    "ModelResult",
    "RolloutStage",
    "StageDefinition",
    "StageHandler",
    "StreamingInference",
    "build_engine",
    "engine_tag",
    "rescore",
]
