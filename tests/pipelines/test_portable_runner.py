"""`mtvr build-rl` under Beam's PortableRunner (Python job server, LOOPBACK workers) writes what the DirectRunner
writes, byte for byte.

The job server is Beam's own (`apache_beam.runners.portability.local_job_service_main`), started here in a
subprocess on a free port; with `--environment_type=LOOPBACK` it runs the SDK harness in this test process, so the
build sees the same files. Both builds grade with the tiny checkpoint (the demo's grader) on two demo sources:
Charades-STA whole (its planted faults give read and probe dead letters, and a scale below its rows gives balance
dead letters) and two VidChapters samples graded with the clip tool (the `tool/` part), so every output file kind is
written: Parquet shards, README.md, stats.json, accounting.json, balance.json, manifest.json, rejected/*.jsonl,
the report and the result cache. Beam's portable runner failing to start is a test failure, never a skip.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from model.tiny_checkpoint import build_tiny_checkpoint
from pipelines.accounting import check_accounting, read_accounting
from pipelines.build_rl import CHAIN
from pipelines.cli import main
from pipelines.demo import demo_build_config

#: Seconds the job server may take to accept connections (it imports Beam first: a few seconds on 2 cores).
JOB_SERVER_START_S = 60.0
#: Charades-STA's 7 good rows over a target of 4 (12,000 x 0.0003, rounded): balance rejects 3 (over_target).
SCALE = 0.0003


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def job_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - yields (endpoint, log path)
    """Beam's Python job server in a subprocess: `("localhost:<port>", its log)`; stopped (SIGTERM, then SIGKILL)
    at teardown."""
    work = tmp_path_factory.mktemp("job_server")
    log_path = work / "job_server.log"
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "apache_beam.runners.portability.local_job_service_main",
        f"--port={port}",
        f"--staging_dir={work / 'staging'}",
    ]
    # Output to a file, not a pipe: the server logs for its whole life and a full pipe would block it.
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + JOB_SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"Beam's job server exited with code {server.returncode} before accepting connections on port "
                    f"{port}: {' '.join(command)}\n{_log_tail(log_path)}"
                )
            try:
                with socket.create_connection(("localhost", port), timeout=1.0):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Beam's job server did not accept connections on port {port} within {JOB_SERVER_START_S:.0f} s: "
                    f"{' '.join(command)}\n{_log_tail(log_path)}"
                )
            time.sleep(0.2)
        yield f"localhost:{port}", log_path
    finally:
        server.terminate()  # the server's SIGTERM handler exits; it may take a few seconds to stop gRPC
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


def _config(work: Path, demo_corpus: Path, name: str) -> Path:
    """A build config of two demo sources (module docstring) writing to `work/<name>`."""
    manifest = json.loads((demo_corpus / "manifest.json").read_text(encoding="utf-8"))
    tiny = build_tiny_checkpoint(work / "tiny")
    settings = yaml.safe_load(demo_build_config(work, manifest, tiny, corpus=demo_corpus).read_text(encoding="utf-8"))
    caps = {"charades_sta": None, "vidchapters": 2}
    settings["sources"] = [
        {**entry, **({"cap": caps[entry["source"]]} if caps[entry["source"]] is not None else {})}
        for entry in settings["sources"]
        if entry["source"] in caps
    ]
    settings["balance"]["scale"] = SCALE
    settings["out"] = str(work / name)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return path


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path.

    Nothing is excluded: the result cache's entries hold the key and the model's text, nothing about the runner,
    and the report's PNGs are rendered from the same numbers, so both folders must match file for file.
    """
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_portable_runner_writes_the_same_bytes_as_the_direct_runner(demo_corpus, job_server, tmp_path):
    endpoint, server_log = job_server
    direct, portable = _config(tmp_path, demo_corpus, "direct"), _config(tmp_path, demo_corpus, "portable")
    assert main(["build-rl", str(direct), "--", "--runner=DirectRunner"]) == 0
    args = ["--runner=PortableRunner", f"--job_endpoint={endpoint}", "--environment_type=LOOPBACK"]
    assert main(["build-rl", str(portable), "--", *args]) == 0
    # the portable build really ran as a job of that server
    assert "with state DONE" in server_log.read_text(encoding="utf-8", errors="replace"), _log_tail(server_log)

    ours, theirs = _files(tmp_path / "direct"), _files(tmp_path / "portable")
    # the build wrote every kind of file this test is about (else the comparison would prove little)
    for wanted in ("README.md", "stats.json", "accounting.json", "balance.json"):
        assert wanted in ours
    assert any(name.startswith("rl/") and name.endswith(".parquet") for name in ours)
    assert {"rejected/read.jsonl", "rejected/probe.jsonl", "rejected/balance.jsonl"} <= set(ours)
    assert any(name.startswith("cache/grade/") for name in ours)
    table = read_accounting(tmp_path / "portable")
    check_accounting(table, chain=CHAIN)
    grade = {s["stage"]: s for s in table["stages"]}["grade"]
    assert grade["computed"] == grade["in"] > 0  # both builds graded: nothing came from a cache

    assert sorted(theirs) == sorted(ours), "the two runners wrote different sets of files"
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert not differing, f"files differ between DirectRunner and PortableRunner: {differing}"
