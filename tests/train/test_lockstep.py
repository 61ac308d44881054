"""Lockstep rollouts under sharded weights, on 2 CPU processes (gloo).

Rollouts (`fsdp_rollout_run`, `fully_shard` applied by hand under `torch.distributed.run`): rank 0's rollouts run 2
engine turns, rank 1's one. With lockstep both finish with the same calls; without it the ranks' all-gathers pair
wrongly and gloo aborts ("collective mismatch") or they hang (killed at a timeout).

Training (`fsdp_lockstep_run`): 2 DGRPO steps under `accelerate launch --use_fsdp --fsdp_version 2` (the trainer's
own FSDP2 path: accelerate's wrapping, transformers' `generate` registration, a full state dict at the end) give the
same weights as the same steps under accelerate's DDP. accelerate (1.x) turns FSDP on only for accelerator devices,
so on these CPU processes `tests.train.accelerate_fsdp_cpu` keeps the plugin it would otherwise drop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.fsdp_lockstep_run import CPU_ENV, launch_command


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run in its own process group, so a hung run's ranks are killed with it at the timeout."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **CPU_ENV},
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _torchrun(demo: Path, out: Path, lockstep: str, timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    return _run([*command, "-m", "tests.train.fsdp_rollout_run", str(demo), str(out), lockstep], timeout)


def _accelerate(demo: Path, out: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """2 DGRPO steps: `ddp` (lockstep off) or `fsdp` (FSDP2, lockstep on)."""
    return _run(launch_command(demo, out, mode), 300)


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    rank0 = "\n".join(line for line in result.stderr.splitlines() if line.startswith("[rank0]"))
    assert result.returncode == 0, rank0[-4000:] + "\n---\n" + result.stdout[-2000:] + result.stderr[-3000:]


def test_fsdp2_rollouts_with_different_turn_counts_finish_in_lockstep(demo_dir, tmp_path):
    _ok(_torchrun(demo_dir, tmp_path, "on", timeout=300))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rank["sharded"] for rank in ranks)
    assert ranks[0]["turns"] == [2, 2] and ranks[1]["turns"] == [1, 1]
    assert ranks[0]["engine_calls"] > ranks[1]["engine_calls"] == 1
    # Per kind of call (1 forward, 2 vision tower), real + dummy calls are the same on both ranks; rank 1 made up
    # rank 0's second turn with dummies.
    totals = [{k: rank["calls"].get(k, 0) + rank["dummies"].get(k, 0) for k in ("1", "2")} for rank in ranks]
    assert totals[0] == totals[1]
    assert ranks[1]["dummies"].get("1", 0) > 0 and ranks[1]["dummies"].get("2", 0) > 0


def test_fsdp2_rollouts_without_lockstep_do_not_finish(demo_dir, tmp_path):
    try:
        result = _torchrun(demo_dir, tmp_path, "off", timeout=120)
    except subprocess.TimeoutExpired:
        return  # hung in a collective
    assert result.returncode != 0, "the rollouts finished without lockstep"
    assert "collective mismatch" in result.stdout + result.stderr or "Connection reset" in result.stderr


def test_two_dgrpo_steps_under_fsdp2_give_the_weights_of_ddp(demo_dir, tmp_path):
    _ok(_accelerate(demo_dir, tmp_path / "fsdp", "fsdp"))
    _ok(_accelerate(demo_dir, tmp_path / "ddp", "ddp"))
    fsdp = [json.loads((tmp_path / "fsdp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    ddp = json.loads((tmp_path / "ddp" / "rank0.json").read_text())
    assert all(rank["sharded"] and rank["distributed_type"].endswith("FSDP") for rank in fsdp)
    assert not ddp["sharded"]
    # 2 steps: rank 0 calls the tool (2 engine turns a step), rank 1 answers at once and makes up the rest
    assert fsdp[0]["engine_calls"] > fsdp[1]["engine_calls"] == 2
    assert fsdp[1]["dummy_forwards"] > fsdp[0]["dummy_forwards"]
    sharded = torch.load(tmp_path / "fsdp" / "weights.pt")
    replicated = torch.load(tmp_path / "ddp" / "weights.pt")
    before = torch.load(tmp_path / "ddp" / "weights_before.pt")
    assert sharded.keys() == replicated.keys() == before.keys()
    assert max((sharded[k] - replicated[k]).abs().max().item() for k in sharded) <= 1e-5
    assert max((before[k] - replicated[k]).abs().max().item() for k in before) > 1e-4  # the steps did train
    assert fsdp[0]["losses"] == pytest.approx(ddp["losses"], abs=1e-6)
