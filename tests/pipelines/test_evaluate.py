"""`mtvr eval` on the demo benchmark: the real Beam pipeline with a scripted engine (pipeline logic: settings,
resume, dead letters, the table), and once with the tiny checkpoint through the transformers engine and the CLI.

The scripted engine is built lazily (on the first batch) from an `EngineConfig(kind="scripted")` through the injected
factory, and logs its construction and every `generate` call (its request keys) to a file, so engine builds and model
calls are counted across threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from model.config_error import ConfigError
from model.engine_api import Completion, GenerationRequest
from model.settings import EngineConfig
from mtvr_data.benchmarks import read_benchmark
from mtvr_data.eval_metrics import FAILED, read_results
from mtvr_data.frames import FrameBudget
from mtvr_data.schema import Sample
from pipelines.evaluate import BenchmarkInput, EvalConfig, evaluate, results_name


class ScriptedEngine:
    """Answers each sample with the true span when tools are offered, and a wrong one without; logs calls."""

    name = "scripted"
    model = "scripted"

    def __init__(self, truth: dict[str, list[float]], log: str) -> None:
        self.truth, self.log = truth, log
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "built": True}) + "\n")

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "keys": [r.key for r in requests]}) + "\n")
        out = []
        for request in requests:
            start, end = self.truth[request.key.split("/")[0]] if request.tools else (0.0, 0.5)
            text = f"<think>Found it.</think><answer>{start:.2f} - {end:.2f} seconds</answer>"
            out.append([Completion(text, "stop", 50, 10, "</answer>")] * request.settings.n)
        return out

    async def aclose(self) -> None:
        pass


def scripted_factory(engine: EngineConfig) -> ScriptedEngine:
    assert engine.kind == "scripted"
    return ScriptedEngine(engine.settings["truth"], engine.settings["log"])


def scripted_engine(truth: dict[str, list[float]], log: Path) -> EngineConfig:
    """The scripted engine's config: an unchecked kind (`model_construct`), built by `scripted_factory`."""
    return EngineConfig.model_construct(
        kind="scripted", settings={"model": "scripted", "truth": truth, "log": str(log)}
    )


def _log(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def calls(log: Path) -> list[list[str]]:
    return [entry["keys"] for entry in _log(log) if "keys" in entry]


def builds(log: Path) -> int:
    """How many times the engine factory built the scripted engine."""
    return sum(1 for entry in _log(log) if entry.get("built"))


def charades(corpus: Path) -> BenchmarkInput:
    annotations = corpus / "annotations" / "charades_sta" / "charades_sta_train.txt"
    return BenchmarkInput(name="charades-sta", annotations=str(annotations), videos=str(corpus / "videos"))


@pytest.fixture(scope="module")
def scripted_run(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scripted eval of the demo Charades-STA benchmark in both settings, then a rerun of it."""
    bench = charades(demo_corpus)
    samples = [s for s in read_benchmark(bench.name, bench.annotations) if isinstance(s, Sample)]
    out = tmp_path_factory.mktemp("eval")
    log = out / "calls.log"
    truth = {s.id: list(s.span or [0.0, 1.0]) for s in samples}
    config = EvalConfig.read(
        {
            "benchmarks": [bench.model_dump()],
            "out": "eval",
            "engine": scripted_engine(truth, log),
            "tools": "both",
            "frames": {"max_frames": 4},
            "batching": {"max_batch_size": 4, "workers": 2},
        },
        base_dir=out,
    )
    assert config.out == str(out / "eval") and config.engine.name == "scripted:scripted"
    table = evaluate(config, ["--runner=DirectRunner"], engine_factory=scripted_factory)
    first_calls, first_builds = calls(log), builds(log)
    files = {p.name: p.read_bytes() for p in Path(config.out).glob("*.*")}
    table2 = evaluate(config, ["--runner=DirectRunner"], engine_factory=scripted_factory)
    return {
        "out": Path(config.out),
        "samples": samples,
        "table": table,
        "table2": table2,
        "first_calls": first_calls,
        "first_builds": first_builds,
        "calls_after_rerun": calls(log),
        "builds_after_rerun": builds(log),
        "files": files,
    }


def test_results_per_setting_score_the_scripted_answers(scripted_run: dict[str, Any]) -> None:
    out, samples = scripted_run["out"], scripted_run["samples"]
    on = read_results(out / results_name("charades-sta", "tool_on"))
    off = read_results(out / results_name("charades-sta", "tool_off"))
    assert [r.id for r in on] == sorted(s.id for s in samples) == [r.id for r in off]
    answered_on = [r for r in on if r.status != FAILED]
    # the engine answers the annotated span, and every row is scored against its published window: 1.0 each, the
    # one whose end overshoots the real video included (issue 24: it used to be clamped to IoU 6/7)
    assert answered_on and all(r.correct and r.iou == pytest.approx(1.0) for r in answered_on)
    assert all(r.iou == 0.0 and not r.correct for r in off)
    by_setting = {b["name"]: b["settings"] for b in scripted_run["table"]["benchmarks"]}["charades-sta"]
    n, failed = by_setting["tool_on"]["n"], by_setting["tool_on"]["n_failed"]
    assert n == len(samples) and failed == len(samples) - len(answered_on) > 0
    assert by_setting["tool_on"]["metrics"]["R@0.5"] == pytest.approx(100.0 * (n - failed) / n)
    assert by_setting["tool_off"]["metrics"]["mIoU"] == 0.0


def test_unreadable_videos_are_dead_letters_and_failed_rows(scripted_run: dict[str, Any]) -> None:
    out = scripted_run["out"]
    dead = [json.loads(line) for line in (out / "dead_letters.jsonl").read_text().splitlines()]
    probe = {d["reason"]: d for d in dead if d["stage"] == "probe"}
    assert {"video_empty", "video_missing"} <= set(probe)
    assert all(d["source"] == "charades-sta" and d["detail"] for d in probe.values())
    assert {d["reason"] for d in dead if d["stage"] == "read"} >= {"bad_line", "non_utf8"}
    failed = {r.id: r for r in read_results(out / results_name("charades-sta", "tool_on")) if r.status == FAILED}
    for reason in ("video_empty", "video_missing"):
        row = failed[probe[reason]["raw"]]
        assert row.finish_reason == reason and row.error and not row.correct and row.iou == 0.0


def test_a_rerun_makes_no_model_calls_and_writes_the_same_files(scripted_run: dict[str, Any]) -> None:
    first = scripted_run["first_calls"]
    assert first and scripted_run["calls_after_rerun"] == first  # zero new generate calls
    # the engine is built on the first batch: a fully cached rerun builds none
    assert scripted_run["first_builds"] >= 1 and scripted_run["builds_after_rerun"] == scripted_run["first_builds"]
    entries = list((scripted_run["out"] / "cache" / "eval").rglob("*.json"))
    assert entries and all(json.loads(p.read_text())["key"]["model"] == "scripted" for p in entries)
    out = scripted_run["out"]
    assert {p.name: p.read_bytes() for p in out.glob("*.*")} == scripted_run["files"]
    assert scripted_run["table2"] == scripted_run["table"]


def test_table_files_exist_and_parse_in_the_papers_layout(scripted_run: dict[str, Any]) -> None:
    import xml.etree.ElementTree as ET

    out = scripted_run["out"]
    table = json.loads((out / "table.json").read_text())
    (bench,) = table["benchmarks"]
    assert bench["display"] == "Charades-STA" and bench["primary"] == ["mIoU"]
    assert bench["paper"]["tool_on"]["mIoU"] == 59.9 and bench["paper"]["tool_off"]["mIoU"] == 57.1
    md = (out / "table.md").read_text().splitlines()
    header = next(i for i, line in enumerate(md) if line.startswith("| setting | Charades-STA"))
    labels = [line.split("|")[1].strip() for line in md[header + 2 : header + 6]]
    assert labels == ["tool off", "tool on", "VITAL-7B (paper), tool off", "VITAL-7B (paper), tool on"]
    assert md[header + 4].split("|")[2].strip() == "57.1"
    # each benchmark's headline and the reading mode that produced it
    assert "| Charades-STA | mean over questions | lenient |" in md
    assert bench["headline"] == "mean over questions" and bench["reading"] == "lenient"
    svg = ET.parse(out / "plot.svg").getroot()
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any("tool on" in t for t in titles) and any(t.startswith("VITAL-7B (paper) mIoU") for t in titles)


def test_eval_diff_on_the_command_line(scripted_run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    out = scripted_run["out"]
    off, on = out / results_name("charades-sta", "tool_off"), out / results_name("charades-sta", "tool_on")
    assert main(["eval-diff", str(off), str(on)]) == 1
    text = capsys.readouterr().out
    answered = [r for r in read_results(on) if r.status != FAILED]
    assert f"{len(answered)} rows differ: changed {len(answered)}" in text
    assert main(["eval-diff", str(on), str(on)]) == 0


def test_an_eval_reads_and_writes_on_s3_with_the_bytes_of_a_local_run(
    scripted_run: dict[str, Any],
    demo_corpus: Path,
    s3_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`out: s3://...` and annotations on S3 (the store's Beam options passed like any pipeline args): results, dead
    letters, run.json and the table land on the store byte for byte as the local run wrote them, and `mtvr eval-diff`
    reads them there."""
    from mtvr_data import storage
    from pipelines.cli import main
    from tests.adapters.conftest import upload_tree

    monkeypatch.chdir(tmp_path)  # were a URL taken for a relative local path, it would land here, not in the repo
    annotations = upload_tree(s3_server, demo_corpus / "annotations" / "charades_sta", "eval-input", "charades_sta")
    bench = charades(demo_corpus).model_copy(
        update={"annotations": storage.join(annotations, "charades_sta_train.txt")}
    )
    truth = {s.id: list(s.span or [0.0, 1.0]) for s in scripted_run["samples"]}
    out = s3_server.prefix("eval-output", "run")
    config = EvalConfig.read(
        {
            "benchmarks": [bench.model_dump()],
            "out": out,
            "engine": scripted_engine(truth, tmp_path / "calls.log"),
            "tools": "both",
            "frames": {"max_frames": 4},
            "batching": {"max_batch_size": 4, "workers": 2},
        },
        base_dir=tmp_path,
    )
    assert config.out == out and config.benchmarks[0].annotations.startswith("s3://")
    table = evaluate(config, ["--runner=DirectRunner", *s3_server.beam_args], engine_factory=scripted_factory)
    assert table == scripted_run["table"]
    local = scripted_run["files"]  # every file of the local run's folder, by name
    assert {"run.json", "dead_letters.jsonl", "table.json", "table.md", "plot.svg"} <= set(local)
    assert {name: storage.read_bytes(storage.join(out, name)) for name in local} == local
    assert not (tmp_path / "s3:").exists()  # nothing took the URL for a local folder (`Path` makes it "s3:/...")
    on, off = (storage.join(out, results_name("charades-sta", s)) for s in ("tool_on", "tool_off"))
    assert main(["eval-diff", out, str(scripted_run["out"])]) == 0  # two folders, one on S3: the same rows
    assert main(["eval-diff", off, on]) == 1
    assert "rows differ: changed" in capsys.readouterr().out


def test_config_validation_names_the_problem(tmp_path: Path) -> None:
    bench = {"name": "charades-sta", "annotations": "x.txt"}
    engine = {"kind": "transformers", "settings": {"model": "m"}}

    def read(**data: Any) -> EvalConfig:
        return EvalConfig.read({"benchmarks": [bench], "out": "eval", "engine": engine, **data}, base_dir=tmp_path)

    with pytest.raises(ConfigError, match=r"^tools: Input should be 'off', 'on' or 'both'"):
        read(tools="sometimes")
    with pytest.raises(ConfigError, match=r"^k: Input should be 1"):
        read(k=8)
    for removed in ("generation", "max_frames"):  # the old flat keys: unknown now, with the allowed keys named
        with pytest.raises(ConfigError, match=rf"^{removed}: unknown key; allowed: .*frames.*sampling"):
            read(**{removed: {"max_new_tokens": 8} if removed == "generation" else 16})
    with pytest.raises(ConfigError, match=r"^sampling.temperature: Input should be greater than or equal to 0"):
        read(sampling={"temperature": -1.0})
    with pytest.raises(ConfigError, match="listed twice"):
        read(benchmarks=[bench, bench])
    with pytest.raises(ConfigError, match="unknown benchmark 'charades'"):  # when the config is read, not run
        read(benchmarks=[{**bench, "name": "charades"}])
    with pytest.raises(ConfigError, match=r"options: unknown \['colour'\] for charades-sta"):
        read(benchmarks=[{**bench, "options": {"colour": "red"}}])
    with pytest.raises(ConfigError, match="engine.kind"):
        read(engine={"kind": "scripted", "settings": {"model": "m"}})
    with pytest.raises(ConfigError, match=r"^engine[.:] ?settings\.model: '\./nowhere' is neither a checkpoint"):
        read(engine={"kind": "transformers", "settings": {"model": "./nowhere"}})
    with pytest.raises(ConfigError, match=r"annotations: not found: .*x\.txt"):
        evaluate(read())
    config = read(frames={"max_frames": 16})
    assert config.out == str(tmp_path / "eval") and config.benchmarks[0].annotations == str(tmp_path / "x.txt")
    off, on = config.stage(False), config.stage(True)
    assert off.call.k == 1 and off.call.sampling.temperature == 0.0 and off.call.sampling.repetition_penalty == 1.0
    assert off.call.frames == FrameBudget(max_frames=16)  # the rest of the budget as default
    assert not off.tools and on.tools
    assert off.config_hash != on.config_hash  # tools is part of the resume key
    assert config.facts()["config_hashes"] == {"tool_off": off.config_hash, "tool_on": on.config_hash}


def test_a_bad_eval_config_is_one_error_line_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    path = tmp_path / "eval.yaml"
    engine = {"kind": "transformers", "settings": {"model": "m"}}
    bench = {"name": "charades-sta", "annotations": "x.txt"}
    path.write_text(yaml.safe_dump({"benchmarks": [bench], "out": "o", "engine": engine, "tools": "sometimes"}))
    assert main(["eval", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"mtvr: error: {path}: tools: ")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_tiny_checkpoint_through_the_transformers_engine_and_the_cli(
    demo_corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_checkpoints: Callable[[str], Path],
    family: str,
) -> None:
    """The real path: `mtvr eval CONFIG` with a random tiny Qwen2.5-VL, and Qwen3-VL, on CPU (answers are noise)."""
    from pipelines.cli import main

    ckpt = tiny_checkpoints(family)
    config = {
        "out": str(tmp_path / "eval"),
        "benchmarks": [
            {
                "name": "charades-sta",
                "annotations": str(demo_corpus / "annotations" / "charades_sta" / "charades_sta_train.txt"),
                "videos": str(demo_corpus / "videos"),
                "cap": 2,
            }
        ],
        "engine": {"kind": "transformers", "settings": {"model": str(ckpt), "device": "cpu"}},
        "tools": "both",
        "frames": {"max_frames": 4},
        "sampling": {"max_new_tokens": 8},
        "batching": {"max_engine_calls": 1},
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", str(path), "--", "--runner=DirectRunner"]) == 0
    assert "| tool on |" in capsys.readouterr().out
    table = json.loads((tmp_path / "eval" / "table.json").read_text())
    settings = table["benchmarks"][0]["settings"]
    # the model is named portably: the checkpoint's content hash, not its path
    engine = EngineConfig(kind="transformers", settings={"model": str(ckpt), "device": "cpu"})
    assert engine.family.name == family  # the prompts' frames and time channel are the checkpoint's family's
    identity = engine.identity
    assert identity.startswith("sha256:") and str(ckpt) not in identity
    assert table["run"]["engine"] == "transformers" and table["run"]["model"] == identity
    assert table["run"]["max_frames"] == 4 and table["run"]["max_new_tokens"] == 8
    for setting in ("tool_off", "tool_on"):
        assert settings[setting]["n"] == 2 and settings[setting]["n_failed"] == 0
        rows = read_results(tmp_path / "eval" / results_name("charades-sta", setting))
        assert all(r.status in ("ok", "no_answer") and r.finish_reason for r in rows)
