"""The answer-conditioned teacher as a Beam model handler (PAPERS.md, VITAL step 3), with verify and select.

    samples -> [cache lookup] -> RunInference(TeachingHandler) -> TeachResult -> stage `teacher` -> stage `verify`
    -> one CotRow per sample | dead letters

Why it looks like this:
- `TeachingHandler` is a `pipelines.grading.GradingHandler` with another batch: a RunInference `ModelHandler`, so
  Beam batches, holds one engine per worker (a `vllm serve` / OpenAI-compatible server shared across processes
  through `grading.EngineHost`) and reports load and latency metrics. A batch is one `model.teacher.teacher_rollouts`
  call: text chains for short videos and images, tool chains (the clip tool really executed) for the tool sources
  and long videos, as `TeacherConfig` routes them. A batch that raises is retried sample by sample.
- Resume reuses `pipelines.result_cache` (stage `teach`: `<out>/cache/teach/`), keyed by (sample id, engine kind,
  model id, config hash). The cached value is the chains as generated (turns, tool steps, finish reasons), not the
  verdict: rewards, verify and select are derived on read, so a rerun gives identical rows and a changed pass rule
  re-judges the same chains without new model work. A result with a machinery failure (engine, media, tool timeout)
  is not cached, so a rerun tries again.
- Stage `teacher` rejects what the machinery lost (`teacher_error`: the rollout raised or its batch failed;
  `teacher_failed`: no chain ended by the model's doing); stage `verify` rejects samples none of whose chains
  passes `model.teacher.verify` (strict format, right answer, tool calls returned frames, no hint mentioned), with
  the chains' reasons. A sample that passes keeps its best chain (`model.teacher.select`) as a `CotRow`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference

from model.engine_api import Engine, SamplingSettings
from model.prompts import PromptConfig
from model.rollout import RolloutConfig
from model.teacher import SFT_BUDGET, TeacherConfig, TeacherRun, make_cot_row, select, teacher_rollouts
from model.teacher import config_hash as teacher_hash
from model.trajectory import MODEL_OUTCOMES, ToolStep, Trajectory, Turn
from mtvr_data.frame_cache import FrameCache
from mtvr_data.normalize import resolve_media
from mtvr_data.rewards import PassRule, total_reward
from mtvr_data.schema import Sample, SampleError
from pipelines.grading import EngineSpec, GradingHandler, build_engine, engine_tag, settings_from_dict
from pipelines.result_cache import CacheKey, ResultCache, SplitCached, config_hash
from pipelines.transforms import DEAD, CountStage, StageMetrics, StageOutput

log = logging.getLogger(__name__)

STAGE = "teacher"
VERIFY_STAGE = "verify"
CACHE_STAGE = "teach"
METRICS_NAMESPACE = "mtvr.teacher"


@dataclass(frozen=True)
class TeachSettings:
    """How the teacher runs (config key `teach`): `engine: {kind, settings}` and the fields below.

    `k` chains per sample (the best verified one is kept; more chains rescue more samples at k times the cost).
    Sampling defaults follow `TeacherConfig` (temperature 0.7); frames follow SFT's 128-frame budget, with
    `frame_budget` overriding `FrameBudget` fields. Routing: `tool_sources` and `long_video_s` decide tool chains,
    `span_noise` the hinted interval's noise. Batching, concurrency and timeouts do not enter the cache key.
    """

    engine: EngineSpec = field(default_factory=lambda: EngineSpec("vllm"))
    k: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.05
    seed: int | None = None
    max_tool_calls: int = 2
    max_turns: int = 3
    max_total_tokens: int = 7168
    frame_budget: Mapping[str, Any] = field(default_factory=dict)
    tool_sources: tuple[str, ...] = ("vidchapters", "longvideo_reason")
    long_video_s: float | None = 120.0
    span_noise: float = 0.2
    pass_rule: Mapping[str, Any] = field(default_factory=dict)
    min_batch_size: int = 1
    max_batch_size: int = 8
    max_concurrent_samples: int = 64
    workers: int = 8
    max_engine_calls: int | None = None
    tool_timeout_s: float = 60.0
    media_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"teach k must be >= 1, got {self.k}")
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError("need 1 <= min_batch_size <= max_batch_size")
        object.__setattr__(self, "tool_sources", tuple(self.tool_sources))
        self.teacher_config()  # invalid budgets, rules or limits fail here, not on a worker

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TeachSettings:
        """From a config mapping (`engine: {kind, settings}` plus the fields above); unknown keys raise."""
        return settings_from_dict(cls, config, "teach")

    @property
    def teacher(self) -> str:
        """The teacher's name in rows and cache keys: engine kind and model id."""
        return self.engine.grader

    def teacher_config(self) -> TeacherConfig:
        sampling = SamplingSettings(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )
        rule = PassRule(**self.pass_rule)
        rollout = RolloutConfig(
            max_tool_calls=self.max_tool_calls,
            max_turns=self.max_turns,
            sampling=sampling,
            max_total_tokens=self.max_total_tokens,
            tool_timeout_s=self.tool_timeout_s,
            media_timeout_s=self.media_timeout_s,
            prompt=PromptConfig(budget=dataclasses.replace(SFT_BUDGET, **self.frame_budget)),
            pass_rule=rule,
            max_concurrent_samples=self.max_concurrent_samples,
            workers=self.workers,
            max_engine_calls=self.max_engine_calls,
        )
        return TeacherConfig(rollout, self.tool_sources, self.long_video_s, self.span_noise, rule)

    @functools.cached_property
    def config_hash(self) -> str:
        """What decides the chains: `model.teacher.config_hash` (model, sampling, prompt, hints, routing) and k."""
        return config_hash({"teacher": teacher_hash(self.teacher_config(), self.teacher), "k": self.k})

    def cache_key(self, sample: Sample | str) -> CacheKey:
        sample_id = sample if isinstance(sample, str) else sample.id
        return CacheKey(sample_id, self.engine.kind, self.engine.model_id, self.config_hash)


# --- results and their cache form ----------------------------------------------------------------------------------


def _trajectory_to_dict(traj: Trajectory) -> dict[str, Any]:
    data = dataclasses.asdict(traj)
    data.pop("reward")  # derived on read (`_rescore`), like the pass flag
    data.pop("passed")
    return data


def _trajectory_from_dict(data: Mapping[str, Any]) -> Trajectory:
    turns = []
    for t in data["turns"]:
        tool = t.get("tool")
        if tool is not None:
            tool = ToolStep(**{**tool, "clip": tuple(tool["clip"]) if tool.get("clip") is not None else None})
        turns.append(Turn(**{**t, "tool": tool}))
    fields = {k: data[k] for k in ("sample_id", "index", "tools", "finish_reason", "error")}
    return Trajectory(**fields, turns=turns)


def _rescore(sample: Sample, traj: Trajectory, rule: PassRule) -> Trajectory:
    """Reward and pass flag as the rollout loop sets them (only for chains that ended by the model's doing)."""
    if traj.finish_reason in MODEL_OUTCOMES:
        text, calls = traj.assistant_text, traj.num_successful_tool_calls
        traj.reward = total_reward(sample, text, num_successful_tool_calls=calls, tools=traj.tools, rule=rule)
        traj.passed = traj.reward.detail.passed
    return traj


@dataclass(slots=True)
class TeachResult:
    """The teacher's chains for one sample (`error` set when its rollout raised as a whole: no chains)."""

    sample: Sample
    teacher: str
    tools: bool = False
    hint: str = ""
    trajectories: list[Trajectory] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        """Every chain ended by the model's doing: the result is final and may be cached."""
        return self.error is None and all(t.finish_reason in MODEL_OUTCOMES for t in self.trajectories)

    def run(self) -> TeacherRun:
        return TeacherRun(self.sample, self.tools, self.hint, self.trajectories)

    def cache_value(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher,
            "tools": self.tools,
            "hint": self.hint,
            "trajectories": [_trajectory_to_dict(t) for t in self.trajectories],
        }

    @classmethod
    def from_cache(cls, sample: Sample, value: Mapping[str, Any], *, rule: PassRule) -> TeachResult:
        chains = [_rescore(sample, _trajectory_from_dict(t), rule) for t in value["trajectories"]]
        return cls(sample, str(value["teacher"]), bool(value["tools"]), str(value["hint"]), chains)


# --- the model handler ---------------------------------------------------------------------------------------------


class TeachingHandler(GradingHandler):
    """RunInference handler: a batch of samples in, one `TeachResult` per sample out (module docstring).

    The engine plumbing is `GradingHandler`'s, unchanged (it reads only `settings.engine` and the batch sizes,
    which `TeachSettings` has too): one server per worker machine shared across processes for vllm/openai, an
    in-process engine per process for the others; `engine_factory` builds it on the worker, so it must pickle.
    Only what a batch does differs: teacher rollouts instead of graded ones.
    """

    def __init__(
        self,
        settings: TeachSettings,
        video_roots: Mapping[str, str] | None = None,
        *,
        cache: ResultCache | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__(settings, video_roots, cache=cache, engine_factory=engine_factory)  # type: ignore[arg-type]
        self.teach: TeachSettings = settings

    @property
    def model_name(self) -> str:
        return self.teach.teacher

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def run_inference(
        self, batch: Sequence[Sample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[TeachResult]:
        engine = self._engine(model)
        samples = list(batch)
        try:
            runs: list[TeacherRun | BaseException] = list(asyncio.run(self._teach(samples, engine)))
        except Exception as exc:
            log.warning("teacher batch of %d failed (%s); retrying sample by sample", len(samples), exc)
            Metrics.counter(METRICS_NAMESPACE, "batch_retried_per_sample").inc()
            runs = [self._one(sample, engine) for sample in samples]
        results = []
        for sample, run in zip(samples, runs, strict=True):
            teacher = self.teach.teacher
            if isinstance(run, BaseException):
                result = TeachResult(sample, teacher, error=f"{type(run).__name__}: {run}")
            else:  # the original sample: the run's copy names the resolved media path
                result = TeachResult(sample, teacher, run.tools, run.hint, run.trajectories)
            for reason, n in Counter(t.finish_reason for t in result.trajectories).items():
                Metrics.counter(METRICS_NAMESPACE, f"finish_{reason}").inc(n)
            if self.cache is not None and result.complete:
                self.cache.put(self.teach.cache_key(sample), result.cache_value())
            results.append(result)
        return results

    def _one(self, sample: Sample, engine: Engine) -> TeacherRun | BaseException:
        try:
            (run,) = asyncio.run(self._teach([sample], engine))
            return run
        except Exception as exc:
            log.exception("teacher on sample %s failed", sample.id)
            return exc

    async def _teach(self, samples: list[Sample], engine: Engine) -> list[TeacherRun]:
        if self._frames is None:
            self._frames = FrameCache()
        resolved = [
            dataclasses.replace(s, video=str(resolve_media(self.video_roots.get(s.source), s.video))) for s in samples
        ]
        config = self.teach.teacher_config()
        return await teacher_rollouts(resolved, engine, k=self.teach.k, config=config, cache=self._frames)


# --- transforms ----------------------------------------------------------------------------------------------------


def _dead_letter(sample: Sample, stage: str, reason: str, detail: str) -> SampleError:
    origin = sample.meta_dict.get("origin", sample.id)
    return SampleError(sample.source, str(origin), reason, detail, stage=stage, raw=sample.id)


def _failed_batch(failed: tuple[Any, Any]) -> Iterator[SampleError]:
    """Beam's batch DLQ element as one dead letter `teacher_error` per sample of its batch."""
    batch, exc = failed
    what = exc[1] if isinstance(exc, tuple) and len(exc) > 1 else f"{type(exc).__name__}: {exc}"
    for sample in batch if isinstance(batch, list | tuple) else [batch]:
        yield _dead_letter(sample, STAGE, "teacher_error", f"batch failed: {what}")


class _CheckTaught(beam.DoFn):
    """Stage `teacher`: results whose machinery failed become dead letters; the rest go on to verify."""

    def setup(self) -> None:
        self.metrics = StageMetrics(STAGE)

    def process(self, result: TeachResult) -> Iterator[Any]:
        self.metrics.inc("in")
        if result.error is not None:
            yield self.metrics.rejected(_dead_letter(result.sample, STAGE, "teacher_error", result.error))
        elif not any(t.finish_reason in MODEL_OUTCOMES for t in result.trajectories):
            reasons = dict(sorted(Counter(t.finish_reason for t in result.trajectories).items()))
            detail = f"no chain ended by the model: {reasons}"
            yield self.metrics.rejected(_dead_letter(result.sample, STAGE, "teacher_failed", detail))
        else:
            self.metrics.inc("kept")
            yield result


class _VerifyAndSelect(beam.DoFn):
    """Stage `verify`: the best verified chain of a sample as a `CotRow`, or a dead letter with the reasons.

    The reason is the commonest reject code among the sample's chains (ties: alphabetical); the detail lists all.
    """

    def __init__(self, settings: TeachSettings) -> None:
        self.settings = settings

    def setup(self) -> None:
        self.metrics = StageMetrics(VERIFY_STAGE)
        self.config = self.settings.teacher_config()

    def process(self, result: TeachResult) -> Iterator[Any]:
        self.metrics.inc("in")
        chosen, reasons = select(result.run(), rule=self.config.pass_rule)
        if chosen is None:
            counts = Counter(reasons)
            reason = min(counts, key=lambda r: (-counts[r], r))
            detail = f"{len(reasons)} chain(s) rejected: {dict(sorted(counts.items()))}"
            yield self.metrics.rejected(_dead_letter(result.sample, VERIFY_STAGE, reason, detail))
            return
        self.metrics.inc("kept")
        yield make_cot_row(result.sample, chosen, teacher=result.teacher, config=self.config)


class Teach(beam.PTransform):
    """samples -> `StageOutput(CoT rows, dead letters, tallies)` of stages `teacher` and `verify`.

    Cache lookup (`<out>/cache/teach/`), RunInference on the misses, the machinery check, then verify and select.
    Without `out_dir` nothing is cached.
    """

    def __init__(
        self,
        settings: TeachSettings,
        video_roots: Mapping[str, str] | None = None,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.cache = ResultCache(out_dir, CACHE_STAGE) if out_dir is not None else None
        self.handler = TeachingHandler(settings, video_roots, cache=self.cache, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]) -> StageOutput:
        tag = engine_tag(self.settings.engine)
        todo, hits = samples, []
        if self.cache is not None:
            rule = self.settings.teacher_config().pass_rule
            decode = functools.partial(TeachResult.from_cache, rule=rule)
            lookup = SplitCached(self.cache, self.settings.cache_key, decode, METRICS_NAMESPACE)
            split = samples | "LookupCache" >> beam.ParDo(lookup).with_outputs(SplitCached.MISSES, main="hits")
            hits, todo = [split.hits], split[SplitCached.MISSES]
        inference = RunInference(self.handler, model_identifier=tag).with_exception_handling()
        taught, dlq = todo | "RunInference" >> inference
        failed = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)
        results = (*hits, taught) | "Results" >> beam.Flatten()
        checked = results | "CheckTaught" >> beam.ParDo(_CheckTaught()).with_outputs(DEAD, main="taught")
        verified = checked.taught | "Verify" >> beam.ParDo(_VerifyAndSelect(self.settings)).with_outputs(
            DEAD, main="rows"
        )
        dead = (checked[DEAD], failed, verified[DEAD]) | "DeadLetters" >> beam.Flatten()
        taught_samples = checked.taught | "SampleOfTaught" >> beam.Map(lambda r: r.sample)
        counts = (
            samples | CountStage(STAGE, "in"),
            taught_samples | CountStage(STAGE, "kept"),
            taught_samples | "CountVerifyIn" >> CountStage(VERIFY_STAGE, "in"),
            verified.rows | "SampleOfRow" >> beam.Map(lambda row: row.sample) | CountStage(VERIFY_STAGE, "kept"),
        ) | "Tallies" >> beam.Flatten()
        return StageOutput(verified.rows, dead, counts)
