"""`mtvr eval`: a model on VITAL's benchmarks, tool on and/or off, as a Beam pipeline like the builders.

    per benchmark: read (mtvr_data.benchmarks) -> probe/validate -> per setting (tool off, tool on):
        [cache lookup] -> RunInference(EvalHandler: one greedy rollout) -> score (mtvr_data.eval_metrics)
    -> results_<benchmark>_<setting>.jsonl, dead_letters.jsonl, then table.md / table.json / plot.svg

Why it looks like this:
- A number must mean what it means in training: the same prompt builder, frame sampler, clip tool and parser. So
  the model runs through the grading stage's own handler (`EvalHandler` subclasses `grading.GradingHandler`: the
  same engines, `RolloutRunner`, per-sample failure net, server sharing) with K = 1 and greedy decoding, and the
  output is scored by `mtvr_data.eval_metrics`, which reads it with `mtvr_data.parsing`.
- Resume like grading (`pipelines.result_cache`, stage `eval`): each finished answer (the assistant text, tool
  calls and finish reason, never a score) is written as soon as its batch is done, keyed by (sample id, engine,
  model, hash of the settings that decide the answer, tools included). Scores are derived on read, so a metric fix
  rescores a finished run without a model call. Machinery failures are not cached: a rerun retries them.
- Nothing drops a question silently. Unreadable records (read), unreadable videos (probe) and failed inference
  batches are dead letters with a reason (`dead_letters.jsonl`); a question that had a sample but no answer (probe
  or engine failure) is ALSO a `failed` row of its results file, wrong in every denominator, counted apart.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from model.engine_api import Engine
from model.trajectory import INTERNAL_ERROR, MODEL_OUTCOMES, Trajectory
from mtvr_data.eval_metrics import SampleResult, failed_result, score_sample, write_results
from mtvr_data.schema import Sample, SampleError
from pipelines.grading import EngineSpec, GradingHandler, GradingSettings, build_engine, engine_tag
from pipelines.result_cache import ResultCache, SplitCached
from pipelines.transforms import DEAD, ProbeAndValidate, StageMetrics

log = logging.getLogger(__name__)

STAGE = "eval"
METRICS_NAMESPACE = "mtvr.eval"
DEAD_LETTERS_FILE = "dead_letters.jsonl"
RUN_FILE = "run.json"
#: `--tools` value -> the settings it runs, as (name in files and tables, tools on?).
TOOL_SETTINGS: dict[str, tuple[tuple[str, bool], ...]] = {
    "off": (("tool_off", False),),
    "on": (("tool_on", True),),
    "both": (("tool_off", False), ("tool_on", True)),
}
#: GradingSettings fields an eval config may set (the rest are fixed: K = 1, keep all, tools by setting).
GENERATION_KEYS = frozenset(
    {
        "temperature",
        "top_p",
        "max_new_tokens",
        "repetition_penalty",
        "seed",
        "max_tool_calls",
        "max_turns",
        "max_total_tokens",
        "frame_budget",
        "min_batch_size",
        "max_batch_size",
        "max_concurrent_samples",
        "workers",
        "max_engine_calls",
        "tool_timeout_s",
        "media_timeout_s",
    }
)


def results_name(benchmark: str, setting: str) -> str:
    return f"results_{benchmark}_{setting}.jsonl"


# --- configuration ---------------------------------------------------------------------------------------------------


@dataclass
class BenchmarkInput:
    """One benchmark to run: its name (`mtvr_data.benchmarks`), its native annotation file(s) and video root."""

    name: str
    annotations: str | list[str]
    videos: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cap: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a benchmark needs a 'name' (see `mtvr_data.benchmarks.available_benchmarks()`)")
        if not self.annotations:
            raise ValueError(f"benchmark {self.name!r}: 'annotations' must name its annotation file(s)")
        if self.cap is not None and (isinstance(self.cap, bool) or not isinstance(self.cap, int) or self.cap < 0):
            raise ValueError(f"benchmark {self.name!r}: 'cap' must be a non-negative integer")


@dataclass
class EvalConfig:
    """A whole evaluation: benchmarks, the model and engine, tool settings, the frame budget, generation settings.

    Defaults: greedy decoding (temperature 0, no repetition penalty: an evaluation is one deterministic answer),
    VITAL's turn limits (1024 new tokens per turn, at most 2 tool calls, 7168 tokens in all) and the RL rollouts'
    64-frame budget. `generation` holds further `GradingSettings` fields (`GENERATION_KEYS`).
    """

    benchmarks: list[BenchmarkInput]
    out: str
    engine: EngineSpec
    tools: str = "both"
    max_frames: int = 64
    generation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.benchmarks:
            raise ValueError("an evaluation needs at least one benchmark")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"a benchmark is listed twice: {sorted(n for n, c in Counter(names).items() if c > 1)}")
        if self.tools not in TOOL_SETTINGS:
            raise ValueError(f"tools must be one of {sorted(TOOL_SETTINGS)}, got {self.tools!r}")
        if isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1:
            raise ValueError(f"max_frames must be a positive integer, got {self.max_frames!r}")
        unknown = sorted(set(self.generation) - GENERATION_KEYS)
        if unknown:
            raise ValueError(f"unknown generation settings {unknown}; expected some of {sorted(GENERATION_KEYS)}")
        for tools in (False, True):
            self.grading(tools)  # invalid values fail here, before any pipeline is built

    @property
    def settings(self) -> tuple[tuple[str, bool], ...]:
        return TOOL_SETTINGS[self.tools]

    def grading(self, tools: bool) -> GradingSettings:
        """The rollout settings of one setting: K = 1, greedy unless told otherwise, the frame budget."""
        generation = {"temperature": 0.0, "repetition_penalty": 1.0, **self.generation}
        budget = {**dict(generation.pop("frame_budget", None) or {}), "max_frames": self.max_frames}
        return GradingSettings(
            engine=self.engine,
            k=1,
            tools=tools,
            keep="all",
            frame_budget=budget,
            min_graded_fraction=1.0,
            **generation,
        )

    def facts(self) -> dict[str, Any]:
        """What the table reports about the run (and `run.json` keeps)."""
        sampling = self.grading(False).sampling()
        return {
            "model": self.engine.model_id,
            "engine": self.engine.kind,
            "tools": self.tools,
            "settings": [name for name, _ in self.settings],
            "max_frames": self.max_frames,
            "temperature": sampling.temperature,
            "max_new_tokens": sampling.max_new_tokens,
            "config_hashes": {name: self.grading(tools).config_hash for name, tools in self.settings},
            "benchmarks": [b.name for b in self.benchmarks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None) -> EvalConfig:
        """From parsed YAML; relative paths (annotations, videos, out, a local model) resolve against `base_dir`."""
        data = dict(data)
        base = Path(base_dir) if base_dir is not None else None

        def resolve(value: str) -> str:
            path = Path(value).expanduser()
            return str(path if path.is_absolute() or base is None else (base / path).resolve())

        known = {"benchmarks", "out", "engine", "tools", "max_frames", "generation"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown eval config keys {unknown}; expected some of {sorted(known)}")
        benchmarks = []
        for i, entry in enumerate(data.get("benchmarks") or []):
            if not isinstance(entry, Mapping) or "name" not in entry or "annotations" not in entry:
                raise ValueError(f"benchmarks[{i}] must be a mapping with 'name' and 'annotations'")
            entry = dict(entry)
            ann = entry["annotations"]
            entry["annotations"] = [resolve(a) for a in ann] if isinstance(ann, list) else resolve(str(ann))
            if entry.get("videos"):
                entry["videos"] = resolve(str(entry["videos"]))
            options = dict(entry.get("options") or {})
            for key in ("gsub", "durations", "vid_map"):  # file-valued adapter options, as in the build configs
                if isinstance(options.get(key), str):
                    options[key] = resolve(options[key])
            entry["options"] = options
            benchmarks.append(BenchmarkInput(**entry))
        engine = dict(data.get("engine") or {"kind": "transformers"})
        settings = dict(engine.get("settings") or {})
        model = settings.get("model")
        if isinstance(model, str) and base is not None and (base / model).exists():
            settings["model"] = str((base / model).resolve())  # a local checkpoint named relative to the config
        if "out" not in data:
            raise ValueError("missing top-level key 'out' (the output folder)")
        return cls(
            benchmarks=benchmarks,
            out=resolve(str(data["out"])),
            engine=EngineSpec(str(engine.get("kind", "transformers")), settings),
            tools=str(data.get("tools", "both")),
            max_frames=data.get("max_frames", 64),
            generation=dict(data.get("generation") or {}),
        )


def load_eval_config(path: str | Path) -> EvalConfig:
    """Read a YAML eval config (see `configs/eval_demo.yaml`); errors name the file."""
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: an eval config is a mapping with 'benchmarks', 'out' and 'engine'")
    try:
        return EvalConfig.from_dict(data, base_dir=path.resolve().parent)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


# --- reading a benchmark ---------------------------------------------------------------------------------------------


def read_benchmark_items(bench: BenchmarkInput) -> Iterator[Sample | SampleError]:
    """The benchmark's samples and read errors, via `mtvr_data.benchmarks.read_benchmark` (capped like `head`)."""
    from mtvr_data.benchmarks import read_benchmark

    kept = 0
    for item in read_benchmark(bench.name, bench.annotations, **bench.options):
        if bench.cap is not None and kept >= bench.cap:
            return
        if isinstance(item, Sample):
            kept += 1
        yield item


class _ReadBenchmarkFn(beam.DoFn):
    """A `BenchmarkInput` -> its samples (main) and read errors (`DEAD`, stage read); a lost file is one error."""

    def setup(self) -> None:
        self.metrics = StageMetrics("read")

    def process(self, bench: BenchmarkInput) -> Iterator[Any]:
        counts: Counter[str] = Counter()
        try:
            for item in read_benchmark_items(bench):
                self.metrics.inc("in")
                if isinstance(item, SampleError):
                    counts["errors"] += 1
                    yield self.metrics.rejected(item)
                else:
                    counts["samples"] += 1
                    self.metrics.inc("kept")
                    yield item
        except OSError as exc:
            counts["errors"] += 1
            where = str(bench.annotations)
            yield self.metrics.rejected(SampleError(bench.name, where, "annotations_unreadable", str(exc)))
        log.info("benchmark %s: %d samples read, %d records rejected", bench.name, counts["samples"], counts["errors"])


# --- the model stage ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """The model's answer to one sample: its assistant text (all turns), tool calls and why it ended.

    This, not a score, is what is cached, so scores are always derived from the current metric code.
    """

    sample: Sample
    text: str
    finish_reason: str
    tool_calls: int = 0
    successful_tool_calls: int = 0
    error: str | None = None

    @classmethod
    def from_trajectory(cls, sample: Sample, traj: Trajectory) -> Answer:
        return cls(
            sample,
            traj.assistant_text,
            traj.finish_reason,
            traj.num_tool_calls,
            traj.num_successful_tool_calls,
            traj.error,
        )

    @property
    def complete(self) -> bool:
        """Ended by the model's doing (answer, none, limits): a result; anything else is a machinery failure."""
        return self.finish_reason in MODEL_OUTCOMES

    def cache_value(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "tool_calls": self.tool_calls,
            "successful_tool_calls": self.successful_tool_calls,
            "error": self.error,
        }

    @classmethod
    def from_cache(cls, sample: Sample, value: Mapping[str, Any]) -> Answer:
        return cls(
            sample,
            str(value["text"]),
            str(value["finish_reason"]),
            int(value.get("tool_calls") or 0),
            int(value.get("successful_tool_calls") or 0),
            value.get("error"),
        )


class EvalHandler(GradingHandler):
    """RunInference handler: a batch of samples in, one `Answer` each out (one greedy rollout per sample).

    Everything but the output type is the grading handler's: engine loading and server sharing, video roots,
    the rollout loop with the clip tool, and the per-sample retry when a batch raises.
    """

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def run_inference(
        self, batch: Sequence[Sample], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[Answer]:
        samples = list(batch)
        groups = self.rollout_groups(samples, model)
        answers = []
        for sample, group in zip(samples, groups, strict=True):
            if isinstance(group, BaseException):
                answer = Answer(sample, "", INTERNAL_ERROR, error=f"{type(group).__name__}: {group}")
            else:
                answer = Answer.from_trajectory(sample, group[0])
            self._record_answer(answer)
            answers.append(answer)
        log.info("eval (tools %s): %d answers", "on" if self.settings.tools else "off", len(answers))
        return answers

    def _record_answer(self, answer: Answer) -> None:
        Metrics.counter(METRICS_NAMESPACE, f"finish_{answer.finish_reason}").inc()
        if self.cache is not None and answer.complete:
            self.cache.put(self.settings.cache_key(answer.sample.id), answer.cache_value())


class _ScoreFn(beam.DoFn):
    """An `Answer` -> its `SampleResult`; a machinery failure becomes a `failed` result (never dropped)."""

    def __init__(self, benchmark: str, setting: str) -> None:
        self.benchmark, self.setting = benchmark, setting

    def process(self, answer: Answer) -> Iterator[SampleResult]:
        sample, where = answer.sample, {"benchmark": self.benchmark, "setting": self.setting}
        if not answer.complete:
            yield failed_result(sample, **where, reason=answer.finish_reason, detail=answer.error or "")
            return
        try:
            yield score_sample(
                sample, answer.text, **where, tool_calls=answer.tool_calls, finish_reason=answer.finish_reason
            )
        except ValueError as exc:  # the sample's own truth cannot be scored: a data bug, visible in the results
            yield failed_result(sample, **where, reason="unscorable", detail=str(exc))


def _failed_batch(failed: tuple[Any, Any], benchmark: str, setting: str) -> Iterator[Any]:
    """Beam's batch DLQ element -> a failed result per sample (main) and a dead letter each (`DEAD`)."""
    batch, exc = failed
    what = exc[1] if isinstance(exc, tuple) and len(exc) > 1 else f"{type(exc).__name__}: {exc}"
    for sample in batch if isinstance(batch, list | tuple) else [batch]:
        detail = f"batch failed: {what}"
        yield failed_result(sample, benchmark=benchmark, setting=setting, reason="eval_error", detail=detail)
        origin = str(sample.meta_dict.get("origin", sample.id))
        yield beam.pvalue.TaggedOutput(
            DEAD, SampleError(sample.source, origin, "eval_error", detail, STAGE, sample.id)
        )


class AnswerSamples(beam.PTransform):
    """samples -> (Answers, dead letters of failed batches) for one setting: cache lookup, then RunInference."""

    def __init__(
        self,
        settings: GradingSettings,
        video_roots: Mapping[str, str],
        *,
        out_dir: str | None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.cache = ResultCache(out_dir, STAGE) if out_dir is not None else None
        self.handler = EvalHandler(settings, video_roots, cache=self.cache, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]) -> tuple[beam.PCollection, beam.PCollection]:
        tag = engine_tag(self.settings.engine)
        hits: list[beam.PCollection] = []
        if self.cache is not None:
            lookup = SplitCached(self.cache, self.settings.cache_key, Answer.from_cache, METRICS_NAMESPACE)
            split = samples | "LookupCache" >> beam.ParDo(lookup).with_outputs(SplitCached.MISSES, main="hits")
            hits, samples = [split.hits], split[SplitCached.MISSES]
        answers, dlq = (
            samples | "RunInference" >> RunInference(self.handler, model_identifier=tag).with_exception_handling()
        )
        return (*hits, answers) | "Answers" >> beam.Flatten(), dlq.failed_inferences


def _failed_for_dead(keyed: tuple[str, Mapping[str, list[Any]]], benchmark: str, settings: Sequence[str]):
    """(id, {"sample": [...], "dead": [...]}) -> a failed result per setting for a sample the probe refused."""
    _, groups = keyed
    if not groups["dead"] or not groups["sample"]:
        return
    sample, error = groups["sample"][0], groups["dead"][0]
    for setting in settings:
        yield failed_result(sample, benchmark=benchmark, setting=setting, reason=error.reason, detail=error.detail)


class EvaluateBenchmark(beam.PTransform):
    """PBegin -> (results keyed by (benchmark, setting), dead letters) of one benchmark in every setting."""

    def __init__(
        self,
        bench: BenchmarkInput,
        config: EvalConfig,
        *,
        out_dir: str | None,
        engine_factory: Callable[[EngineSpec], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.bench, self.config = bench, config
        self.out_dir, self.engine_factory = out_dir, engine_factory

    def expand(self, pbegin: beam.pvalue.PBegin) -> tuple[beam.PCollection, beam.PCollection]:
        name = self.bench.name
        read = (
            pbegin
            | "Benchmark" >> beam.Create([self.bench])
            | "Read" >> beam.ParDo(_ReadBenchmarkFn()).with_outputs(DEAD, main="samples")
        )
        roots = {name: self.bench.videos}
        probed, probe_dead = read.samples | "Probe" >> ProbeAndValidate(roots)
        settings = [s for s, _ in self.config.settings]
        refused = (
            {
                "sample": read.samples | "SampleById" >> beam.Map(lambda s: (s.id, s)),
                "dead": probe_dead | "DeadById" >> beam.Map(lambda e: (e.raw, e)),
            }
            | "JoinRefused" >> beam.CoGroupByKey()
            | "RefusedResults" >> beam.FlatMap(_failed_for_dead, name, settings)
        )
        results, dead = [refused], [read[DEAD], probe_dead]
        video_roots = {name: self.bench.videos or ""}
        for setting, tools in self.config.settings:
            grading = self.config.grading(tools)
            answer = AnswerSamples(grading, video_roots, out_dir=self.out_dir, engine_factory=self.engine_factory)
            answers, failed = probed | f"Answer_{setting}" >> answer
            scored = answers | f"Score_{setting}" >> beam.ParDo(_ScoreFn(name, setting))
            lost = failed | f"FailedBatches_{setting}" >> beam.FlatMap(_failed_batch, name, setting).with_outputs(
                DEAD, main="results"
            )
            results += [scored, lost.results]
            dead.append(lost[DEAD])
        keyed = (
            tuple(results) | "Results" >> beam.Flatten() | "Key" >> beam.Map(lambda r: ((r.benchmark, r.setting), r))
        )
        return keyed, tuple(dead) | "DeadLetters" >> beam.Flatten()


# --- writing and the whole run ---------------------------------------------------------------------------------------


def _write_results(keyed: tuple[tuple[str, str], Iterable[SampleResult]], out_dir: str) -> str:
    (benchmark, setting), results = keyed
    path = write_results(Path(out_dir) / results_name(benchmark, setting), results)
    return str(path)


def _write_dead_letters(errors: list[SampleError], out_dir: str) -> str:
    rows = sorted((e.to_dict() for e in errors), key=lambda d: json.dumps(d, sort_keys=True))
    path = Path(out_dir) / DEAD_LETTERS_FILE
    path.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def check_inputs(config: EvalConfig) -> None:
    """Fail before any pipeline work on an unknown benchmark name or an annotation path that does not exist."""
    from mtvr_data.benchmarks import available_benchmarks

    known = available_benchmarks()
    for bench in config.benchmarks:
        if bench.name not in known:
            raise ValueError(f"unknown benchmark {bench.name!r}; known: {', '.join(known)}")
        paths = bench.annotations if isinstance(bench.annotations, list) else [bench.annotations]
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"benchmark {bench.name!r}: annotations not found: {', '.join(missing)}")


def evaluate(
    config: EvalConfig | str | Path,
    pipeline_args: list[str] | None = None,
    *,
    engine_factory: Callable[[EngineSpec], Engine] = build_engine,
) -> dict[str, Any]:
    """Run the evaluation of `config` (a config or its YAML path); returns the table (also in `<out>/table.json`)."""
    from pipelines.eval_report import write_report

    if not isinstance(config, EvalConfig):
        config = load_eval_config(config)
    check_inputs(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = config.facts()
    log.info(
        "eval of %s (%s) on %s, settings %s", facts["model"], facts["engine"], facts["benchmarks"], facts["settings"]
    )
    with beam.Pipeline(options=PipelineOptions(pipeline_args or [])) as p:
        keyed, dead = [], []
        for bench in config.benchmarks:
            results, errors = p | f"Eval_{bench.name}" >> EvaluateBenchmark(
                bench, config, out_dir=str(out), engine_factory=engine_factory
            )
            keyed.append(results)
            dead.append(errors)
        _ = (
            tuple(keyed)
            | "AllResults" >> beam.Flatten()
            | "ByBenchmarkAndSetting" >> beam.GroupByKey()
            | "WriteResults" >> beam.Map(_write_results, str(out))
        )
        _ = (
            tuple(dead)
            | "AllDeadLetters" >> beam.Flatten()
            | "DeadList" >> beam.combiners.ToList()
            | "WriteDeadLetters" >> beam.Map(_write_dead_letters, str(out))
        )
    for bench in config.benchmarks:  # a benchmark whose every record was rejected still gets its (empty) files
        for setting, _ in config.settings:
            path = out / results_name(bench.name, setting)
            if not path.exists():
                write_results(path, [])
    (out / RUN_FILE).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    table = write_report(out)
    log.info("eval finished: %s", out)
    return table


def config_from_args(
    *,
    model: str,
    engine: str,
    benchmarks: Sequence[tuple[str, str, str | None]],
    out: str,
    tools: str = "both",
    max_frames: int = 64,
    engine_settings: Mapping[str, Any] | None = None,
    generation: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    cap: int | None = None,
) -> EvalConfig:
    """An `EvalConfig` from command-line values: (name, annotations, videos) per benchmark."""
    spec = EngineSpec(engine, {"model": model, **dict(engine_settings or {})})
    inputs = [
        BenchmarkInput(name, annotations, videos, dict((options or {}).get(name, {})), cap)
        for name, annotations, videos in benchmarks
    ]
    return EvalConfig(inputs, out, spec, tools, max_frames, dict(generation or {}))


__all__ = [
    "Answer",
    "AnswerSamples",
    "BenchmarkInput",
    "EvalConfig",
    "EvalHandler",
    "EvaluateBenchmark",
    "config_from_args",
    "evaluate",
    "load_eval_config",
    "results_name",
]
