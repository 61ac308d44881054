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


def fixed_generation(trainer: Any, processor: Any) -> None:
    tok = processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = tok(
        "<|im_start|>user\n" + "Which option is shown in the video? " * 8 + "<|im_end|>\n<|im_start|>assistant\n"
    )

    def generate(prompts: list[Any]) -> tuple[Any, ...]:
        n = len(prompts)
        texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
        extra = {"num_successful_tool_calls": [0] * n, "tools": [False] * n, "rollout_ok": [True] * n}
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        ids = [tok(t)["input_ids"] + [end] for t in texts]
        return [list(prompt["input_ids"])] * n, ids, None, completions, None, extra, None, []

    trainer._generate = generate


def step(trainer: Any, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    out = trainer._generate_and_score_completions([dict(r) for r in rows])
    loss = trainer._compute_loss(trainer.model, out)
    loss.backward()
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo", help="the `make demo` output folder")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    demo = Path(args.demo).resolve()
    if not (demo / "build" / "rl").is_dir():
        sys.exit(f"{demo}/build/rl not found: run `make demo` first")
    from transformers import AutoProcessor

    config = config_from_dict(
        {
            "kind": "dgrpo",
            "model": str(demo / "tiny"),
            "data": str(demo / "build"),
            "video_root": str(demo / "corpus" / "videos"),
            "output_dir": "/tmp/mtvr-bench-train-step",
            "tools": False,
            "args": {
                "per_device_train_batch_size": 8,
                "num_generations": 4,
                "beta": 0.01,
                "report_to": [],
                "gradient_checkpointing": False,
                "save_strategy": "no",
            },
        }
    )
    processor = AutoProcessor.from_pretrained(demo / "tiny")
    ours = build_dgrpo_trainer(config, processor=processor)
    plain = build_plain_grpo_trainer(config, processor=processor)
    reg = build_dgrpo_trainer(dataclasses.replace(config, loss="reg_grpo"), processor=processor)
    one_update = {**config.args, "num_iterations": 1}
    reg1 = build_dgrpo_trainer(dataclasses.replace(config, loss="reg_grpo", args=one_update), processor=processor)
    for trainer in (ours, plain, reg, reg1):
        fixed_generation(trainer, processor)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
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
