"""The `mtvr` command line as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from mtvr_data.parquet_io import read_parquet

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"


def mtvr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mtvr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_commands():
    out = mtvr("--help")
    assert out.returncode == 0
    for command in ("sources", "samples", "demo-corpus", "demo"):
        assert command in out.stdout


def test_sources_lists_adapters():
    out = mtvr("sources")
    assert out.returncode == 0 and "charades_sta" in out.stdout and "nextgqa" in out.stdout


def test_samples_without_probe(tmp_path):
    ann = tmp_path / "charades_sta_train.txt"
    ann.write_bytes((SAMPLES / "charades_sta" / "charades_sta_train.txt").read_bytes() + b"ZZZZZ 4.0 2.0##bad.\n")
    out = mtvr(
        "samples",
        "--source",
        "charades_sta",
        "--annotations",
        str(ann),
        "--no-probe",
        "--out",
        str(tmp_path / "out" / "c.parquet"),
    )
    assert out.returncode == 0, out.stderr
    assert "21 records read -> 20 samples built -> 20 kept, 1 errors" in out.stdout
    assert "end_not_after_start" in out.stdout
    assert len(read_parquet(tmp_path / "out" / "c.parquet", "sample")) == 20
    errors = [json.loads(x) for x in (tmp_path / "out" / "c.errors.jsonl").read_text().splitlines()]
    assert [(e["location"], e["reason"]) for e in errors] == [("charades_sta_train.txt:21", "end_not_after_start")]
    summary = json.loads((tmp_path / "out" / "c.summary.json").read_text())
    assert summary["kept"] == 20 and summary["errors"][0]["reason"] == "end_not_after_start"


def test_samples_unknown_source_and_missing_file(tmp_path):
    out = mtvr("samples", "--source", "nope", "--annotations", "x", "--out", str(tmp_path / "x.parquet"))
    assert out.returncode == 2 and "unknown source 'nope'" in out.stderr
    out = mtvr(
        "samples",
        "--source",
        "charades_sta",
        "--annotations",
        str(tmp_path / "missing.txt"),
        "--out",
        str(tmp_path / "x.parquet"),
    )
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_samples_missing_videos_are_reported(tmp_path):
    out = mtvr(
        "samples",
        "--source",
        "charades_sta",
        "--annotations",
        str(SAMPLES / "charades_sta" / "charades_sta_test.txt"),
        "--videos",
        str(tmp_path),
        "--out",
        str(tmp_path / "c.parquet"),
    )
    assert out.returncode == 0, out.stderr
    assert "20 records read -> 20 samples built -> 0 kept, 20 errors" in out.stdout
    assert "video_missing" in out.stdout
    assert pq.read_table(tmp_path / "c.parquet").num_rows == 0
