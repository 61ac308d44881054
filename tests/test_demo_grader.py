"""`mtvr demo` with its warm-up: a grader that has learned something, and a console without known noise.

The full demo takes minutes on 2 cores, so these run only with MTVR_SLOW_TESTS=1 (`make test-demo`); the quick parts
(the practice questions, the console filter, the fd-2 capture) run in every `make test`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mtvr_data.c_stderr import call_logging_fd2
from mtvr_data.demo_annotations import practice_questions, write_practice
from pipelines.console import BeamImportNoise

#: Lines the demo's stderr must not have (issue 19): Beam's import noise and libav's complaints about broken files.
NOISE = ("Resource module is not available", "apitools not found", "moov atom not found", "ERROR opening")
slow = pytest.mark.skipif(
    not os.environ.get("MTVR_SLOW_TESTS"), reason="the full demo: MTVR_SLOW_TESTS=1 (make test-demo)"
)


def test_practice_questions_are_many_deterministic_and_split(tmp_path: Path):
    grounding, mcq = practice_questions()
    assert len(grounding) + len(mcq) >= 300
    assert practice_questions() == (grounding, mcq)
    practice = write_practice(tmp_path)
    train = sum(s.expected_samples for s in practice.train)
    heldout = sum(s.expected_samples for s in practice.heldout)
    assert train > 4 * heldout > 0
    train_r1 = json.loads((tmp_path / practice.train[1].annotations).read_text())
    held_r1 = json.loads((tmp_path / practice.heldout[1].annotations).read_text())
    key = lambda r: (r["path"], r["problem"], tuple(r["options"]))  # noqa: E731
    assert not {key(r) for r in train_r1} & {key(r) for r in held_r1}
    # the right letter moves: a model cannot pass by always writing one letter
    letters = Counter(r["solution"] for r in train_r1)
    assert len(letters) == 4 and max(letters.values()) < 0.5 * len(train_r1)


def _record(pathname: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord("root", logging.WARNING, pathname, 1, msg, None, None)


def test_console_filter_drops_only_beams_known_import_warnings():
    keep = BeamImportNoise().filter
    beam = "/x/site-packages/apache_beam/io/gcp/internal/clients/bigquery/__init__.py"
    assert not keep(_record(beam, "apitools not found, and bigquery client libraries are not available"))
    assert not keep(_record("/x/apache_beam/ml/inference/base.py", "Resource module is not available for current"))
    assert keep(_record(beam, "something else went wrong"))
    assert keep(_record("/work/pipelines/demo.py", "apitools not found"))


def test_fd2_output_of_c_code_is_logged_not_printed(capfd, caplog):
    def noisy() -> int:
        os.write(2, b"[mov @ 0x1] moov atom not found\n")
        return 7

    log = logging.getLogger("tests.c_stderr")
    with caplog.at_level(logging.DEBUG, logger="tests.c_stderr"):
        assert call_logging_fd2(noisy, logger=log, what="decord on x.mp4") == 7
    assert "moov atom" not in capfd.readouterr().err
    assert "decord on x.mp4: [mov @ 0x1] moov atom not found" in caplog.text


def _demo(out: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "pipelines.cli", "demo", "--out", str(out), *flags]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


@slow
def test_demo_console_has_no_known_noise(tmp_path: Path):
    proc = _demo(tmp_path / "demo", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stderr.splitlines() if any(n in line for n in NOISE)]
    broken = [line for line in proc.stdout.splitlines() if line.strip().startswith("broken file ")]
    assert len(broken) == 2 and all("dead letter in " in line and ".errors.jsonl" in line for line in broken)


@slow
@pytest.mark.xfail(
    reason="issue 19 item 1 not reached yet: after the 96-step warm-up the grader passes 2 of the 35 demo samples "
    "(pass rate 0.25 each); 23% of its rollouts at temperature 1 are well-formed and its spans are not valid",
    strict=False,
)
def test_warmed_up_grader_spreads_pass_rates(tmp_path: Path):
    out = tmp_path / "demo"
    proc = _demo(out, tmp_path, "--warm-up")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stderr.splitlines() if any(n in line for n in NOISE)]
    import pyarrow.parquet as pq

    rows = [r for f in sorted((out / "build" / "rl").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert all(0 < r["pass_rate"] < 1 for r in rows)  # keep: medium
    assert len({r["pass_rate"] for r in rows}) >= 3
    assert len({r["bucket"] for r in rows}) >= 2
