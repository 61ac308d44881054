"""A failing model server never costs a dataset: real `mtvr build-rl` runs against the loopback fault bed.

- flaky server: every sample graded, the accounting closed, a rerun makes no call, and every request carried `stop`
  (transient 500s are retried as 500s, never read as "this server cannot stop on strings");
- dead server: the build exits 1 within the breaker's deadline and the previous build loads unchanged;
- death and restart mid-build: the build waits for the server and finishes with every sample graded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from tests.fault_server import FaultServer, flaky


def config(folder: Path, corpus: Path, server: FaultServer, **grade: Any) -> Path:
    engine = {
        "kind": "openai",
        "settings": {
            "base_url": server.url,
            "model": "fault-model",
            "max_retries": 4,
            "backoff_s": 0.01,
            "backoff_max_s": 0.05,
            "timeout_s": 1.0,
            "breaker_failures": 3,
            "breaker_deadline_s": 4.0,
        },
    }
    data = {
        "out": str(folder / "build"),
        "contamination": [],
        "sources": [
            {
                "source": "charades_sta",
                "annotations": str(corpus / "annotations/charades_sta/charades_sta_train.txt"),
                "videos": str(corpus / "videos"),
            },
            {
                "source": "nextgqa",
                "annotations": str(corpus / "annotations/nextgqa/train.csv"),
                "videos": str(corpus / "videos"),
            },
        ],
        "grade": {
            "engine": engine,
            "k": 2,
            "sampling": {"max_new_tokens": 64, "seed": 3},
            "rollout": {"tools": False},
            "frames": {"max_frames": 4},
            "keep": "all",
            **grade,
        },
        "balance": {"mix": "none"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def grade_row(out: Path) -> dict[str, Any]:
    import json

    table = json.loads((out / "accounting.json").read_text())
    return next(row for row in table["stages"] if row["stage"] == "grade")


def rows(out: Path, cache: Path) -> list[dict[str, Any]]:
    from datasets import load_dataset

    return sorted(load_dataset(str(out), "rl", split="train", cache_dir=str(cache)), key=lambda r: r["id"])


@pytest.fixture
def server() -> Any:
    bed = FaultServer(flaky("t1"), stall_s=2.5).start()
    yield bed
    bed.stop()


def test_a_flaky_server_loses_nothing_and_keeps_its_stop_strings(tmp_path, demo_corpus, server) -> None:
    path = config(tmp_path, demo_corpus, server)
    assert main(["build-rl", str(path)]) == 0
    row = grade_row(tmp_path / "build")
    assert row["in"] > 0 and row["kept"] == row["in"] and row["rejected"] == 0  # every sample graded
    assert sum(server.faults.values()) >= 3 and len(server.faults) >= 2  # the faults really happened
    assert all("stop" in body for body in server.bodies)  # no transient 500 cost the server its stop strings
    print(f"\nflaky server: {server.calls} requests, faults {dict(server.faults)}")
    made = server.calls
    assert main(["build-rl", str(path)]) == 0
    assert server.calls == made  # the rerun is served from the cache


def test_a_dead_server_fails_the_build_and_keeps_the_previous_dataset(tmp_path, demo_corpus, server) -> None:
    good = config(tmp_path, demo_corpus, server)
    assert main(["build-rl", str(good)]) == 0
    before = rows(tmp_path / "build", tmp_path / "hf1")
    assert before
    server.stop()  # dead, and a changed setting misses the cache: every sample needs the server
    changed = config(tmp_path, demo_corpus, server, sampling={"max_new_tokens": 65, "seed": 3})
    start = time.monotonic()
    assert main(["build-rl", str(changed)]) == 1
    assert time.monotonic() - start < 60  # the breaker's deadline (4 s) bounds the wait, not retries per sample
    assert rows(tmp_path / "build", tmp_path / "hf2") == before  # the previous build is what readers still load


def test_a_server_that_dies_and_comes_back_mid_build_loses_nothing(tmp_path, demo_corpus) -> None:
    bed = FaultServer().start()
    died = {"done": False}

    def plan(body: dict[str, Any], attempt: int) -> None:
        if bed.calls >= 3 and not died["done"]:
            died["done"] = True
            # dies now (from another thread: this runs on the server's own loop), for a second; the breaker holds
            # the requests meanwhile
            threading.Thread(target=bed.restart_after, args=(1.0,), daemon=True).start()
        return None

    bed.plan = plan
    try:
        path = config(tmp_path, demo_corpus, bed)
        assert main(["build-rl", str(path)]) == 0
        row = grade_row(tmp_path / "build")
        assert died["done"] and row["kept"] == row["in"] > 0
    finally:
        bed.stop()
