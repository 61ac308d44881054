"""One DGRPO step and one TRL GRPO step of a Qwen2.5-VL-3B-shaped policy on a 64-frame video batch, on one GPU.

Why: `bench/train_step.py` compares the trainers' step time on the tiny checkpoint on CPU, where the vision tower
and the video tokens cost next to nothing. What a run on real hardware pays for DGRPO's video path (the frozen
vision tower run in every log-prob pass, a prompt of ~2k video tokens) only shows at the real model's size, so this
bench builds a model of Qwen2.5-VL-3B-Instruct's shape with random weights (nothing is downloaded) and measures
step seconds, tokens/s and peak GPU memory of both trainers on the same batch.

What each trainer sees (same rows, same fixed completions, so the language model does the same work):
- DGRPO (`build_dgrpo_trainer`): the project's own rollout encoding of a demo video prompt sampled at the RL
  frame budget (`--frames` at 2 fps, at most 64 visual tokens per pair of frames), once before timing, with a
  fixed engine whose completions are exactly `--completion-tokens` ids; every step forwards the video tensors in
  the reference and policy passes, as in training.
- TRL GRPO (`build_plain_grpo_trainer`, TRL's own trainer): TRL cannot take a video (docs/design.md, "TRL's video
  gap"), so it gets the same prompt ids with each vision placeholder (`<|vision_start|>`, `<|video_pad|>`,
  `<|vision_end|>`) replaced by an ordinary text token: the same sequence length through the language model,
  without the vision tower. The DGRPO/TRL ratios are therefore the price of seeing the video.
Generation is not timed in either (both get fixed completions, as in `bench/train_step.py`, whose helpers this
reuses); a step is rewards, advantages, the reference pass (beta 0.01), the loss, its backward with gradient
checkpointing, gradient clipping and one optimizer step. Each trainer runs a warm-up step and then `--steps` timed
steps (median), one trainer at a time with the GPU memory freed in between; peak memory is
`torch.cuda.max_memory_allocated` over the timed steps (reset after the warm-up, so it includes the optimizer
state the warm-up created).

Memory: the policy is held in bf16 (the issue's setting; the project's trainer loads fp32 master weights, see
`train.modeling.load_model`, which with AdamW would need ~60 GB of states for 3.75B parameters). Qwen2.5-VL-3B has
~3.75B parameters (3.09B language model with tied embeddings, 0.67B vision tower, frozen as VITAL does). Weights
7.5 GB + the reference model 7.5 GB + gradients of the 3.09B trainable ~6.2 GB + AdamW's two moments (torch keeps
them in the parameter dtype, bf16: ~12.4 GB; fp32 moments would be ~25 GB, the ~36 GB of a 3B x (2+2+8) estimate)
gives ~34 GB before activations: it fits an 80 GB H100. `--optim sgd` (one momentum buffer) saves ~6 GB.

The model: Qwen2.5-VL-3B-Instruct's published config.json values, as remembered (QWEN2_5_VL_3B below; not
re-checked against a download), on the project's tiny checkpoint's config, whose special-token ids match the tiny
checkpoint's tokenizer and processor (`model/tiny_checkpoint.py`: the real processor geometry and special tokens, a
small BPE vocabulary of ~450 ids, all below the 3B vocabulary of 151936). The text tokens are the tiny tokenizer's,
so a sentence has more tokens than with the real one; the token counts are fixed here, so the work is not affected.
The random checkpoint is built directly on `--device` in bf16 and saved under `--workdir` once (reused when its
marker matches), because TRL builds the reference model by loading the policy's path.

Run from the repository root after `make demo` (a GPU run: bench/gpu/run_train_step.sh):
    .venv/bin/python bench/gpu_train_step.py --shape 3b --device cuda --frames 64 [--out results.json]
    .venv/bin/python bench/gpu_train_step.py --shape tiny --device cpu --frames 4   # the CPU smoke test
The last line printed is the results as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from train_step import demo_config, install_generation, prepare, run_step  # noqa: E402

from model.engine_api import Completion, GenerationRequest  # noqa: E402
from train.dgrpo import build_dgrpo_trainer, build_plain_grpo_trainer  # noqa: E402
from train.modeling import load_model  # noqa: E402

#: Qwen2.5-VL-3B-Instruct's config.json (the published one, as remembered; not re-checked against a download).
#: Token ids are not here: they come from the tiny checkpoint's config, to match its tokenizer.
QWEN2_5_VL_3B: dict[str, Any] = {
    "tie_word_embeddings": True,
    "text_config": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"mrope_section": [16, 24, 24], "rope_theta": 1000000.0, "rope_type": "default"},
        "layer_types": ["full_attention"] * 36,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "hidden_act": "silu",
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "out_hidden_size": 2048,
        "intermediate_size": 3420,
        "num_heads": 16,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "hidden_act": "silu",
        "in_channels": 3,
    },
}

#: The placeholders TRL's prompt has replaced by a text token (it cannot be given the video behind them).
VISION_TOKENS = ("<|vision_start|>", "<|video_pad|>", "<|vision_end|>", "<|image_pad|>")

#: Completion bodies (think, then answer): the ids are padded inside <think> to the requested length.
ANSWERS = ("A", "B", "A", "C")


def model_config(shape: str, tiny: Path) -> dict[str, Any]:
    """The tiny checkpoint's config (token ids that match its tokenizer), with the 3B sizes over it for "3b"."""
    config = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    config.pop("dtype", None)
    if shape == "3b":
        config["tie_word_embeddings"] = QWEN2_5_VL_3B["tie_word_embeddings"]
        for part in ("text_config", "vision_config"):
            config[part] = {**config[part], **QWEN2_5_VL_3B[part]}
    return config


def random_checkpoint(shape: str, tiny: Path, workdir: Path, device: str) -> Path:
    """A folder with a random-weight model of `shape` in bf16 and the tiny checkpoint's processor.

    Built on `device` directly in bf16 (no fp32 copy on the CPU: 15 GB for the 3B shape) and saved, because TRL
    builds the reference model by loading the policy's path. Reused when its marker says the same config."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config_dict = model_config(shape, tiny)
    out = workdir / f"qwen2_5_vl_{shape}_random"
    marker = out / "bench_marker.json"
    want = json.dumps(config_dict, sort_keys=True)
    if marker.is_file() and marker.read_text(encoding="utf-8") == want:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config_dict, indent=2), encoding="utf-8")
    config = AutoConfig.from_pretrained(out)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(tiny).save_pretrained(out)
    del model
    free(device)
    marker.write_text(want, encoding="utf-8")
    return out


@dataclass
class FixedEngine:
    """An engine whose every completion is `length - 1` fixed ids (the rollout encoding adds `<|im_end|>`), so
    every row has exactly `length` completion tokens and a well-formed answer."""

    tokenizer: Any
    length: int
    name: str = "fixed"
    model: str = "fixed"

    def ids(self, index: int) -> list[int]:
        tok = self.tokenizer
        head = tok("<think>")["input_ids"]
        tail = tok(f"</think><answer>{ANSWERS[index % len(ANSWERS)]}</answer>")["input_ids"]
        filler = tok(" The clip shows it again.")["input_ids"]
        room = self.length - 1 - len(head) - len(tail)
        if room < 0:
            raise ValueError(f"--completion-tokens must be at least {len(head) + len(tail) + 1}")
        return head + (filler * (room // len(filler) + 1))[:room] + tail

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        out = []
        for request in requests:
            group = []
            for i in range(request.settings.n):
                ids = self.ids(i)
                group.append(Completion(self.tokenizer.decode(ids), "stop", 0, len(ids), token_ids=ids))
            out.append(group)
        return out

    async def aclose(self) -> None:
        return None


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def enable_checkpointing(model: Any) -> None:
    """What `Trainer.train()` does for `gradient_checkpointing: true` (the bench never calls train())."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def video_rows(trainer: Any, frames: int, fps: float, batch: int, generations: int) -> list[dict[str, Any]]:
    """`batch // generations` video rows long enough for `frames` frames at `fps`, each repeated G times."""
    dataset = trainer.train_dataset
    need = frames / fps
    prompts = batch // generations
    picked = [dict(r) for r in dataset if r["modality"] == "video" and float(r["duration"] or 0) >= need][:prompts]
    if len(picked) < prompts:
        raise SystemExit(f"the demo has too few video rows of >= {need:.0f} s for {frames} frames")
    return [r for r in picked for _ in range(generations)]


def measure(trainer: Any, rows: list[dict[str, Any]], steps: int, device: str) -> tuple[list[float], float | None]:
    """Warm-up step, then `steps` timed steps (forward, backward, clip, optimizer step); returns the step seconds
    and the peak GiB allocated over the timed steps (None off CUDA)."""
    prepare(trainer)
    enable_checkpointing(trainer.model)
    model = trainer.model
    if not getattr(model, "is_activation_checkpointing", getattr(model, "is_gradient_checkpointing", False)):
        raise RuntimeError("activation checkpointing did not turn on")
    optimizer = trainer.create_optimizer()
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def one() -> float:
        sync(device)
        started = time.perf_counter()
        run_step(trainer, rows)
        torch.nn.utils.clip_grad_norm_(params, trainer.args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - started

    one()  # warm-up: kernels, allocator, the optimizer's state
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = [one() for _ in range(steps)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return times, peak


def release(trainer: Any, device: str) -> None:
    """Drop a trainer and everything it holds on the device before the next one is built."""
    trainer.accelerator.free_memory()
    trainer.optimizer = None
    trainer.model = trainer.model_wrapped = trainer.ref_model = None
    free(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo", help="the `make demo` output folder")
    parser.add_argument("--shape", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=64, help="the RL frame budget's max_frames (2 fps)")
    parser.add_argument("--completion-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="rows a step (DGRPO's per_device_train_batch_size)")
    parser.add_argument("--generations", type=int, default=8, help="G (DGRPO's default)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per trainer, after one warm-up")
    parser.add_argument("--optim", choices=("adamw_torch", "sgd"), default="adamw_torch")
    parser.add_argument("--workdir", default="/tmp/mtvr-gpu-bench", help="where the random checkpoint is saved")
    parser.add_argument("--out", help="also write the results JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda but torch sees no GPU (use --shape tiny --device cpu for the CPU smoke test)")
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    demo = Path(args.demo).resolve()
    if not (demo / "build" / "rl").is_dir():
        sys.exit(f"{demo}/build/rl not found: run `make demo` first")
    started = time.perf_counter()
    checkpoint = random_checkpoint(args.shape, demo / "tiny", Path(args.workdir), device)
    build_s = time.perf_counter() - started
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoint)
    config = demo_config(
        demo,
        checkpoint,
        {
            "per_device_train_batch_size": args.batch,
            "num_generations": args.generations,
            "beta": 0.01,
            "optim": args.optim,
            "report_to": [],
            "gradient_checkpointing": True,
            "save_strategy": "no",
            "use_cpu": not device.startswith("cuda"),
        },
        frames={"max_frames": args.frames},
        output_dir=str(Path(args.workdir) / "run"),
    )
    budget = config.frame_budget()
    tok = processor.tokenizer

    def policy() -> Any:
        return load_model(str(checkpoint), dtype=torch.bfloat16, attn_implementation=config.attn_implementation)

    # DGRPO: the real rollout encoding of a video prompt, once, with fixed completions; then the timed steps.
    ours = build_dgrpo_trainer(config, model=policy(), processor=processor)
    rows = video_rows(ours, args.frames, budget.fps, args.batch, args.generations)
    batch = ours.rollouts(rows, FixedEngine(tok, args.completion_tokens))
    if not all(len(c) == args.completion_tokens for c in batch.completion_ids):
        raise SystemExit(f"completion lengths {sorted({len(c) for c in batch.completion_ids})} != requested")
    grids = [m["video_grid_thw"] for m in batch.media if "video_grid_thw" in m]
    if len(grids) != len(rows):
        raise SystemExit("the rollout encoding gave rows without a video")
    frames_seen = int(grids[0][:, 0].sum()) * processor.video_processor.temporal_patch_size
    placeholder = {tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    video_tokens = sum(i in placeholder for i in batch.prompt_ids[0])
    texts = [tok.decode(c) for c in batch.completion_ids]
    install_generation(
        ours, batch.prompt_ids, batch.completion_ids, texts, tool_mask=batch.tool_mask, media=batch.media
    )
    params = sum(p.numel() for p in ours.model.parameters())
    trainable = sum(p.numel() for p in ours.model.parameters() if p.requires_grad)
    times = {"dgrpo": measure(ours, rows, args.steps, device)}
    release(ours, device)
    del ours

    # TRL GRPO: the same ids with the vision placeholders as text, no media.
    filler = tok(" the")["input_ids"][0]
    text_prompts = [[filler if i in placeholder else i for i in p] for p in batch.prompt_ids]
    plain = build_plain_grpo_trainer(config, model=policy(), processor=processor)
    install_generation(plain, text_prompts, batch.completion_ids, texts, tool_mask=batch.tool_mask)
    times["trl_grpo"] = measure(plain, rows, args.steps, device)
    release(plain, device)

    tokens = sum(len(p) + len(c) for p, c in zip(batch.prompt_ids, batch.completion_ids, strict=True))
    completion = sum(len(c) for c in batch.completion_ids)
    table = []
    for name, (seconds, peak) in times.items():
        median = statistics.median(seconds)
        table.append(
            {
                "trainer": name,
                "step_s": round(median, 4),
                "step_s_all": [round(s, 4) for s in seconds],
                "tokens_per_s": round(tokens / median, 1),
                "completion_tokens_per_s": round(completion / median, 1),
                "peak_gib": None if peak is None else round(peak, 2),
            }
        )
    ours_row, trl_row = table
    ratios = {
        "step_s": round(ours_row["step_s"] / trl_row["step_s"], 3),
        "tokens_per_s": round(ours_row["tokens_per_s"] / trl_row["tokens_per_s"], 3),
        "peak_gib": None if trl_row["peak_gib"] is None else round(ours_row["peak_gib"] / trl_row["peak_gib"], 3),
    }
    result = {
        "shape": args.shape,
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
        "dtype": "bfloat16",
        "optim": args.optim,
        "params": params,
        "trainable_params": trainable,
        "rows": table,
        "ratios_dgrpo_over_trl": ratios,
        "batch": {
            "rows": len(rows),
            "generations": args.generations,
            "frames": frames_seen,
            "video_tokens_per_row": video_tokens,
            "prompt_tokens_per_row": len(batch.prompt_ids[0]),
            "completion_tokens_per_row": args.completion_tokens,
            "tokens_per_step": tokens,
        },
        "checkpoint_build_s": round(build_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "versions": {"torch": torch.__version__, **_versions()},
    }
    print(f"{args.shape} policy ({params / 1e9:.2f}B params, {trainable / 1e9:.2f}B trainable), {result['device']}")
    print(
        f"batch: {len(rows)} rows x ({len(batch.prompt_ids[0])} prompt tokens, {video_tokens} of them video "
        f"from {frames_seen} frames, + {args.completion_tokens} completion tokens)"
    )
    print(f"{'trainer':<10} {'step s':>9} {'tokens/s':>10} {'peak GiB':>9}")
    for row in table:
        peak = "n/a" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        print(f"{row['trainer']:<10} {row['step_s']:>9.3f} {row['tokens_per_s']:>10.1f} {peak:>9}")
    peak_ratio = "n/a" if ratios["peak_gib"] is None else f"{ratios['peak_gib']:.3f}"
    print(f"{'DGRPO/TRL':<10} {ratios['step_s']:>9.3f} {ratios['tokens_per_s']:>10.3f} {peak_ratio:>9}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))


def _versions() -> dict[str, str]:
    import transformers
    import trl

    return {"transformers": transformers.__version__, "trl": trl.__version__}


if __name__ == "__main__":
    main()
