"""Run by `test_multiprocess.py` under `accelerate launch` (2 CPU processes), not collected by pytest.

Two Reg-GRPO steps with DA-Aug on the demo shards, the policy scripted (`HintAwarePolicy`), so that the ranks have
something to augment; each rank writes what it decided and what it logged to `<out>/rank<N>.json`.

    python -m tests.train.ddp_augment_run DEMO_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.train.conftest import dgrpo_config
from tests.train.test_augment import HintAwarePolicy
from train.dgrpo import build_dgrpo_trainer


def main(demo: Path, out: Path) -> None:
    args = {"per_device_train_batch_size": 2, "num_generations": 2, "max_steps": 2}
    augment = {"threshold": 0.0, "hint_samples": 2}
    config = dgrpo_config(demo, out, args, loss="reg_grpo", tools=False, augment=augment)
    trainer = build_dgrpo_trainer(config)
    policy = HintAwarePolicy()
    trainer.engine_factory = lambda _: policy
    trainer.augmenter.buffer.push([2.0])  # a recent average no untagged reply reaches: every group is hard
    trainer.train()
    report = trainer.last_augment
    record = {
        "reference": report.reference,
        "all_deltas": report.all_deltas,
        "decisions": [d.action for d in report.decisions],
        "hints": report.hints,
        "buffer": list(trainer.augmenter.buffer.values),
        "log": trainer.state.log_history,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
