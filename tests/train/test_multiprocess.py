"""The distributed path for real: `accelerate launch` with 2 CPU processes (gloo): SFT, then resume from a
checkpoint; Reg-GRPO with DA-Aug, whose replay buffer is shared by the ranks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.train.conftest import demo_paths


def _launch(config: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    command = ["pipelines.cli", "train", "sft", str(config)]
    for item in overrides:
        command += ["--set", item]
    return _accelerate(command)


def _accelerate(module_and_args: list[str]) -> subprocess.CompletedProcess[str]:
    """`accelerate launch -m MODULE ARGS` on 2 CPU processes (gloo)."""
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", *module_and_args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    # rank 0's own lines first: the tail is usually the other rank's "connection closed" once one rank died
    rank0 = "\n".join(line for line in result.stderr.splitlines() if line.startswith("[rank0]"))
    assert result.returncode == 0, rank0[-4000:] + "\n---\n" + result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_two_cpu_processes_train_and_a_rerun_resumes_at_the_right_step(demo_dir, tmp_path):
    out = tmp_path / "sft2"
    config = tmp_path / "sft.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "kind": "sft",
                **demo_paths(demo_dir),
                "output_dir": str(out),
                "tools": False,
                "frames": {"max_frames": 4},
                "global_batch_size": 2,
                "args": {
                    "max_steps": 2,
                    "save_steps": 2,
                    "per_device_train_batch_size": 1,
                    "report_to": [],
                    "gradient_checkpointing": False,
                    "logging_steps": 1,
                    "learning_rate": 1e-3,
                    "warmup_steps": 0,
                },
            }
        )
    )
    first = _launch(config)
    log = first.stdout + first.stderr
    assert "per-device batch 1 x accumulation 1 x 2 processes" in log, log[
        -4000:
    ]  # two ranks, global batch 2 = 1 x 1 x 2
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    first_losses = [h["loss"] for h in state["log_history"] if "loss" in h]

    second = _launch(config, "args.max_steps=4")
    log = second.stdout + second.stderr
    assert "resuming SFT from" in log and "checkpoint-2" in log, log[-4000:]
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == [1, 2, 3, 4]  # steps 1-2 carried over from the first run, 3-4 trained after resuming
    assert [h["loss"] for h in state["log_history"] if "loss" in h][:2] == first_losses


def test_two_processes_share_the_da_aug_buffer_and_train_reg_grpo(demo_dir, tmp_path):
    out = tmp_path / "reg2"
    _accelerate(["tests.train.ddp_augment_run", str(demo_dir), str(out)])
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    # One group per rank; the group means are gathered, so both ranks see both deltas and the same buffer.
    assert ranks[0]["all_deltas"] == ranks[1]["all_deltas"] and len(ranks[0]["all_deltas"]) == 2
    assert ranks[0]["buffer"] == ranks[1]["buffer"]
    assert ranks[0]["reference"] == ranks[1]["reference"] == 2.0
    for rank in ranks:
        assert rank["decisions"] == ["hint"] and rank["hints"] == 1
    logs = [h for h in ranks[0]["log"] if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    assert logs[0]["augment/hint_count"] == 1 and logs[0]["advantage/zero_variance_share"] == 0.0
