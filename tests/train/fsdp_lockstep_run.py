"""Run by `test_lockstep.py` under `accelerate launch` (2 CPU processes, DDP or FSDP2), not collected by pytest.

Two DGRPO steps on the demo's video rows, all with the tool, where the policy itself generates (its forwards run
through the sharded weights) but the text is scripted per rank: rank 0's rollouts call the clip tool (2 engine
turns), rank 1's answer at once (1 turn). Rank 0 writes the updated weights to `<out>/weights.pt` and each rank its
lockstep counts to `<out>/rank<N>.json`. `on` forces lockstep on (under DDP it only adds dummy forwards); `fsdp`
lets accelerate's FSDP2 plugin run on these CPU processes (`tests.train.accelerate_fsdp_cpu`).

    accelerate launch ... -m tests.train.fsdp_lockstep_run DEMO_DIR OUT_DIR on|off [fsdp] [steps=N]
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from model.engine_api import Completion, GenerationRequest
from tests.train.conftest import CALL, GOOD, dgrpo_config
from train.dgrpo import build_dgrpo_trainer, rl_dataset
from train.lockstep import needs_lockstep


class ScriptedTextOverPolicy:
    """Generates with the real policy engine (every forward happens), then replaces each text by the rank's script
    and its ids by the script's tokens."""

    name = model = "scripted-over-policy"

    def __init__(self, engine, rank: int) -> None:
        self.engine = engine
        self.rank = rank
        self.turns = 0

    def script(self, request: GenerationRequest, index: int) -> str:
        first_turn = request.messages[-1]["role"] == "user"
        if self.rank == 0 and first_turn:
            return CALL.format(s=0.0, e=2.0)
        rollout = index if first_turn else int(request.key.split("/")[-2])
        return GOOD.format(answer="A") if rollout % 2 == 0 else "I am not sure."

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        out = await self.engine.generate(requests)
        self.turns += 1
        tok = self.engine.tokenizer
        for request, group in zip(requests, out, strict=True):
            for i, completion in enumerate(group):
                completion.text = self.script(request, i)
                completion.token_ids = tok.encode(completion.text, add_special_tokens=False)
                completion.finish_reason = "stop"
        return out

    async def aclose(self) -> None:
        return None


#: `accelerate launch` flags for FSDP2 as configs/accelerate/fsdp_8gpu.yaml sets it (the vision tower as one unit).
FSDP2_FLAGS = [
    "--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
    "--fsdp_transformer_layer_cls_to_wrap", "Qwen2_5_VLDecoderLayer,Qwen2_5_VisionTransformerPretrainedModel",
    "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_reshard_after_forward", "true",
]  # fmt: skip
#: The environment of a 2-process CPU run: accelerate's CPU backend, one thread a process, no Hub.
CPU_ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def launch_command(demo: Path, out: Path, mode: str, steps: int = 2) -> list[str]:
    """`accelerate launch` of this runner on 2 CPU processes: `ddp` (lockstep off) or `fsdp` (FSDP2, lockstep on);
    what test_lockstep.py and bench/train_step.py --fsdp run."""
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", *(FSDP2_FLAGS if mode == "fsdp" else ["--multi_gpu"])]
    command += ["-m", "tests.train.fsdp_lockstep_run", str(demo), str(out), "on" if mode == "fsdp" else "off"]
    return [*command, *(["fsdp"] if mode == "fsdp" else []), f"steps={steps}"]


class StepTimer(TrainerCallback):
    """Wall seconds of each optimizer step (rollouts included), for bench/train_step.py's FSDP row."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, *args: object, **kwargs: object) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, *args: object, **kwargs: object) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def main(demo: Path, out: Path, lockstep: bool, fsdp: bool = False, steps: int = 2) -> None:
    if os.environ.get("MTVR_DUMP_STACKS_AFTER"):  # a hung run's stacks, for debugging
        faulthandler.dump_traceback_later(float(os.environ["MTVR_DUMP_STACKS_AFTER"]), exit=True)
    if fsdp:
        from tests.train import accelerate_fsdp_cpu

        accelerate_fsdp_cpu.install()
    args = {"per_device_train_batch_size": 2, "num_generations": 2, "max_steps": steps, "learning_rate": 1e-3}
    args["beta"] = 0.0
    config = dgrpo_config(demo, out, args, rollout={"max_new_tokens": 4, "max_total_tokens": 64})
    rows = rl_dataset(config).filter(lambda r: r["modality"] == "video").map(lambda r: {"tools": True})
    trainer = build_dgrpo_trainer(config, train_dataset=rows)
    trainer.lockstep = lockstep  # the scripted engine below wraps the policy: the trainer cannot tell it generates
    rank = trainer.accelerator.process_index
    policy: dict[str, ScriptedTextOverPolicy] = {}

    def engine(t):
        trainer.engine_factory = None
        inner = t._policy_engine()
        trainer.engine_factory = engine
        inner.synced_gpus = False if lockstep else None
        policy.setdefault("p", ScriptedTextOverPolicy(inner, rank)).engine = inner
        return policy["p"]

    trainer.engine_factory = engine
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        torch.save(
            {k: v.detach().clone().float() for k, v in trainer.model.state_dict().items()}, out / "weights_before.pt"
        )
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    state = trainer.accelerator.get_state_dict(trainer.model)
    out.mkdir(parents=True, exist_ok=True)
    if trainer.accelerator.is_main_process:
        torch.save({k: v.detach().cpu().float() for k, v in state.items()}, out / "weights.pt")
    ls = trainer.last_lockstep
    record = {
        "engine_calls": policy["p"].turns,
        "forwards": ls.forwards if ls else None,
        "dummy_forwards": ls.dummy_forwards if ls else None,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "sharded": needs_lockstep(trainer.accelerator),
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "step_seconds": timer.seconds,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    # Leave the process group before the interpreter exits: gloo's threads otherwise can abort the exit
    # ("terminate called without an active exception") after the rollouts' collectives ran from worker threads.
    trainer.accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    flags = sys.argv[4:]
    steps = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("steps=")), 2)
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "on", fsdp="fsdp" in flags, steps=steps)
