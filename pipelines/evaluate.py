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
- The output folder may be a URL (`out: s3://bucket/eval`, with the store's Beam options after `--`): every file the
  eval writes or reads back goes through `mtvr_data.storage` (`pipelines.eval_report` for the folder's files), and
  the folder is passed on as a string, never through `pathlib.Path`. Annotations and adapter side files may be URLs
  too. The config file itself is a local YAML file.
- Nothing drops a question silently. Unreadable records (read), unreadable videos (probe) and failed inference
  batches are dead letters with a reason (`dead_letters.jsonl`); a question that had a sample but no answer (probe
  or engine failure) is ALSO a `failed` row of its results file, wrong in every denominator, counted apart.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pydantic import Field, StrictInt, StrictStr, field_validator, model_validator

from model.config_error import ConfigError
from model.engine_api import Engine
from model.prompts import DEFAULT_PRESET
from model.settings import Block, EngineConfig, ModelCall, resolve_path
from model.trajectory import MODEL_OUTCOMES
from mtvr_data import storage
from mtvr_data.eval_metrics import SampleResult, failed_result, score_sample, write_results
from mtvr_data.schema import Sample, SampleError
from mtvr_data.tasks import Reading
from pipelines.eval_report import DEAD_LETTERS_FILE, RUN_FILE, results_name, write_report
from pipelines.model_stage import CachedInference, ModelResult, RolloutStage, build_engine
from pipelines.transforms import DEAD, ProbeAndValidate, StageMetrics

log = logging.getLogger(__name__)

STAGE = "eval"
#: `--tools` value -> the settings it runs, as (name in files and tables, tools on?).
TOOL_SETTINGS: dict[str, tuple[tuple[str, bool], ...]] = {
    "off": (("tool_off", False),),
    "on": (("tool_on", True),),
    "both": (("tool_off", False), ("tool_on", True)),
}
#: Under the user's blocks: greedy decoding (an evaluation is one deterministic answer), no repetition penalty,
#: VITAL's turn limits, the RL rollouts' 64-frame budget and VITAL's exact prompt strings (its checkpoints' words).
EVAL_DEFAULTS: dict[str, Any] = {
    "k": 1,
    "sampling": {"temperature": 0.0, "repetition_penalty": 1.0},
    "prompt": DEFAULT_PRESET,
}


# --- configuration ---------------------------------------------------------------------------------------------------


class BenchmarkInput(Block):
    """One benchmark to run: its name (`mtvr benchmarks` lists them), its native annotation file(s), its video root,
    adapter options, an optional cap (the first `cap` samples, like `head`) and the reading: `reference` (default:
    the benchmark's reference reads the answer, strictly where it is strict; `mtvr_data.benchmarks.scoring_rules`)
    or `lenient` (this project's letter reader, `parsing.parse_letter`, for every benchmark)."""

    name: StrictStr
    annotations: StrictStr | list[StrictStr]
    videos: StrictStr | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    cap: StrictInt | None = Field(None, ge=0)
    reading: Literal["reference", "lenient"] = "reference"

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from mtvr_data.benchmarks import available_benchmarks

        if name not in available_benchmarks():
            raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(available_benchmarks())}")
        return name

    @model_validator(mode="after")
    def _check_options(self) -> BenchmarkInput:
        if not self.annotations:
            raise ValueError("'annotations' must name the benchmark's annotation file(s)")
        from mtvr_data.benchmarks.registry import benchmark_option_names

        allowed = benchmark_option_names(self.name)
        unknown = sorted(set(self.options) - allowed) if allowed is not None else []
        if unknown:
            raise ValueError(f"options: unknown {unknown} for {self.name}; allowed: {sorted(allowed or ())}")
        return self


class EvalConfig(ModelCall):
    """A whole evaluation: benchmarks, output folder, tool settings (`off`, `on`, `both`), and the `ModelCall`
    blocks (engine, sampling, rollout, frames, clip, batching, prompt) with `EVAL_DEFAULTS` under them. K is 1."""

    benchmarks: list[BenchmarkInput] = Field(min_length=1)
    out: StrictStr
    tools: Literal["off", "on", "both"] = "both"
    k: Literal[1] = 1

    @field_validator("benchmarks")
    @classmethod
    def _unique(cls, benchmarks: list[BenchmarkInput]) -> list[BenchmarkInput]:
        names = Counter(b.name for b in benchmarks)
        twice = sorted(n for n, c in names.items() if c > 1)
        if twice:
            raise ValueError(f"a benchmark is listed twice: {twice}")
        return benchmarks

    @property
    def settings(self) -> tuple[tuple[str, bool], ...]:
        return TOOL_SETTINGS[self.tools]

    def stage(self, tools: bool) -> RolloutStage:
        return RolloutStage(name=STAGE, call=self, tools=tools)

    def facts(self) -> dict[str, Any]:
        """What the table reports about the run (and `run.json` keeps)."""
        return {
            "model": self.engine.identity,
            "engine": self.engine.kind,
            "tools": self.tools,
            "settings": [name for name, _ in self.settings],
            "max_frames": self.frames.max_frames,
            "temperature": self.sampling.temperature,
            "max_new_tokens": self.sampling.max_new_tokens,
            "config_hashes": {name: self.stage(tools).config_hash for name, tools in self.settings},
            "benchmarks": [b.name for b in self.benchmarks],
        }

    @classmethod
    def read(cls, data: Any, base_dir: str | Path | None = None, *, file: str | Path | None = None) -> EvalConfig:
        """From parsed YAML (or command-line values); relative paths (annotations, videos, out, file-valued adapter
        options, a local model) resolve against `base_dir`. Errors are one-line `ConfigError`s."""
        base = Path(base_dir) if base_dir is not None else None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{file}: an eval config is a mapping with 'benchmarks', 'out' and 'engine'")
        data = dict(data)
        benchmarks = []
        for entry in data.get("benchmarks") or []:
            if isinstance(entry, Mapping):
                entry = dict(entry)
                ann = entry.get("annotations")
                if isinstance(ann, str):
                    entry["annotations"] = resolve_path(base, ann)
                elif isinstance(ann, list):
                    entry["annotations"] = [resolve_path(base, a) if isinstance(a, str) else a for a in ann]
                if isinstance(entry.get("videos"), str):
                    entry["videos"] = resolve_path(base, entry["videos"])
                if isinstance(entry.get("options"), Mapping):
                    entry["options"] = _resolve_options(dict(entry["options"]), base)
            benchmarks.append(entry)
        if "benchmarks" in data:
            data["benchmarks"] = benchmarks
        if isinstance(data.get("out"), str):
            data["out"] = resolve_path(base, data["out"])
        try:
            return cls.parse(data, EVAL_DEFAULTS, base=base)
        except ConfigError as exc:
            raise ConfigError(f"{file}: {exc}" if file is not None else str(exc)) from None


#: Adapter options whose values are file paths (resolved against the YAML folder, as in the build configs).
FILE_OPTIONS = ("gsub", "durations", "vid_map")


def _resolve_options(options: dict[str, Any], base: Path | None) -> dict[str, Any]:
    for key in FILE_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = resolve_path(base, options[key])
    return options


def load_eval_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> EvalConfig:
    """Read a YAML eval config (see `configs/eval_demo.yaml`; a local file, though the paths in it may be URLs),
    `overrides` (deep-merged) on top; errors name the file and the key."""
    import yaml

    from model.settings import deep_merge

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, Mapping) and overrides:
        data = deep_merge(dict(data), overrides)
    return EvalConfig.read(data, base_dir=path.resolve().parent, file=path)


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


# --- scoring -------------------------------------------------------------------------------------------------------


class _ScoreFn(beam.DoFn):
    """A `ModelResult` -> its `SampleResult` (main) and, for a machinery failure, a `failed` result plus a dead
    letter (`DEAD`): nothing is dropped. Scores come from the current metric code, cached answers included."""

    def __init__(self, benchmark: str, setting: str, reading: Reading | None = None) -> None:
        self.benchmark, self.setting, self.reading = benchmark, setting, reading

    def setup(self) -> None:
        self.metrics = StageMetrics(STAGE)

    def process(self, result: ModelResult) -> Iterator[Any]:
        sample, where = result.sample, {"benchmark": self.benchmark, "setting": self.setting}
        traj = result.trajectories[0] if result.trajectories else None
        if result.error is not None or traj is None or traj.finish_reason not in MODEL_OUTCOMES:
            reason = "eval_error" if result.error is not None or traj is None else traj.finish_reason
            detail = result.error or (traj.error if traj is not None else None) or ""
            yield failed_result(sample, **where, reason=reason, detail=detail)
            if result.error is not None:
                yield self.metrics.rejected(SampleError.for_sample(sample, STAGE, "eval_error", detail))
            return
        try:
            yield score_sample(
                sample,
                traj.assistant_text,
                **where,
                tool_calls=traj.num_tool_calls,
                finish_reason=traj.finish_reason,
                reading=self.reading,
            )
        except ValueError as exc:  # the sample's own truth cannot be scored: a data bug, visible in the results
            yield failed_result(sample, **where, reason="unscorable", detail=str(exc))


def _failed_for_dead(keyed: tuple[str, Mapping[str, list[Any]]], benchmark: str, settings: Sequence[str]):
    """(id, {"sample": [...], "dead": [...]}) -> a failed result per setting for a sample the probe refused."""
    _, groups = keyed
    if not groups["dead"] or not groups["sample"]:
        return
    sample, error = groups["sample"][0], groups["dead"][0]
    for setting in settings:
        yield failed_result(sample, benchmark=benchmark, setting=setting, reason=error.reason, detail=error.detail)


class EvaluateBenchmark(beam.PTransform[beam.pvalue.PBegin, tuple[beam.PCollection, beam.PCollection]]):
    """PBegin -> (results keyed by (benchmark, setting), dead letters) of one benchmark in every setting."""

    def __init__(
        self,
        bench: BenchmarkInput,
        config: EvalConfig,
        *,
        out_dir: str | None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.bench, self.config = bench, config
        self.out_dir, self.engine_factory = out_dir, engine_factory

    def expand(self, pbegin: beam.pvalue.PBegin):
        name = self.bench.name
        read = (
            pbegin
            | "Benchmark" >> beam.Create([self.bench])
            | "Read" >> beam.ParDo(_ReadBenchmarkFn()).with_outputs(DEAD, main="samples")
        )
        roots = {name: self.bench.videos}
        # the probe fills in the media facts; the windows stay as published (they are what is scored against)
        probed, probe_dead = read.samples | "Probe" >> ProbeAndValidate(roots, fit_windows=False)
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
        video_roots = {name: self.bench.videos}
        reading = Reading() if self.bench.reading == "lenient" else None  # None: the benchmark's reference's
        for setting, tools in self.config.settings:
            model = CachedInference(
                self.config.stage(tools), video_roots, out_dir=self.out_dir, engine_factory=self.engine_factory
            )
            answers, _ = probed | f"Answer_{setting}" >> model
            scored = answers | f"Score_{setting}" >> beam.ParDo(_ScoreFn(name, setting, reading)).with_outputs(
                DEAD, main="results"
            )
            results.append(scored.results)
            dead.append(scored[DEAD])
        keyed = (
            tuple(results) | "Results" >> beam.Flatten() | "Key" >> beam.Map(lambda r: ((r.benchmark, r.setting), r))
        )
        return keyed, tuple(dead) | "DeadLetters" >> beam.Flatten()


# --- writing and the whole run ---------------------------------------------------------------------------------------


def _write_results(keyed: tuple[tuple[str, str], Iterable[SampleResult]], out_dir: str) -> str:
    (benchmark, setting), results = keyed
    return write_results(storage.join(out_dir, results_name(benchmark, setting)), results)


def _write_dead_letters(errors: list[SampleError], out_dir: str) -> str:
    rows = sorted((e.to_dict() for e in errors), key=lambda d: json.dumps(d, sort_keys=True))
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
    return storage.write_text(storage.join(out_dir, DEAD_LETTERS_FILE), text)


def _paths(config: EvalConfig) -> list[tuple[str, str]]:
    """(key, path) of every path the eval reads or writes: out, and per benchmark its annotations, video root and
    file-valued adapter options."""
    paths = [("out", config.out)]
    for bench in config.benchmarks:
        where = f"benchmarks.{bench.name}"
        annotations = bench.annotations if isinstance(bench.annotations, list) else [bench.annotations]
        paths += [(f"{where}.annotations", p) for p in annotations]
        if bench.videos is not None:
            paths.append((f"{where}.videos", bench.videos))
        paths += [(f"{where}.options.{k}", v) for k, v in sorted(bench.options.items()) if k in FILE_OPTIONS]
    return [(key, p) for key, p in paths if isinstance(p, str)]


def check_inputs(config: EvalConfig) -> None:
    """Fail before any pipeline work: a path whose file system is not available here (an unknown scheme, a missing
    pip extra) or an annotation path that does not exist (local or URL), as one `ConfigError` naming the key."""
    for key, path in _paths(config):
        try:
            storage.check(path)
        except storage.StorageUnavailable as exc:
            raise ConfigError(f"{key}: {exc}") from None
    for bench in config.benchmarks:
        paths = bench.annotations if isinstance(bench.annotations, list) else [bench.annotations]
        missing = [str(p) for p in paths if not storage.exists(p)]
        if missing:
            raise ConfigError(f"benchmarks.{bench.name}.annotations: not found: {', '.join(missing)}")


def evaluate(
    config: EvalConfig | str | Path,
    pipeline_args: list[str] | None = None,
    *,
    engine_factory: Callable[[EngineConfig], Engine] = build_engine,
) -> dict[str, Any]:
    """Run the evaluation of `config` (a config or its YAML path); returns the table (also in `<out>/table.json`).

    `pipeline_args` are the Beam options; they also reach this process's file systems (`storage.configure`), so an
    `out` or annotations URL is read and written with the same endpoint and keys here as on the workers.
    """
    storage.configure(pipeline_args)
    if not isinstance(config, EvalConfig):
        config = load_eval_config(config)
    check_inputs(config)
    out = config.out  # a local folder or a URL: a string, never a Path
    storage.makedirs(out)
    facts = config.facts()
    log.info(
        "eval of %s (%s) on %s, settings %s", facts["model"], facts["engine"], facts["benchmarks"], facts["settings"]
    )
    with beam.Pipeline(options=PipelineOptions(pipeline_args or [])) as p:
        keyed, dead = [], []
        for bench in config.benchmarks:
            results, errors = p | f"Eval_{bench.name}" >> EvaluateBenchmark(
                bench, config, out_dir=out, engine_factory=engine_factory
            )
            keyed.append(results)
            dead.append(errors)
        _ = (
            tuple(keyed)
            | "AllResults" >> beam.Flatten()
            | "ByBenchmarkAndSetting" >> beam.GroupByKey()
            | "WriteResults" >> beam.Map(_write_results, out)
        )
        _ = (
            tuple(dead)
            | "AllDeadLetters" >> beam.Flatten()
            | "DeadList" >> beam.combiners.ToList()
            | "WriteDeadLetters" >> beam.Map(_write_dead_letters, out)
        )
    for bench in config.benchmarks:  # a benchmark whose every record was rejected still gets its (empty) files
        for setting, _ in config.settings:
            path = storage.join(out, results_name(bench.name, setting))
            if not storage.exists(path):
                write_results(path, [])
    storage.write_text(storage.join(out, RUN_FILE), json.dumps(facts, indent=2, sort_keys=True) + "\n")
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
    sampling: Mapping[str, Any] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    cap: int | None = None,
    reading: str = "reference",
) -> EvalConfig:
    """An `EvalConfig` from command-line values: (name, annotations, videos) per benchmark; relative paths are taken
    against the working directory."""
    data = {
        "benchmarks": [
            {
                "name": name,
                "annotations": annotations,
                "videos": videos,
                "options": dict((options or {}).get(name, {})),
                "cap": cap,
                "reading": reading,
            }
            for name, annotations, videos in benchmarks
        ],
        "out": out,
        "engine": {"kind": engine, "settings": {"model": model, **dict(engine_settings or {})}},
        "tools": tools,
        "frames": {"max_frames": max_frames},
        "sampling": dict(sampling or {}),
    }
    return EvalConfig.read(data, base_dir=Path.cwd(), file="command line")


__all__ = [
    "BenchmarkInput",
    "EvalConfig",
    "EvaluateBenchmark",
    "config_from_args",
    "evaluate",
    "load_eval_config",
    "results_name",
]
