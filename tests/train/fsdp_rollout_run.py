"""Run by `test_lockstep.py` under `torch.distributed.run` (2 CPU processes, gloo), not collected by pytest.

The policy's decoder layers and root are sharded with FSDP2's `fully_shard` (accelerate does not turn FSDP on for
CPU processes, see test_lockstep.py), then each rank rolls out one group of a tool row through the policy itself:
rank 0's rollouts call the tool (2 engine turns), rank 1's answer at once (1 turn). With `on`, the rollouts run
under `train.lockstep.Lockstep`; then both ranks run one more forward together and write `<out>/rank<N>.json`.

    python -m torch.distributed.run --nproc_per_node 2 -m tests.train.fsdp_rollout_run DEMO_DIR OUT_DIR on|off
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch
from torch.distributed.fsdp import fully_shard

from tests.train.conftest import dgrpo_config
from tests.train.fsdp_lockstep_run import ScriptedTextOverPolicy
from train.dgrpo import build_dgrpo_trainer, rl_dataset
from train.lockstep import Lockstep, vision_tower


def main(demo: Path, out: Path, lockstep: bool) -> None:
    config = dgrpo_config(demo, out, {"beta": 0.0}, rollout={"max_new_tokens": 4, "max_total_tokens": 64})
    rows = rl_dataset(config).filter(lambda r: r["modality"] == "video").map(lambda r: {"tools": True})
    trainer = build_dgrpo_trainer(config, train_dataset=rows)  # initialises the gloo process group (accelerate)
    model = trainer.model
    for module in model.modules():
        if type(module).__name__ == "Qwen2_5_VLDecoderLayer":
            fully_shard(module)
    fully_shard(vision_tower(model))  # the tower as one unit (train/lockstep.py says why)
    fully_shard(model)
    rank = trainer.accelerator.process_index
    trainer.lockstep = False  # the engine below is built for the policy; lockstep is applied here by hand
    inner = trainer._policy_engine()
    inner.synced_gpus = False
    policy = ScriptedTextOverPolicy(inner, rank)
    row = dict(rows[0])
    model.eval()
    with torch.no_grad():  # FSDP2's lazy init from the root, in both modes (Lockstep does it as well)
        ids = torch.tensor([[1, 2, 3]])
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    guard = Lockstep(model, trainer.processing_class.tokenizer.pad_token_id or 0, "cpu") if lockstep else None
    with guard if guard is not None else contextlib.nullcontext():
        batch = trainer.rollouts([row, row], policy)
    with torch.no_grad():  # one more forward on every rank: they must still be paired
        ids = torch.tensor([[1, 2, 3]])
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "engine_calls": policy.turns,
        "turns": [len(t.turns) for t in batch.trajectories],
        "calls": dict(guard.forwards) if guard else None,
        "dummies": dict(guard.dummies) if guard else None,
        "sharded": type(model).__name__.startswith("FSDP"),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "on")
