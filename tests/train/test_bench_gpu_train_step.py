"""The GPU train-step bench's CPU smoke test: `bench/gpu_train_step.py --shape tiny --device cpu` runs both trainers
end to end on the demo build (the same code path as the 3B run on a GPU, at the tiny checkpoint's size), so the
script a GPU machine gets is known to work before any device time is spent on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_train_step_bench_runs_on_cpu(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "gpu_train_step.py"),
        "--shape", "tiny", "--device", "cpu", "--frames", "4", "--completion-tokens", "32", "--steps", "1",
        "--demo", str(demo_dir), "--workdir", str(tmp_path / "work"), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    said = f"rc {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, said
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text(encoding="utf-8"))
    rows = {row["trainer"]: row for row in printed["rows"]}
    assert set(rows) == {"dgrpo", "trl_grpo"}
    for row in rows.values():
        assert row["step_s"] > 0 and row["tokens_per_s"] > 0 and row["completion_tokens_per_s"] > 0
        assert row["peak_gib"] is None  # CUDA's allocator peak only: none on CPU
    batch = printed["batch"]
    # DGRPO's prompt holds the 4 frames' video tokens; both trainers train on the same 8 x 32 completion tokens.
    assert batch["frames"] == 4 and batch["video_tokens_per_row"] > 0
    assert batch["rows"] == 8 and batch["completion_tokens_per_row"] == 32
    assert batch["tokens_per_step"] == 8 * (batch["prompt_tokens_per_row"] + 32)
    ratios = printed["ratios_dgrpo_over_trl"]
    assert ratios["step_s"] > 0 and ratios["tokens_per_s"] > 0
    assert "DGRPO/TRL" in done.stdout
