"""The demo end to end with annotations, videos and `out` in a bucket: a real S3 server (moto) on loopback.

What a Dataflow user gets: `build-rl`, `build-cot` and `mtvr eval` read and write only through Beam's file systems
(`mtvr_data.storage`), so the bucket build is byte-identical to the local one, a build killed while grading
resumes from the results it had already written to the bucket, and `load_built` reads the shards from the bucket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtvr_data import storage

CAP = 3  # samples per source: every mix cell, tool and text parts, in a couple of minutes on 2 cores


def upload_tree(local: Path, url: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.write_bytes(storage.join(url, path.relative_to(local).as_posix()), path.read_bytes())


def bucket_files(url: str) -> dict[str, bytes]:
    return {storage.relative(p, url): storage.read_bytes(p) for p in storage.list_files(url)}


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def point_at(config: Path, corpus: Path, corpus_url: str, out: str, target: Path) -> Path:
    """A copy of a demo build config whose annotations and videos are under `corpus_url` and whose out is `out`."""
    data = yaml.safe_load(config.read_text())
    data["out"] = out
    for entry in data["sources"]:
        entry["cap"] = CAP
        for key in ("annotations", "videos"):
            if corpus_url:
                entry[key] = storage.join(corpus_url, Path(entry[key]).relative_to(corpus).as_posix())
    data["grade"]["batching"] = {"max_batch_size": 1, "max_engine_calls": 1}  # a result lands per sample
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def compared(files: dict[str, bytes]) -> dict[str, bytes]:
    """What must be byte-identical between a bucket and a local build: shards, card, stats, records, manifest."""
    return {k: v for k, v in files.items() if not k.startswith(("cache/", ".staging/"))}


def without_resume_counts(value: Any) -> Any:
    """A run record without its `cached` / `computed` counts (what a resumed run changes, and only that)."""
    if isinstance(value, dict):
        return {k: without_resume_counts(v) for k, v in value.items() if k not in ("cached", "computed")}
    if isinstance(value, list):
        return [without_resume_counts(v) for v in value]
    return value


def grade_row(table: dict[str, Any]) -> dict[str, Any]:
    return next(row for row in table["stages"] if row["stage"] == "grade")


@pytest.fixture(scope="module")
def builds(demo_corpus: Path, s3_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from model.tiny_checkpoint import build_tiny_checkpoint
    from pipelines.build_cot import build_cot
    from pipelines.build_rl import build_rl
    from pipelines.demo import demo_build_config

    storage.configure(s3_server.beam_args)  # a module fixture runs before the per-test option reset (conftest)
    work = tmp_path_factory.mktemp("object_store")
    manifest = json.loads((demo_corpus / "manifest.json").read_text())
    tiny = build_tiny_checkpoint(work / "tiny")
    corpus_url = s3_server.prefix("corpus")
    upload_tree(demo_corpus, corpus_url)
    out_url = s3_server.prefix("run1")
    local_out = work / "local"
    configs: dict[str, dict[str, Path]] = {}
    for kind in ("rl", "cot"):
        base = demo_build_config(work, manifest, tiny, corpus=demo_corpus, kind=kind)
        configs[kind] = {
            "local": point_at(base, demo_corpus, "", str(local_out), work / f"local_{kind}.yaml"),
            "s3": point_at(base, demo_corpus, corpus_url, out_url, work / f"s3_{kind}.yaml"),
        }
    args = ["--runner=DirectRunner", *s3_server.beam_args]

    # A bucket build killed while grading: results already written to the bucket's cache must not be redone.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "build-rl", str(configs["rl"]["s3"]), "--", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    cache = storage.join(out_url, "cache", "grade")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if storage.glob(storage.join(cache, "*", "*.json")):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = len(storage.glob(storage.join(cache, "*", "*.json")))
    rl_resumed = build_rl(configs["rl"]["s3"], args)
    cot = build_cot(configs["cot"]["s3"], args)
    # The same options (a pipeline run resets the process's file systems to its own options; local paths ignore them).
    rl_local = build_rl(configs["rl"]["local"], args)
    cot_local = build_cot(configs["cot"]["local"], args)
    return {
        "killed_with": finished,
        "killed_rc": proc.returncode,
        "rl": rl_resumed,
        "cot": cot,
        "rl_local": rl_local,
        "cot_local": cot_local,
        "out_url": out_url,
        "local_out": local_out,
        "work": work,
        "corpus_url": corpus_url,
        "tiny": tiny,
    }


def test_bucket_build_is_byte_identical_to_the_local_build(builds: dict[str, Any]) -> None:
    remote = compared(bucket_files(builds["out_url"]))
    local = compared(local_files(builds["local_out"]))
    assert any(k.startswith("rl/") for k in remote) and any(k.startswith("cot/") for k in remote)
    assert "manifest.json" in remote and "README.md" in remote and "accounting.json" in remote
    assert sorted(remote) == sorted(local)
    # build-rl's run records count how many grades came from the cache: the bucket build resumed a killed run, the
    # local one did not. Everything else, shards and card first, is byte-identical.
    resumed = {"accounting.json", "stats.json", "facts_rl.json", "manifest.json"}
    different = [k for k in remote if remote[k] != local[k] and k not in resumed]
    assert not different, f"bucket and local builds differ in {different}"
    for name in ("accounting.json", "stats.json", "facts_rl.json"):
        assert without_resume_counts(json.loads(remote[name])) == without_resume_counts(json.loads(local[name]))
    shards = {k: v for k, v in json.loads(remote["manifest.json"])["files"].items() if k != "stats.json"}
    assert shards == {k: v for k, v in json.loads(local["manifest.json"])["files"].items() if k != "stats.json"}
    assert without_resume_counts(builds["rl"]) == without_resume_counts(builds["rl_local"])
    assert builds["cot"] == builds["cot_local"]
    assert not storage.list_files(storage.join(builds["out_url"], ".staging"))  # the commit left no staging


def test_a_build_killed_while_grading_redoes_no_finished_model_call(builds: dict[str, Any]) -> None:
    graded = grade_row(builds["rl"])
    assert builds["killed_rc"] == -signal.SIGKILL, "the first build finished before it could be killed"
    assert 0 < builds["killed_with"] < graded["in"], builds["killed_with"]
    # Every result the killed run had written was read back, not recomputed; only the rest were computed.
    assert graded["cached"] >= builds["killed_with"]
    assert graded["cached"] + graded["computed"] == graded["in"]
    # build-cot grades the same samples with the same grade block: all of its grading comes from the bucket.
    cot_graded = grade_row(builds["cot"])
    assert cot_graded["computed"] == 0 and cot_graded["cached"] == cot_graded["in"]


def test_load_built_reads_the_shards_from_the_bucket(
    builds: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtvr_data.dataset_loading import load_built

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    for config in ("rl", "cot"):
        remote = load_built(builds["out_url"], config)
        local = load_built(str(builds["local_out"]), config)
        assert {s: len(d) for s, d in remote.items()} == {s: len(d) for s, d in local.items()}
        assert sum(len(d) for d in remote.values()) > 0
        for split in remote:
            assert remote[split]["id"] == local[split]["id"]


def test_eval_reads_and_writes_the_bucket(builds: dict[str, Any], demo_corpus: Path, s3_server) -> None:
    from pipelines.cli import main

    work: Path = builds["work"]
    outputs = {}
    for where, corpus, out in (
        ("local", str(demo_corpus), str(work / "eval")),
        ("s3", builds["corpus_url"], storage.join(builds["out_url"], "eval")),
    ):
        config = {
            "out": out,
            "benchmarks": [
                {
                    "name": "charades-sta",
                    "annotations": storage.join(corpus, "annotations/charades_sta/charades_sta_train.txt"),
                    "videos": storage.join(corpus, "videos"),
                    "cap": 2,
                }
            ],
            "engine": {"kind": "transformers", "settings": {"model": str(builds["tiny"]), "device": "cpu"}},
            "tools": "both",
            "frames": {"max_frames": 4},
            "sampling": {"max_new_tokens": 8},
            "batching": {"max_engine_calls": 1},
        }
        path = work / f"eval_{where}.yaml"
        path.write_text(yaml.safe_dump(config))
        args = ["--runner=DirectRunner", *s3_server.beam_args]
        assert main(["eval", str(path), "--", *args]) == 0
        outputs[where] = bucket_files(out) if where == "s3" else local_files(Path(out))
    remote, local = outputs["s3"], outputs["local"]
    remote = {k: v for k, v in remote.items() if not k.startswith("cache/")}
    local = {k: v for k, v in local.items() if not k.startswith("cache/")}
    assert "table.json" in remote and sorted(remote) == sorted(local)
    assert [k for k in remote if k.endswith(".jsonl") and remote[k] != local[k]] == []


def test_a_rebuild_killed_in_the_bucket_leaves_the_finished_build_readable(
    builds: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server
) -> None:
    """A real SIGKILL of `mtvr build-rl` rebuilding into the finished bucket folder (new grading settings, so the
    model works again): readers still get the finished build, whole."""
    from mtvr_data.build_manifest import verify_build
    from mtvr_data.dataset_loading import load_built
    from pipelines.publish import publish

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    before = compared(bucket_files(builds["out_url"]))
    config = yaml.safe_load((builds["work"] / "s3_rl.yaml").read_text())
    config["grade"]["sampling"]["max_new_tokens"] = 20  # a new cache key: every sample is graded again
    path = tmp_path / "rebuild.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "build-rl",
            str(path),
            "--",
            "--runner=DirectRunner",
            *s3_server.beam_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    cache = storage.join(builds["out_url"], "cache", "grade")
    known = set(storage.glob(storage.join(cache, "*", "*.json")))
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if set(storage.glob(storage.join(cache, "*", "*.json"))) - known:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the rebuild finished before it could be killed"
    assert compared(bucket_files(builds["out_url"])) == before  # shards, card, records and manifest untouched
    verify_build(builds["out_url"])
    local = load_built(str(builds["local_out"]), "rl")
    remote = load_built(builds["out_url"], "rl")
    assert {s: d["id"] for s, d in remote.items()} == {s: d["id"] for s, d in local.items()}
    assert publish(builds["out_url"], "user/mtvr", dry_run=True).files
