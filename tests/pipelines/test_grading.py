"""Grading by pass rate: the handler, the RL-row rule, the resume cache, and runs on Beam's DirectRunner.

Model work is done by `ScriptedEngine`, built on the first batch from an `EngineConfig(kind="scripted")` (made with
`model_construct`, since "scripted" is no real kind) through the handler's injected engine factory, so it pickles to
Beam workers as a config. Every `generate` call appends one line
(the request keys) to a log file, so calls are counted across threads and processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from model.engine_api import Completion, GenerationRequest
from model.settings import EngineConfig, fingerprint
from model.trajectory import ANSWER, ENGINE_ERROR, MEDIA_ERROR, NO_ANSWER, TOKEN_BUDGET, Trajectory
from mtvr_data.adapters import make_adapter
from mtvr_data.frames import FrameBudget
from mtvr_data.parquet_io import record_to_row
from mtvr_data.schema import Sample, SampleError
from pipelines.grading import Grade, GradeStage, GradeToRlRow, bucket, graded
from pipelines.model_stage import ModelResult, StageHandler, build_engine, engine_tag
from pipelines.result_cache import CacheKey, ResultCache
from pipelines.stage_settings import GradeSettings

K = 4

# --- a scripted engine -----------------------------------------------------------------------------------------------


class ScriptedEngine:
    """Engine protocol with pre-written answers: `answers[sample id][rollout index]`; logs each generate call."""

    name = "scripted"

    def __init__(self, answers: dict[str, list[str]], log: str, model: str = "scripted-model") -> None:
        self.answers = answers
        self.log = log
        self.model = model

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        with open(self.log, "a", encoding="utf-8") as fh:  # one short O_APPEND write per call: safe across processes
            fh.write(json.dumps({"pid": os.getpid(), "keys": [r.key for r in requests]}) + "\n")
        out = []
        for request in requests:
            parts = request.key.split("/")
            texts = self.answers[parts[0]]
            first = 0 if len(parts) == 2 else int(parts[1])
            out.append([Completion(texts[first + i], "stop", 50, 10, "</answer>") for i in range(request.settings.n)])
        return out

    async def aclose(self) -> None:
        pass


def scripted_factory(engine: EngineConfig) -> ScriptedEngine:
    assert engine.kind == "scripted"
    return ScriptedEngine(**engine.settings)


def scripted(**settings: Any) -> EngineConfig:
    return EngineConfig.model_construct(kind="scripted", settings=settings)


def call_log(log: Path) -> list[dict[str, Any]]:
    """Every generate call so far: the process that made it and its request keys."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def calls(log: Path) -> list[list[str]]:
    """The request keys of every generate call so far."""
    return [call["keys"] for call in call_log(log)]


def answer(span: list[float]) -> str:
    return f"<think>The moment is there.</think><answer>{span[0]:.2f} - {span[1]:.2f} seconds</answer>"


WRONG = "<think>Early on.</think><answer>0.00 - 0.50 seconds</answer>"

# --- samples ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(demo_corpus: Path) -> list[Sample]:
    """The demo's Charades-STA samples: 7 on readable videos and 2 whose video is broken or missing."""
    adapter = make_adapter("charades_sta", demo_corpus / "annotations" / "charades_sta" / "charades_sta_train.txt")
    return [s for s in adapter.read() if isinstance(s, Sample)]


@pytest.fixture(scope="module")
def script(samples: list[Sample]) -> dict[str, list[str]]:
    """Sample i (of the readable ones) passes min(i, K) of K rollouts: 0/K, 1/K, 2/K, 3/K, K/K, K/K, K/K."""
    out = {}
    for i, s in enumerate(samples):
        assert s.span is not None
        passes = min(i, K)
        out[s.id] = [answer(s.span)] * passes + [WRONG] * (K - passes)
    return out


def settings_for(log: Path, script: dict[str, list[str]], max_batch_size: int = 3, **overrides: Any) -> GradeSettings:
    engine = scripted(answers=script, log=str(log))
    batching = {"max_batch_size": max_batch_size, "workers": 2}
    base: dict[str, Any] = {"k": K, "frames": FrameBudget(max_frames=4), "batching": batching}
    return GradeSettings(engine=engine, **{**base, **overrides})


def cache_key(settings: GradeSettings, sample_id: str) -> CacheKey:
    return GradeStage(call=settings, tools=settings.rollout.tools).key(sample_id)


def run_grade(
    samples: list[Sample], settings: GradeSettings, video_root: Path, out: Path, *args: str, factory=scripted_factory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run `Grade` on the DirectRunner; the rows and dead letters as sorted JSON-able dicts (read back from files)."""
    results = out / f"results-{len(list(out.glob('results-*'))) if out.exists() else 0}"
    options = PipelineOptions(["--runner=DirectRunner", *args])
    with beam.Pipeline(options=options) as p:
        rows, dead = (
            p
            | beam.Create(samples)
            | Grade(settings, {"charades_sta": str(video_root)}, out_dir=str(out), engine_factory=factory)
        )
        for name, pcoll in (("rows", rows), ("dead", dead)):
            _ = (
                pcoll
                | f"Json{name}" >> beam.Map(lambda r: json.dumps(record_to_row(r), sort_keys=True))
                | f"Write{name}" >> beam.io.WriteToText(str(results / name))
            )

    def read(name: str) -> list[dict[str, Any]]:
        lines = [line for f in sorted(results.glob(f"{name}*")) for line in f.read_text().splitlines()]
        return sorted((json.loads(line) for line in lines), key=lambda r: json.dumps(r, sort_keys=True))

    return read("rows"), read("dead")


# --- the RL-row rule on hand-made groups ---------------------------------------------------------------------------


def result(passed: list[bool], finish: list[str] | None = None, rewards: list[float | None] | None = None):
    finish = finish or [ANSWER] * len(passed)
    rewards = rewards or [2.0 if p else 1.0 for p in passed]
    sample = Sample(id="s1", source="src", task="mcq", modality="video", video="v.mp4", question="q?")
    trajectories = []
    for i, (p, f, r) in enumerate(zip(passed, finish, rewards, strict=True)):
        t = Trajectory(sample_id="s1", index=i, tools=True, finish_reason=f)
        t.reward, t.passed = (SimpleNamespace(total=r) if r is not None else None), p
        trajectories.append(t)
    return ModelResult(sample, "scripted:m", trajectories, tools=True)


def test_pass_rate_difficulty_and_bucket_leave_machinery_failures_out() -> None:
    settings = GradeSettings(engine=scripted(), k=4)
    r = result(
        [True, False, False, True],
        [ANSWER, NO_ANSWER, ENGINE_ERROR, TOKEN_BUDGET],
        [2.5, 1.0, None, 0.5],
    )
    assert graded(r) == [0, 1, 3]
    row = GradeToRlRow(settings).convert(r)
    assert not isinstance(row, SampleError)
    assert row.num_rollouts == 3 and row.pass_rate == pytest.approx(2 / 3)
    assert row.difficulty == pytest.approx(1 / 3) and row.mean_reward == pytest.approx(4.0 / 3)
    assert row.bucket == "easy" and row.policy == "scripted:m" and row.tools is True
    for passes, expected in ((1, "hard"), (2, "medium"), (3, "easy")):
        row = GradeToRlRow(settings).convert(result([True] * passes + [False] * (4 - passes)))
        assert row.bucket == expected and row.difficulty == pytest.approx(1 - passes / 4)


def test_bucket_thirds_are_exact_at_the_boundaries() -> None:
    assert [bucket(p, 3) for p in range(4)] == ["hard", "hard", "easy", "easy"]
    assert [bucket(p, 8) for p in range(1, 8)] == ["hard", "hard", "medium", "medium", "medium", "easy", "easy"]


def test_zero_and_all_passes_are_dead_letters_unless_keep_all() -> None:
    medium = GradeToRlRow(GradeSettings(engine=scripted(), k=4))
    failed, passed = medium.convert(result([False] * 4)), medium.convert(result([True] * 4))
    assert isinstance(failed, SampleError) and (failed.stage, failed.reason) == ("grade", "all_failed")
    assert isinstance(passed, SampleError) and (passed.stage, passed.reason) == ("grade", "all_passed")
    everything = GradeToRlRow(GradeSettings(engine=scripted(), k=4, keep="all"))
    assert everything.convert(result([False] * 4)).difficulty == 1.0
    assert everything.convert(result([True] * 4)).bucket == "easy"


def test_too_few_graded_rollouts_and_errors_are_dead_letters() -> None:
    rule = GradeToRlRow(GradeSettings(engine=scripted(), k=4))  # needs ceil(0.5 * 4) = 2 graded
    few = rule.convert(result([True, False, False, False], [ANSWER, MEDIA_ERROR, ENGINE_ERROR, ENGINE_ERROR]))
    assert isinstance(few, SampleError) and few.reason == "grading_failed" and "1/4 rollouts graded" in few.detail
    broken = ModelResult(result([]).sample, "scripted:m", error="RuntimeError: boom")
    out = rule.convert(broken)
    assert isinstance(out, SampleError) and (out.reason, out.detail) == ("grading_error", "RuntimeError: boom")


def test_settings_validate_and_the_fingerprint_covers_only_what_decides_the_text() -> None:
    base = GradeSettings(engine=scripted())
    assert base.k == 8 and base.sampling.temperature == 1.0 and base.rollout.tools and base.keep == "medium"

    def key(settings: GradeSettings) -> str:
        return GradeStage(call=settings, tools=settings.rollout.tools).config_hash

    same = GradeSettings(
        engine=scripted(), batching={"max_batch_size": 32, "workers": 2}, keep="all", pass_rule={"tg_min_iou": 0.3}
    )
    assert key(same) == key(base)  # batching, the keep rule and the pass rule are applied on read
    for change in (
        {"k": 4},
        {"sampling": {"temperature": 0.7}},
        {"rollout": {"tools": False}},
        {"sampling": {"seed": 1}},
        {"frames": {"max_frames": 8}},
        {"clip": {"max_frames": 8}},
        {"rollout": {"max_total_tokens": 4096}},
    ):
        assert key(GradeSettings.read({**change, "engine": base.engine})) != key(base), change
    with pytest.raises(ValueError, match="keep"):
        GradeSettings.read({"keep": "hard", "engine": base.engine})
    with pytest.raises(ValueError, match="frames.max_frame: unknown key"):
        GradeSettings.read({"frames": {"max_frame": 8}, "engine": base.engine})
    with pytest.raises(ValueError, match="grade.K: unknown key"):
        GradeSettings.read({"K": 8, "engine": base.engine})
    parsed = GradeSettings.read({"engine": {"kind": "vllm", "settings": {"model": "Qwen/x"}}, "k": 4})
    assert parsed.engine.name == "vllm:Qwen/x@main" and parsed.k == 4


def test_handler_declares_batching_sharing_and_its_name(tmp_path: Path) -> None:
    def handler(engine: EngineConfig, **batching: int) -> StageHandler:
        return StageHandler(GradeStage(call=GradeSettings(engine=engine, batching=batching)))

    small = handler(scripted(), min_batch_size=2, max_batch_size=5)
    assert small.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 5}
    assert not small.share_model_across_processes()
    vllm = handler(EngineConfig(kind="vllm", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct"}))
    assert vllm.share_model_across_processes() and vllm.model_name == "vllm:Qwen/Qwen2.5-VL-7B-Instruct@main"
    assert handler(
        EngineConfig(kind="openai", settings={"model": "m", "base_url": "u"})
    ).share_model_across_processes()


def test_a_server_kind_shares_only_a_client_recipe_across_processes() -> None:
    """Beam proxies a shared model's calls; the host must hand out a picklable recipe, each thread its own client."""
    import threading

    from apache_beam.utils.multi_process_shared import MultiProcessShared

    from model.engines.openai_engine import OpenAIEngine
    from pipelines.model_stage import EngineHost

    spec = EngineConfig(
        kind="openai", settings={"base_url": "http://127.0.0.1:9/v1", "model": "m", "max_concurrency": 4}
    )
    handler = StageHandler(GradeStage(call=GradeSettings(engine=spec)))
    host = MultiProcessShared(lambda: EngineHost(spec), tag=f"test-host-{os.getpid()}", always_proxy=True).acquire()
    engine = handler._engine(host)
    assert isinstance(engine, OpenAIEngine) and (engine.base_url, engine.model) == ("http://127.0.0.1:9/v1", "m")
    assert engine.max_concurrency == 4 and handler._engine(host) is engine
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(handler._engine(host)))
    thread.start()
    thread.join()
    assert other[0] is not engine  # an OpenAIEngine binds to one event loop at a time: one client per thread


# --- the cache -------------------------------------------------------------------------------------------------------


def test_cache_round_trip_atomic_files_and_untrusted_entries(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    key = CacheKey("s1", "vllm", "m", fingerprint({"k": 8}))
    assert cache.get(key) is None
    path = Path(cache.put(key, {"rewards": [1.5, None]}))
    assert path.parent.parent == tmp_path / "cache" / "grade" and path.parent.name == key.digest[:2]
    assert cache.get(key) == {"rewards": [1.5, None]} and len(cache) == 1
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]
    other = CacheKey("s1", "vllm", "m2", key.config_hash)
    Path(cache.path(other)).parent.mkdir(parents=True, exist_ok=True)
    Path(cache.path(other)).write_text(path.read_text())  # a file whose stored key is not its own
    assert cache.get(other) is None
    path.write_text('{"version": 1, "key": ')  # torn write
    assert cache.get(key) is None


def test_cache_on_an_object_store_is_write_once_and_distrusts_bad_objects(s3_server) -> None:
    from mtvr_data import storage

    cache = ResultCache(s3_server.prefix("cache-test"), "grade")
    key = CacheKey("s1", "vllm", "m", fingerprint({"k": 8}))
    assert cache.get(key) is None
    path = cache.put(key, {"text": ["a"]})
    assert path == f"{s3_server.prefix('cache-test')}/cache/grade/{key.digest[:2]}/{key.digest}.json"
    assert cache.get(key) == {"text": ["a"]} and len(cache) == 1 and list(cache.files()) == [path]
    # No temporary objects: one object per key, written in one request.
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="cache-test/")["Contents"]
    assert [o["Key"] for o in listed] == [path.split("/", 3)[3]]
    other = CacheKey("s1", "vllm", "m2", key.config_hash)
    storage.write_text(cache.path(other), storage.read_text(path))  # an object whose stored key is not its own
    assert cache.get(other) is None
    storage.write_text(path, '{"version": 2, "key": ')  # an unreadable object is a miss, never an error
    assert cache.get(key) is None


# --- on the DirectRunner ---------------------------------------------------------------------------------------------


def by_reason(dead: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in dead:
        assert d["stage"] == "grade"
        out.setdefault(d["reason"], []).append(d["raw"])
    return out


def test_grade_writes_rows_and_a_rerun_makes_no_engine_calls(tmp_path, demo_corpus, samples, script) -> None:
    log = tmp_path / "calls.log"
    settings = settings_for(log, script)
    out, videos = tmp_path / "out", demo_corpus / "videos"
    readable, broken = samples[:7], samples[7:]
    rows, dead = run_grade(samples, settings, videos, out)

    assert sorted(r["id"] for r in rows) == sorted(s.id for s in readable[1:4])
    assert {r["id"]: r["pass_rate"] for r in rows} == {s.id: i / K for i, s in enumerate(readable[1:4], 1)}
    for r in rows:
        assert r["num_rollouts"] == K and r["difficulty"] == 1 - r["pass_rate"] and r["policy"] == "scripted:unknown"
        assert r["bucket"] == bucket(round(r["pass_rate"] * K), K) and r["tools"] is True and r["mean_reward"] > 0
    reasons = by_reason(dead)
    assert reasons["all_failed"] == [readable[0].id]
    assert sorted(reasons["all_passed"]) == sorted(s.id for s in readable[4:])
    assert sorted(reasons["grading_failed"]) == sorted(s.id for s in broken)  # media errors: no engine call
    first_calls = calls(log)
    assert {keys[0].split("/")[0] for keys in first_calls} == {s.id for s in readable}
    assert len(ResultCache(out)) == len(readable)  # complete results only; grading_failed is retried

    rows2, dead2 = run_grade(samples, settings, videos, out)
    assert calls(log) == first_calls  # zero new engine calls
    assert (rows2, dead2) == (rows, dead)

    # A partial first run: two entries lost (as if killed before writing them) are recomputed, and only they.
    cache = ResultCache(out)
    lost = [readable[2], readable[5]]
    for s in lost:
        Path(cache.path(cache_key(settings, s.id))).unlink()
    rows3, dead3 = run_grade(samples, settings, videos, out)
    new = calls(log)[len(first_calls) :]
    assert new and {key.split("/")[0] for keys in new for key in keys} == {s.id for s in lost}
    assert (rows3, dead3) == (rows, dead)


def test_grade_in_two_worker_processes(tmp_path, demo_corpus, samples, script) -> None:
    """Beam's multi-processing mode pickles every transform, the handler and its factory to fresh processes."""
    log = tmp_path / "calls.log"
    settings = settings_for(log, script, max_batch_size=2)
    in_process = run_grade(samples, settings, demo_corpus / "videos", tmp_path / "a")
    n = len(calls(log))
    args = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert run_grade(samples, settings, demo_corpus / "videos", tmp_path / "b", *args) == in_process
    assert len(calls(log)) == 2 * n
    assert os.getpid() not in {call["pid"] for call in call_log(log)[n:]}  # the engine ran in the workers


class PoisonedHandler(StageHandler):
    """Raises out of the rollout whenever sample `poison` is in the batch (a bug the loop did not contain)."""

    poison = ""

    async def _run(self, samples, engine):
        if any(s.id == self.poison for s in samples):
            raise RuntimeError("loop bug")
        return await super()._run(samples, engine)


def test_a_batch_that_raises_is_retried_per_sample_and_only_the_culprit_fails(
    tmp_path, demo_corpus, samples, script
) -> None:
    settings = settings_for(tmp_path / "calls.log", script)
    stage = GradeStage(call=settings, tools=True)
    handler = PoisonedHandler(stage, {"charades_sta": str(demo_corpus / "videos")}, engine_factory=scripted_factory)
    handler.poison = samples[2].id
    results = list(handler.run_inference(samples[1:4], handler.load_model()))
    assert [r.sample.id for r in results] == [s.id for s in samples[1:4]]
    assert results[1].error == "RuntimeError: loop bug" and results[1].finish_reasons == []
    passes = [sum(bool(t.passed) for t in r.trajectories) for r in (results[0], results[2])]
    assert passes == [1, 3] and results[0].error is None


def test_streaming_retries_a_sample_whose_run_raises_and_only_the_culprit_fails(
    tmp_path, demo_corpus, samples, script
) -> None:
    settings = settings_for(tmp_path / "calls.log", script)
    stage = GradeStage(call=settings, tools=True)
    handler = PoisonedHandler(stage, {"charades_sta": str(demo_corpus / "videos")}, engine_factory=scripted_factory)
    handler.poison = samples[2].id
    model = handler.load_model()
    futures = [handler.start_one(s, model) for s in samples[1:4]]
    results = [handler.finish_one(f.result(timeout=60)) for f in futures]
    assert [r.sample.id for r in results] == [s.id for s in samples[1:4]]
    assert results[1].error == "RuntimeError: loop bug" and results[1].finish_reasons == []
    passes = [sum(bool(t.passed) for t in r.trajectories) for r in (results[0], results[2])]
    assert passes == [1, 3] and results[0].error is None

    class FlakyOnce(StageHandler):  # raises on a sample's first run only: the retry recovers it
        seen: set[str] = set()

        async def _run(self, samples, engine):
            if samples[0].id not in self.seen:
                self.seen.add(samples[0].id)
                raise RuntimeError("transient")
            return await super()._run(samples, engine)

    flaky = FlakyOnce(stage, {"charades_sta": str(demo_corpus / "videos")}, engine_factory=scripted_factory)
    (again,) = [flaky.start_one(samples[1], flaky.load_model()).result(timeout=60)]
    assert again.error is None and len(again.trajectories) == K


@pytest.mark.parametrize("streaming", [True, False])
def test_beams_batch_dead_letter_queue_is_the_outer_net(tmp_path, demo_corpus, samples, script, streaming) -> None:
    """An error outside the per-sample net (here: the cache cannot be written) reaches the dead letters, streamed
    (`StreamingInference`, the default) or not (RunInference's batch dead letters)."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    batching = {"max_batch_size": 3, "workers": 2, "streaming": streaming}
    settings = settings_for(tmp_path / "calls.log", script, batching=batching)
    out = tmp_path / "results"
    options = PipelineOptions(["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p:
        rows, dead = (
            p
            | beam.Create(samples[:3])
            | Grade(
                settings,
                {"charades_sta": str(demo_corpus / "videos")},
                out_dir=str(blocker),
                engine_factory=scripted_factory,
            )
        )
        _ = rows | "Rows" >> beam.Map(lambda r: r.sample.id) | "WriteRows" >> beam.io.WriteToText(str(out / "rows"))
        _ = dead | "Dead" >> beam.Map(lambda d: json.dumps(d.to_dict())) | beam.io.WriteToText(str(out / "dead"))
    assert not [line for f in out.glob("rows*") for line in f.read_text().splitlines()]
    dead_letters = [json.loads(line) for f in out.glob("dead*") for line in f.read_text().splitlines()]
    assert sorted(d["raw"] for d in dead_letters) == sorted(s.id for s in samples[:3])
    assert {(d["stage"], d["reason"]) for d in dead_letters} == {("grade", "grading_error")}
    assert all("batch failed: " in d["detail"] and "Error" in d["detail"] for d in dead_letters)


def test_real_tiny_checkpoint_through_the_transformers_engine(tmp_path, demo_corpus, samples) -> None:
    """The real path: a random tiny Qwen2.5-VL on CPU inside RunInference (its answers are noise, so keep all)."""
    from model.tiny_checkpoint import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    engine = {"kind": "transformers", "settings": {"model": str(ckpt), "device": "cpu", "batch_size": 4}}
    settings = GradeSettings.read(
        {
            "engine": engine,
            "k": 2,
            "sampling": {"max_new_tokens": 8, "seed": 0},
            "frames": {"max_frames": 4},
            "keep": "all",
            "batching": {"max_batch_size": 2},
        }
    )
    picked = samples[:2]
    rows, dead = run_grade(picked, settings, demo_corpus / "videos", tmp_path / "out", factory=build_engine)
    assert dead == [] and sorted(r["id"] for r in rows) == sorted(s.id for s in picked)
    for r in rows:
        assert r["num_rollouts"] == 2 and r["policy"] == f"transformers:{settings.engine.identity}"
        assert r["policy"].startswith("transformers:sha256:") and 0.0 <= r["pass_rate"] <= 1.0
    assert len(ResultCache(tmp_path / "out")) == 2


def test_one_model_tag_per_engine_so_settings_and_stages_share_a_server():
    """Beam shares a server-kind engine (one `vllm serve` per worker) by RunInference's tag: tools off and on, and
    an evaluation of the same engine, must reach the same server, and another model must not."""
    from pipelines.evaluate import EvalConfig

    spec = EngineConfig(kind="vllm", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct", "max_model_len": 32768})
    settings = GradeSettings(engine=spec)
    off, on = GradeStage(call=settings, tools=False), GradeStage(call=settings.model_copy(update={"k": 4}), tools=True)
    assert off.config_hash != on.config_hash  # different results ...
    assert engine_tag(off.call.engine) == engine_tag(on.call.engine)  # ... from one server
    evaluation = EvalConfig.read(
        {"benchmarks": [{"name": "charades-sta", "annotations": "a.txt"}], "out": "out", "engine": spec.model_dump()}
    )
    assert {engine_tag(evaluation.stage(t).call.engine) for t in (False, True)} == {engine_tag(spec)}
    other = EngineConfig(kind="vllm", settings={"model": "Qwen/Qwen2.5-VL-3B-Instruct", "max_model_len": 32768})
    assert engine_tag(other) != engine_tag(spec)
    assert "/" not in engine_tag(spec)
