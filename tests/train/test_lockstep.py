"""Lockstep rollouts under sharded weights, on 2 CPU processes (gloo).

FSDP2: accelerate (1.x) turns FSDP on only for accelerator devices (on CPU processes its state is MULTI_CPU and the
FSDP plugin is dropped), so the FSDP runs apply `fully_shard` themselves under `torch.distributed.run`
(`fsdp_rollout_run`): rank 0's rollouts run 2 engine turns, rank 1's one. With lockstep both finish with the same
calls; without it the ranks' all-gathers pair wrongly and gloo aborts ("collective mismatch") or they hang (killed at
a timeout). Training: under accelerate's DDP (`fsdp_lockstep_run`), 2 DGRPO steps with lockstep forced on give the
same weights as without it, so the dummy calls change nothing that is trained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run in its own process group, so a hung run's ranks are killed with it at the timeout."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
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


def _accelerate_ddp(demo: Path, out: Path, lockstep: str) -> subprocess.CompletedProcess[str]:
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return _run([*command, "-m", "tests.train.fsdp_lockstep_run", str(demo), str(out), lockstep], 300)


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


def test_lockstep_changes_nothing_that_is_trained(demo_dir, tmp_path):
    _ok(_accelerate_ddp(demo_dir, tmp_path / "on", "on"))
    _ok(_accelerate_ddp(demo_dir, tmp_path / "off", "off"))
    ranks = [json.loads((tmp_path / "on" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["engine_calls"] > ranks[1]["engine_calls"] == 2  # 2 steps: rank 1 one call per step
    assert ranks[1]["dummy_forwards"] > 0
    on = torch.load(tmp_path / "on" / "weights.pt")
    off = torch.load(tmp_path / "off" / "weights.pt")
    before = torch.load(tmp_path / "on" / "weights_before.pt")
    assert on.keys() == off.keys()
    assert max((on[k] - off[k]).abs().max().item() for k in on) <= 1e-5
    assert any(not torch.equal(before[k], on[k]) for k in on)  # the steps did update the weights
