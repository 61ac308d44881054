"""DGRPO and Reg-GRPO step time against TRL's plain GRPOTrainer on the same model and the same batch.

Both trainers are built on the tiny Qwen2.5-VL checkpoint from the same demo shards with the same arguments;
generation is replaced in both by the same fixed completions (text prompts, so TRL's own path can score them), so
a step is: rewards, advantages (plus DGRPO's weight), the old/ref log-prob passes TRL needs, the loss, backward.
The ratios printed are plain step time / DGRPO step time (>= 1.0: DGRPO is no slower) and plain / Reg-GRPO, the
medians of interleaved rounds (a shared 2-core machine drifts; a round's steps see the same drift). Reg-GRPO runs
with its own defaults (2 inner updates per batch), so its step includes the old-policy log-prob pass TRL makes
when a batch is reused: that pass is part of what Reg-GRPO costs (in training it is made once per rollout batch,
so once per 2 updates; here every step regenerates). A fourth trainer, Reg-GRPO with 1 inner update, isolates the
cost of the loss itself (it has the same passes as plain GRPO). Run from the repository root after `make demo`:
    .venv/bin/python bench/train_step.py [--demo demo] [--steps 20]

`--fsdp` measures instead lockstep FSDP2 against DDP on 2 CPU processes (gloo): the same DGRPO steps (the policy
itself rolls out; rank 0's rollouts call the clip tool, rank 1's answer at once, so rank 1 makes up rank 0's second
turn with dummy forwards) under `accelerate launch --use_fsdp --fsdp_version 2` with lockstep on, and under
accelerate's DDP with it off (`tests/train/fsdp_lockstep_run.py`, the runner the FSDP test uses). Runs alternate;
the ratio is DDP step time / FSDP step time per round (< 1.0: FSDP is slower), the median over rounds, each
round's first step left out as warm-up:
    .venv/bin/python bench/train_step.py --fsdp [--rounds 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from train.config import config_from_dict  # noqa: E402
from train.dgrpo import build_dgrpo_trainer, build_plain_grpo_trainer  # noqa: E402

TEXTS = [
    "<think>The clip shows it.</think><answer>A</answer>",
    "I do not know.",
    "<think>Looking again at the start.</think><answer>B</answer>",
    "<think>It is the first option.</think><answer>A</answer>",
] * 2


def demo_config(demo: Path, model: Path, args: dict[str, Any], **over: Any) -> Any:
    """A DGRPO config on the `make demo` build (its RL rows and videos) for `model`, with trainer `args`."""
    tree = {
        "kind": "dgrpo",
        "model": str(model),
        "data": str(demo / "build"),
        "video_root": str(demo / "corpus" / "videos"),
        "output_dir": "/tmp/mtvr-bench-train-step",
        "tools": False,
        "args": args,
        **over,
    }
    return config_from_dict(tree)


def install_generation(
    trainer: Any,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    texts: list[str],
    *,
    tool_mask: list[list[int]] | None = None,
    media: list[dict[str, Any]] | None = None,
) -> None:
    """Replace the trainer's generation by fixed rows (row i of a batch gets entry i modulo each list's length), so
    a step costs the same in every trainer and no sampling is timed. `media` (DGRPO only) is the per-row video
    tensors DGRPO's own `_generate` would leave for its log-prob passes; TRL's trainer has no place for them."""

    def generate(prompts: list[Any]) -> tuple[Any, ...]:
        n = len(prompts)
        extra = {"num_successful_tool_calls": [0] * n, "tools": [False] * n, "rollout_ok": [True] * n}
        completions = [[{"role": "assistant", "content": texts[i % len(texts)]}] for i in range(n)]
        if media is not None:
            trainer._media = [media[i % len(media)] for i in range(n)]
        return (
            [list(prompt_ids[i % len(prompt_ids)]) for i in range(n)],
            [list(completion_ids[i % len(completion_ids)]) for i in range(n)],
            None if tool_mask is None else [list(tool_mask[i % len(tool_mask)]) for i in range(n)],
            completions,
            None,
            extra,
            None,
            [],
        )

    trainer._generate = generate


def fixed_generation(trainer: Any, processor: Any) -> None:
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = tok(
        "<|im_start|>user\n" + "Which option is shown in the video? " * 8 + "<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = [tok(t)["input_ids"] + [end] for t in TEXTS]
    install_generation(trainer, [list(prompt["input_ids"])], ids, TEXTS)


def prepare(trainer: Any) -> None:
    """What `Trainer.train()` sets up that a bare step needs: train mode and the accumulation count."""
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()


def run_step(trainer: Any, rows: list[dict[str, Any]]) -> None:
    """One step's work: rewards, advantages, the log-prob passes, the loss and its backward (gradients are kept)."""
    out = trainer._generate_and_score_completions([dict(r) for r in rows])
    loss = trainer._compute_loss(trainer.model, out)
    loss.backward()


def step(trainer: Any, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    run_step(trainer, rows)
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def distributed_steps(demo: Path, out: Path, mode: str, steps: int) -> list[float]:
    """One 2-process run of `steps` DGRPO steps (`ddp` or `fsdp`); rank 0's step seconds."""
    import json
    import os
    import subprocess

    from tests.train.fsdp_lockstep_run import CPU_ENV, launch_command

    command = launch_command(demo, out, mode, steps)
    env = {**os.environ, **CPU_ENV}
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.exit(f"{mode} run failed:\n{result.stderr[-3000:]}")
    return json.loads((out / "rank0.json").read_text())["step_seconds"]


def fsdp_row(demo: Path, rounds: int, steps: int) -> None:
    import tempfile

    ratios, medians = [], {"ddp": [], "fsdp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = ("ddp", "fsdp") if r % 2 == 0 else ("fsdp", "ddp")
            median = {}
            for mode in order:
                seconds = distributed_steps(demo, Path(tmp) / f"{mode}{r}", mode, steps)[1:]
                median[mode] = statistics.median(seconds)
                medians[mode].append(median[mode])
            ratios.append(median["ddp"] / median["fsdp"])
            ddp_ms, fsdp_ms = median["ddp"] * 1000, median["fsdp"] * 1000
            print(f"round {r + 1}: DDP {ddp_ms:.0f} ms/step, lockstep FSDP2 {fsdp_ms:.0f} ms/step")
    print(
        f"step (median): DDP {statistics.median(medians['ddp']) * 1000:.0f} ms, lockstep FSDP2 "
        f"{statistics.median(medians['fsdp']) * 1000:.0f} ms (2 CPU processes, gloo)"
    )
    print(f"speed ratio DDP time / lockstep FSDP2 time: {statistics.median(ratios):.3f} (median of {rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo", help="the `make demo` output folder")
    parser.add_argument("--steps", type=int, default=None, help="steps per trainer (20; with --fsdp 4 a run)")
    parser.add_argument("--fsdp", action="store_true", help="lockstep FSDP2 against DDP on 2 CPU processes")
    parser.add_argument("--rounds", type=int, default=3, help="with --fsdp: alternating DDP/FSDP runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    demo = Path(args.demo).resolve()
    if not (demo / "build" / "rl").is_dir():
        sys.exit(f"{demo}/build/rl not found: run `make demo` first")
    if args.fsdp:
        fsdp_row(demo, args.rounds, max(2, args.steps or 4))
        return
    args.steps = args.steps or 20
    from transformers import AutoProcessor

    config = demo_config(
        demo,
        demo / "tiny",
        {
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "beta": 0.01,
            "report_to": [],
            "gradient_checkpointing": False,
            "save_strategy": "no",
        },
    )
    processor = AutoProcessor.from_pretrained(demo / "tiny")
    ours = build_dgrpo_trainer(config, processor=processor)
    plain = build_plain_grpo_trainer(config, processor=processor)
    reg = build_dgrpo_trainer(dataclasses.replace(config, loss="reg_grpo"), processor=processor)
    one_update = {**config.args, "num_iterations": 1}
    reg1 = build_dgrpo_trainer(dataclasses.replace(config, loss="reg_grpo", args=one_update), processor=processor)
    for trainer in (ours, plain, reg, reg1):
        fixed_generation(trainer, processor)
        prepare(trainer)
    data = [dict(ours.train_dataset[i]) for i in range(2)]
    rows = [r for r in data for _ in range(4)]
    for trainer in (ours, plain, reg, reg1):  # warm-up
        step(trainer, rows)
    named = {"dgrpo": ours, "plain": plain, "reg": reg, "reg1": reg1}
    times: dict[str, list[float]] = {name: [] for name in named}
    for i in range(args.steps):
        order = list(named)[i % 4 :] + list(named)[: i % 4]  # rotate who goes first
        for name in order:
            times[name].append(step(named[name], rows))
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(
        f"step (median): DGRPO {ms['dgrpo']:.1f} ms, Reg-GRPO {ms['reg']:.1f} ms, Reg-GRPO 1 update "
        f"{ms['reg1']:.1f} ms, TRL GRPO {ms['plain']:.1f} ms"
    )
    labels = (("dgrpo", "DGRPO"), ("reg", "Reg-GRPO (2 inner updates)"), ("reg1", "Reg-GRPO loss alone (1 update)"))
    for name, label in labels:
        ratio = statistics.median(p / t for p, t in zip(times["plain"], times[name], strict=True))
        print(f"speed ratio TRL-GRPO time / {label} time: {ratio:.3f} (median of {args.steps} rounds)")


if __name__ == "__main__":
    main()
