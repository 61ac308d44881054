"""Grading by pass rate (PAPERS.md, VITAL step 2): K rollouts of a grader model per sample, as a Beam model handler.

    samples -> [cache lookup] -> RunInference(GradingHandler) -> GradeResult -> GradeToRlRow -> RL rows | dead letters

Why it looks like this:
- `GradingHandler` is a RunInference `ModelHandler`, so batching (`batch_elements_kwargs`), one engine per worker
  and the load/latency metrics come from Beam. A batch is one `model.rollout` call: its samples' K conversations
  run concurrently, so the engine never waits on frame decoding or tool calls.
- Failures stay with their element (STYLE.md 6): the rollout loop ends every trajectory with a finish reason, and
  if a batch raises anyway its samples are retried one by one, so only the sample that raises becomes an error
  result. Beam's batch-level DLQ (`with_exception_handling`) is the outer net; its batches become dead letters too.
- Pass rates count only trajectories that ended by the model's doing (`MODEL_OUTCOMES`): an engine error or an
  unreadable video is not a wrong answer. With fewer than `min_graded` such trajectories the sample is a dead
  letter `grading_failed`, and its result is not cached, so a rerun tries again.
- Resume (`pipelines.result_cache`): each complete result is written as soon as its batch is done, keyed by
  (sample id, engine kind, model id, config hash); a lookup before RunInference sends only misses to the engine.
  Cached values are the per-trajectory lists; pass rate, difficulty and the keep rule are derived on read, so a
  rerun gives identical rows, and `keep` or `min_graded_fraction` can change without redoing model work.

Difficulty buckets, by pass-rate thirds over the graded rollouts: pass rate <= 1/3 is `hard`, >= 2/3 is `easy`,
anything between is `medium` (compared in integers, so K=3 or K=6 boundaries are exact). With K=8 and the default
keep rule (0 < passes < K): 1-2 passes hard, 3-5 medium, 6-7 easy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from model.engine_api import Engine, SamplingSettings
from model.engines import make_engine
from model.prompts import PromptConfig
from model.rollout import RolloutConfig, rollout
from model.trajectory import MODEL_OUTCOMES, Trajectory
from mtvr_data.frame_cache import FrameCache
from mtvr_data.frames import FrameBudget
from mtvr_data.normalize import resolve_media
from mtvr_data.rewards import PassRule
from mtvr_data.schema import RlRow, Sample, SampleError
from pipelines.config import BuildConfig
from pipelines.result_cache import CacheKey, ResultCache, SplitCached, config_hash
from pipelines.transforms import DEAD, CountStage, PrepareSamples, StageMetrics, StageOutput

log = logging.getLogger(__name__)

STAGE = "grade"
METRICS_NAMESPACE = "mtvr.grade"
#: Engines reached over HTTP: one server per worker machine is shared by its processes (see `GradingHandler`).
SERVER_KINDS = frozenset({"vllm", "openai"})
S = TypeVar("S")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine grades: `kind` ("transformers", "openai", "vllm") and its `make_engine` keywords."""

    kind: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return str(self.settings.get("model") or self.settings.get("model_path_or_id") or "unknown")

    @property
    def grader(self) -> str:
        """The grader's name in rows and cache keys: engine kind and model id."""
        return f"{self.kind}:{self.model_id}"


def engine_tag(spec: EngineSpec) -> str:
    """RunInference's model tag: one per engine (kind and settings), never per stage or rollout setting.

    Beam shares a server-kind model (`EngineHost`: a `vllm serve` process) across a worker's processes by this
    tag, so the grading parts (tools off and on), the teacher and both evaluation settings that name the same
    engine reach ONE server instead of starting one each on the same accelerator. Beam names lock files after the
    tag, so no "/" of a model id may reach it.
    """
    return f"mtvr-engine-{config_hash({'kind': spec.kind, 'settings': dict(spec.settings)})}"


def build_engine(spec: EngineSpec) -> Engine:
    """The default engine factory: `model.engines.make_engine`."""
    return make_engine(spec.kind, **dict(spec.settings))  # type: ignore[arg-type]


def settings_from_dict(cls: type[S], config: Mapping[str, Any], what: str) -> S:
    """A settings dataclass from a config block with an `engine: {kind, settings}` entry; unknown keys raise."""
    config = dict(config)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; expected some of {sorted(names)}")
    engine = config.pop("engine", None)
    if isinstance(engine, Mapping):
        config["engine"] = EngineSpec(str(engine["kind"]), dict(engine.get("settings") or {}))
    elif engine is not None:
        config["engine"] = engine
    return cls(**config)


@dataclass(frozen=True)
class GradingSettings:
    """How samples are graded. Defaults are VITAL's RL rollouts: K=8, temperature 1.0, tools on, 64 frames.

    `frame_budget` and `pass_rule` hold overrides of `FrameBudget` / `PassRule` fields. Only the fields named in
    `result_settings` decide results (and the cache key); batching, concurrency and timeouts do not.
    `min_graded_fraction`: a sample needs at least max(1, ceil(fraction * K)) graded rollouts, else it is a
    dead letter `grading_failed`. `keep`: "medium" keeps 0 < passes < graded; "all" keeps every graded sample.
    """

    engine: EngineSpec = field(default_factory=lambda: EngineSpec("transformers"))
    k: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.05
    seed: int | None = None
    tools: bool = True
    max_tool_calls: int = 2
    max_turns: int = 3
    max_total_tokens: int = 7168
    frame_budget: Mapping[str, Any] = field(default_factory=dict)
    pass_rule: Mapping[str, Any] = field(default_factory=dict)
    min_graded_fraction: float = 0.5
    keep: str = "medium"
    min_batch_size: int = 1
    max_batch_size: int = 8
    max_concurrent_samples: int = 64
    workers: int = 8
    max_engine_calls: int | None = None
    tool_timeout_s: float = 60.0
    media_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"grading k must be >= 1, got {self.k}")
        if self.keep not in ("medium", "all"):
            raise ValueError(f"grading keep must be 'medium' or 'all', got {self.keep!r}")
        if not 0.0 <= self.min_graded_fraction <= 1.0:
            raise ValueError(f"min_graded_fraction must be in [0, 1], got {self.min_graded_fraction}")
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError("need 1 <= min_batch_size <= max_batch_size")
        FrameBudget(**self.frame_budget)  # unknown or invalid fields fail here, not on a worker
        PassRule(**self.pass_rule)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> GradingSettings:
        """From a config mapping (`engine: {kind, settings}` plus the fields above); unknown keys raise."""
        return settings_from_dict(cls, config, "grading")

    def facts(self, config: BuildConfig | None = None) -> dict[str, Any]:
        """The grader as the dataset card and stats.json report it.

        With the build `config`, `tools` says what its source entries do (an entry's `tools` overrides this
        block's): true or false when all agree, else "per source", and `tool_sources` lists the sources graded
        with tools.
        """
        facts = {
            "engine": self.engine.kind,
            "model": self.engine.model_id,
            "num_rollouts": self.k,
            "temperature": self.temperature,
            "tools": self.tools,
            "keep": self.keep,
        }
        if config is not None:
            parts = config.tool_parts(self.tools)
            facts["tools"] = next(iter(parts)) if len(parts) == 1 else "per source"
            if True in parts:
                facts["tool_sources"] = sorted({s.source for s in parts[True].sources})
        return facts

    @property
    def min_graded(self) -> int:
        return max(1, math.ceil(self.min_graded_fraction * self.k))

    def result_settings(self) -> dict[str, Any]:
        """What decides a result (besides the sample, engine kind and model): the config hash's input."""
        return {
            "k": self.k,
            "sampling": dataclasses.asdict(self.sampling()),
            "tools": self.tools,
            "max_tool_calls": self.max_tool_calls,
            "max_turns": self.max_turns,
            "max_total_tokens": self.max_total_tokens,
            "frame_budget": dataclasses.asdict(FrameBudget(**self.frame_budget)),
            "pass_rule": dataclasses.asdict(PassRule(**self.pass_rule)),
        }

    @functools.cached_property
    def config_hash(self) -> str:
        return config_hash(self.result_settings())

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )

    def rollout_config(self) -> RolloutConfig:
        """The rollout loop's config. An in-process transformers engine serialises calls: coalesce into one."""
        max_calls = self.max_engine_calls
        if max_calls is None and self.engine.kind == "transformers":
            max_calls = 1
        return RolloutConfig(
            tools=self.tools,
            max_tool_calls=self.max_tool_calls,
            max_turns=self.max_turns,
            sampling=self.sampling(),
            max_total_tokens=self.max_total_tokens,
            tool_timeout_s=self.tool_timeout_s,
            media_timeout_s=self.media_timeout_s,
            prompt=PromptConfig(budget=FrameBudget(**self.frame_budget)),
            pass_rule=PassRule(**self.pass_rule),
            max_concurrent_samples=self.max_concurrent_samples,
            workers=self.workers,
            max_engine_calls=max_calls,
        )

    def cache_key(self, sample: Sample | str) -> CacheKey:
        """The resume key of a sample (or a sample id) under these settings."""
        sample_id = sample if isinstance(sample, str) else sample.id
        return CacheKey(sample_id, self.engine.kind, self.engine.model_id, self.config_hash)


@dataclass(slots=True)
class GradeResult:
    """K rollouts of one sample, without their frames or texts: per-trajectory rewards, passes and finish reasons.

    `rewards[i]` is the total reward (None when trajectory i was not graded: a machinery failure). `error` is set
    when the sample's rollout raised as a whole (then the lists are empty).
    """

    sample: Sample
    grader: str
    rewards: list[float | None] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def from_trajectories(cls, sample: Sample, grader: str, group: Sequence[Trajectory]) -> GradeResult:
        return cls(
            sample,
            grader,
            rewards=[t.reward.total if t.reward is not None else None for t in group],
            passed=[bool(t.passed) for t in group],
            finish_reasons=[t.finish_reason for t in group],
            errors=[t.error for t in group],
        )

    @property
    def graded(self) -> list[int]:
        """Indices of the trajectories that count: ended by the model's doing and scored."""
        return [
            i
            for i, (r, f) in enumerate(zip(self.rewards, self.finish_reasons, strict=True))
            if f in MODEL_OUTCOMES and r is not None
        ]

    @property
    def num_passed(self) -> int:
        return sum(1 for i in self.graded if self.passed[i])

    @property
    def pass_rate(self) -> float | None:
        graded = self.graded
        return self.num_passed / len(graded) if graded else None

    @property
    def mean_reward(self) -> float | None:
        values = [float(self.rewards[i] or 0.0) for i in self.graded]  # graded ones all have a reward
        return sum(values) / len(values) if values else None

    def cache_value(self) -> dict[str, Any]:
        return {
            "grader": self.grader,
            "rewards": self.rewards,
            "passed": self.passed,
            "finish_reasons": self.finish_reasons,
            "errors": self.errors,
        }

    @classmethod
    def from_cache(cls, sample: Sample, value: Mapping[str, Any]) -> GradeResult:
        return cls(
            sample,
            str(value["grader"]),
            rewards=list(value["rewards"]),
            passed=[bool(p) for p in value["passed"]],
            finish_reasons=list(value["finish_reasons"]),
            errors=list(value.get("errors") or [None] * len(value["rewards"])),
        )


def bucket(num_passed: int, num_graded: int) -> str:
    """`hard` / `medium` / `easy` by pass-rate thirds (module docstring), in integers so boundaries are exact."""
    if 3 * num_passed <= num_graded:
        return "hard"
    if 3 * num_passed >= 2 * num_graded:
        return "easy"
    return "medium"


# --- the model handler -------------------------------------------------------------------------------------------


class EngineHost:
    """What a server kind shares across a worker's processes: the `vllm serve` process (or nothing, for an
    existing OpenAI-compatible server) and the recipe of a client for it.

    Only the recipe crosses the process boundary: each process speaks HTTP to the server with its own
    `OpenAIEngine`, so frames are encoded where they were decoded and never pickled through Beam's proxy (whose
    calls are synchronous; the engine API is async).
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.server: Any = None
        if spec.kind == "vllm":
            from model.engines.vllm_engine import VLLMServer, VLLMSettings

            names = {f.name for f in dataclasses.fields(VLLMSettings)}
            self.server = VLLMServer(VLLMSettings(**{k: v for k, v in spec.settings.items() if k in names}))
            client_settings = {k: v for k, v in spec.settings.items() if k not in names}
            probe = self.server.start().engine(**client_settings)  # the client options VLLMServer chooses
            fields = ("base_url", "model", "name", "video_mode", "vllm_extensions", "exact_token_counts", "stop_mode")
            self._recipe = {**{f: getattr(probe, f) for f in fields}, **client_settings}
        else:
            self._recipe = dict(spec.settings)

    def recipe(self) -> dict[str, Any]:
        return dict(self._recipe)


class GradingHandler(ModelHandler[Sample, GradeResult, Any]):
    """RunInference handler: a batch of samples in, one `GradeResult` per sample out (module docstring).

    `share_model_across_processes()` is True for the server kinds (vllm, openai): one server per worker machine,
    started once and reached by every SDK process (`EngineHost`). It is False for the in-process transformers
    engine: its model and its async `generate` live in the process that calls them (Beam's cross-process proxy
    would pickle every request's frames and cannot run a coroutine), so each process loads its own copy; that
    engine is for CPU tests and the demo, where copies are small. `engine_factory` builds the engine in
    `load_model` (on the worker), so it must be picklable; tests inject scripted engines through it.
    """

    def __init__(
        self,
        settings: GradingSettings,
        video_roots: Mapping[str, str] | None = None,
        *,
        cache: ResultCache | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__(min_batch_size=settings.min_batch_size, max_batch_size=settings.max_batch_size)
        self.settings = settings
        self.video_roots = {k: str(v) for k, v in (video_roots or {}).items()}
        self.cache = cache
        self.engine_factory = engine_factory
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
        return self.settings.engine.grader

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def share_model_across_processes(self) -> bool:
        return self.settings.engine.kind in SERVER_KINDS

    def load_model(self) -> Any:
        if self.share_model_across_processes():
            return EngineHost(self.settings.engine)
        return self.engine_factory(self.settings.engine)

    def _engine(self, model: Any) -> Engine:
        """The engine to call in this thread: the loaded one, or this thread's client of a shared server."""
        if not self.share_model_across_processes():
            return model
        client = getattr(self._local, "client", None)
        if client is None:
            from model.engines.openai_engine import OpenAIEngine

            client = self._local.client = OpenAIEngine(**model.recipe())
        return client

    def rollout_groups(self, samples: list[Sample], model: Any) -> list[list[Trajectory] | BaseException]:
        """The K trajectories of each sample through the shared loop. A batch that raises (a bug, or an engine
        that raised through the loop) is retried sample by sample, so an exception is one sample's alone. Used by
        grading and by evaluation (`pipelines.evaluate`)."""
        engine = self._engine(model)
        try:
            return list(asyncio.run(self._rollout(samples, engine)))
        except Exception as exc:
            log.warning("batch of %d failed (%s); retrying sample by sample", len(samples), exc)
            Metrics.counter(self.get_metrics_namespace(), "batch_retried_per_sample").inc()
            return [self._one(sample, engine) for sample in samples]

    def run_inference(
        self, batch: Sequence[Sample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[GradeResult]:
        samples = list(batch)
        grader = self.settings.engine.grader
        groups = self.rollout_groups(samples, model)
        results = []
        for sample, group in zip(samples, groups, strict=True):
            if isinstance(group, BaseException):
                result = GradeResult(sample, grader, error=f"{type(group).__name__}: {group}")
            else:
                result = GradeResult.from_trajectories(sample, grader, group)
            self._record(result)
            results.append(result)
        return results

    def _one(self, sample: Sample, engine: Engine) -> list[Trajectory] | BaseException:
        try:
            (group,) = asyncio.run(self._rollout([sample], engine))
            return group
        except Exception as exc:
            log.exception("grading sample %s failed", sample.id)
            return exc

    async def _rollout(self, samples: list[Sample], engine: Engine) -> list[list[Trajectory]]:
        if self._frames is None:
            self._frames = FrameCache()
        resolved = [
            dataclasses.replace(s, video=str(resolve_media(self.video_roots.get(s.source), s.video))) for s in samples
        ]
        config = self.settings.rollout_config()
        return await rollout(resolved, engine, k=self.settings.k, config=config, cache=self._frames)

    def _record(self, result: GradeResult) -> None:
        """Metrics, and the cache entry of a complete result (errors and `grading_failed` are retried on rerun)."""
        for reason, n in Counter(result.finish_reasons).items():
            Metrics.counter(METRICS_NAMESPACE, f"finish_{reason}").inc(n)
        if self.cache is not None and result.error is None and len(result.graded) >= self.settings.min_graded:
            self.cache.put(self.settings.cache_key(result.sample.id), result.cache_value())


# --- transforms ----------------------------------------------------------------------------------------------------


def _dead_letter(sample: Sample, reason: str, detail: str) -> SampleError:
    origin = sample.meta_dict.get("origin", sample.id)
    return SampleError(sample.source, str(origin), reason, detail, stage=STAGE, raw=sample.id)


def failed_batch_to_dead_letters(failed: tuple[Any, Any]) -> Iterator[SampleError]:
    """Beam's batch DLQ element as one dead letter `grading_error` per sample of its batch.

    Beam gives `(batch, (exception type, repr, traceback lines))` (an exception instance is accepted too).
    """
    batch, exc = failed
    what = exc[1] if isinstance(exc, tuple) and len(exc) > 1 else f"{type(exc).__name__}: {exc}"
    for sample in batch if isinstance(batch, list | tuple) else [batch]:
        yield _dead_letter(sample, "grading_error", f"batch failed: {what}")


class GradeToRlRow(beam.DoFn):
    """A `GradeResult` as an `RlRow` (main output) or a dead letter (`DEAD`, stage `grade`).

    Reasons: `grading_error` (the rollout raised), `grading_failed` (fewer than `min_graded` graded rollouts),
    and with `keep="medium"` `all_passed` / `all_failed`.
    """

    def __init__(self, settings: GradingSettings) -> None:
        self.settings = settings
        self.metrics = StageMetrics(STAGE)

    def process(self, result: GradeResult) -> Iterator[Any]:
        self.metrics.inc("in")
        out = self.convert(result)
        if isinstance(out, SampleError):
            yield self.metrics.rejected(out)
        else:
            self.metrics.inc("kept")
            yield out

    def convert(self, result: GradeResult) -> RlRow | SampleError:
        """The row or the dead letter for `result` (pure; the DoFn only counts)."""
        sample = result.sample
        if result.error is not None:
            return _dead_letter(sample, "grading_error", result.error)
        graded, passes = len(result.graded), result.num_passed
        if graded < self.settings.min_graded:
            reasons = dict(sorted(Counter(result.finish_reasons).items()))
            detail = f"{graded}/{len(result.finish_reasons)} rollouts graded: {reasons}"
            return _dead_letter(sample, "grading_failed", detail)
        if self.settings.keep == "medium" and passes in (0, graded):
            reason = "all_failed" if passes == 0 else "all_passed"
            return _dead_letter(sample, reason, f"{passes}/{graded} rollouts passed")
        pass_rate = passes / graded
        return RlRow(
            sample=sample,
            num_rollouts=graded,
            pass_rate=pass_rate,
            mean_reward=float(result.mean_reward or 0.0),
            difficulty=1.0 - pass_rate,
            bucket=bucket(passes, graded),
            policy=result.grader,
            tools=self.settings.tools,
        )


class GradeSamples(beam.PTransform):
    """samples -> (GradeResults, dead letters of failed batches): cache lookup, then RunInference on the misses.

    Shared by build-rl (`Grade`) and build-cot. Without `out_dir` nothing is cached.
    """

    def __init__(
        self,
        settings: GradingSettings,
        video_roots: Mapping[str, str] | None = None,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.cache = ResultCache(out_dir, STAGE) if out_dir is not None else None
        self.handler = GradingHandler(settings, video_roots, cache=self.cache, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]) -> tuple[beam.PCollection, beam.PCollection]:
        tag = engine_tag(self.settings.engine)
        hits: list[beam.PCollection] = []
        if self.cache is not None:
            lookup = SplitCached(self.cache, self.settings.cache_key, GradeResult.from_cache, METRICS_NAMESPACE)
            split = samples | "LookupCache" >> beam.ParDo(lookup).with_outputs(SplitCached.MISSES, main="hits")
            hits, samples = [split.hits], split[SplitCached.MISSES]
        inference = RunInference(self.handler, model_identifier=tag).with_exception_handling()
        graded, dlq = samples | "RunInference" >> inference
        failed = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_to_dead_letters)
        return (*hits, graded) | "Results" >> beam.Flatten(), failed


class Grade(beam.PTransform):
    """samples -> `StageOutput(RL rows, dead letters, tallies)` of stage `grade`: `GradeSamples`, `GradeToRlRow`.

    Unpacks as `(rows, dead_letters)`; `.counts` feeds `pipelines.accounting` (in = kept + rejected).
    """

    def __init__(
        self,
        settings: GradingSettings,
        video_roots: Mapping[str, str] | None = None,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.grade = GradeSamples(settings, video_roots, out_dir=out_dir, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]) -> StageOutput:
        results, failed = samples | "GradeSamples" >> self.grade
        rows = results | "ToRlRows" >> beam.ParDo(GradeToRlRow(self.settings)).with_outputs(DEAD, main="rows")
        dead = (rows[DEAD], failed) | "DeadLetters" >> beam.Flatten()
        counts = (
            samples | CountStage(STAGE, "in"),
            rows.rows | "SampleOfRow" >> beam.Map(lambda row: row.sample) | CountStage(STAGE, "kept"),
        ) | "Tallies" >> beam.Flatten()
        return StageOutput(rows.rows, dead, counts)


class PrepareAndGrade(beam.PTransform):
    """PBegin -> `StageOutput(RL rows, dead letters, tallies)` of the stages read .. grade, for one build config.

    The config's source entries fall into two parts (`BuildConfig.tool_parts`): graded with the clip tool (an
    entry's `tools: true`, or the grade block's `tools` when the entry does not say) or without. Each part is
    prepared (`PrepareSamples`) and graded (`Grade`) on its own branch with `settings` whose `tools` is the part's,
    so its rows carry `tools` (the RL mix's `tool/...` keys) and its results have their own cache keys (`tools` is
    in the config hash). Dedup runs within a part: a sample listed in both parts is graded both ways and gives one
    row in each. The parts' tallies and dead letters are summed, so the accounting table stays one table.
    """

    def __init__(
        self,
        config: BuildConfig,
        settings: GradingSettings,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.config, self.settings = config, settings
        self.out_dir, self.engine_factory = out_dir, engine_factory

    def expand(self, pbegin: beam.pvalue.PBegin) -> StageOutput:
        parts = self.config.tool_parts(self.settings.tools)
        rows, dead, counts = [], [], []
        for tools, part in parts.items():
            name = "" if len(parts) == 1 else ("Tools" if tools else "Text")
            prepared = pbegin | f"Prepare{name}" >> PrepareSamples(part)
            settings = dataclasses.replace(self.settings, tools=tools)
            grade = Grade(settings, part.video_roots, out_dir=self.out_dir, engine_factory=self.engine_factory)
            graded = prepared.kept | f"Grade{name}" >> grade
            rows.append(graded.kept)
            dead += [prepared.dead_letters, graded.dead_letters]
            counts += [prepared.counts, graded.counts]
        return StageOutput(
            tuple(rows) | "Rows" >> beam.Flatten(),
            tuple(dead) | "DeadLetters" >> beam.Flatten(),
            tuple(counts) | "Tallies" >> beam.Flatten(),
        )
