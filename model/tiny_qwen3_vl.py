"""A tiny, randomly initialised Qwen3-VL checkpoint, built locally and offline (`mtvr tiny-model --family qwen3_vl`).

Why: as for Qwen2.5-VL (`model.tiny_checkpoint`), the code that serves Qwen3-VL must run against the real classes
and file layout of ``Qwen/Qwen3-VL-8B-Instruct`` without downloading weights: ``Qwen3VLForConditionalGeneration``
/ ``Qwen3VLConfig`` (interleaved M-RoPE, DeepStack), a ``Qwen2Tokenizer`` with Qwen3's added tokens in their real
order (Qwen2.5-VL's 22, then ``<tool_response>``, ``</tool_response>``, ``<think>``, ``</think>``), and a
``Qwen3VLProcessor`` with ``Qwen2VLImageProcessor`` and ``Qwen3VLVideoProcessor`` at the real geometry (patch 16,
temporal patch 2, merge 2: 32-pixel frame sides), the real mean/std (0.5) and pixel limits, and the vendored
Qwen3-VL chat template. The tokenizer's BPE is the Qwen2.5-VL tiny one's (same corpus and merges).

Deterministic like the Qwen2.5-VL one: the same seed and library versions give the same bytes in every file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from model.families import QWEN3_VL
from model.tiny_checkpoint import MARKER_FILE, QWEN2_5_VL_ADDED_TOKENS, _build_tokenizer, _install

__all__ = ["QWEN3_ADDED_TOKENS", "TINY_QWEN3_VL_SPEC", "TinyQwen3VLSpec", "build_tiny_qwen3_vl"]

#: Qwen3's added tokens in id order (151643..151668 in the real tokenizer): Qwen2.5's, then four more, not special.
QWEN3_ADDED_TOKENS: Final[tuple[tuple[str, bool], ...]] = (
    *QWEN2_5_VL_ADDED_TOKENS,
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)


@dataclass(frozen=True)
class TinyQwen3VLSpec:
    """Sizes of the tiny model; everything else is Qwen3-VL-8B-Instruct's. The geometry (patch 16, temporal patch 2,
    merge 2) is fixed: it is what makes inputs prepared for the real model valid for the tiny one."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    mrope_section: tuple[int, int, int] = (4, 2, 2)  # sums to head_dim / 2; real [24, 20, 20] of 64
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_depth: int = 2
    vision_num_heads: int = 2
    vision_num_position_embeddings: int = 64  # an 8 x 8 grid of learned positions (real: 48 x 48 = 2304)
    deepstack_visual_indexes: tuple[int, ...] = (0,)  # real [8, 16, 24] of 27 blocks
    vocab_pad_multiple: int = 64


TINY_QWEN3_VL_SPEC: Final = TinyQwen3VLSpec()


def _build_processor(tokenizer: Any, chat_template: str) -> Any:
    """``Qwen3VLProcessor`` configured like Qwen3-VL-8B-Instruct's preprocessor_config.json (images) and
    video_preprocessor_config.json (videos): patch 16, merge 2, temporal 2, mean/std 0.5, bicubic."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common: dict[str, Any] = {
        "patch_size": QWEN3_VL.patch_size,
        "temporal_patch_size": QWEN3_VL.temporal_patch_size,
        "merge_size": QWEN3_VL.merge_size,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 3,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
    }
    image_processor = Qwen2VLImageProcessor(**common, size={"shortest_edge": 65536, "longest_edge": 16777216})
    video_processor = Qwen3VLVideoProcessor(**common, size={"shortest_edge": 4096, "longest_edge": 25165824})
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )


def _build_model(tokenizer: Any, spec: TinyQwen3VLSpec, seed: int) -> Any:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    endoftext, im_end = tid("<|endoftext|>"), tid("<|im_end|>")
    vocab_rows = -(-len(tokenizer) // spec.vocab_pad_multiple) * spec.vocab_pad_multiple
    text_config: dict[str, Any] = {
        "vocab_size": vocab_rows,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": list(spec.mrope_section),
            "mrope_interleaved": True,
        },
        "bos_token_id": endoftext,
        "eos_token_id": im_end,
        "tie_word_embeddings": False,
    }
    vision_config: dict[str, Any] = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_heads,
        "hidden_act": "gelu_pytorch_tanh",
        "in_channels": 3,
        "patch_size": QWEN3_VL.patch_size,
        "spatial_merge_size": QWEN3_VL.merge_size,
        "temporal_patch_size": QWEN3_VL.temporal_patch_size,
        "out_hidden_size": spec.hidden_size,
        "num_position_embeddings": spec.vision_num_position_embeddings,
        "deepstack_visual_indexes": list(spec.deepstack_visual_indexes),
        "initializer_range": 0.02,
    }
    config = Qwen3VLConfig(text_config=text_config, vision_config=vision_config, **vision_token_ids(tokenizer))
    return seeded_model(Qwen3VLForConditionalGeneration, config, tokenizer, seed)


def vision_token_ids(tokenizer: Any) -> dict[str, Any]:
    """The multimodal token ids and the float32, untied settings every tiny Qwen3-family config takes."""

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    return {
        "image_token_id": tid("<|image_pad|>"),
        "video_token_id": tid("<|video_pad|>"),
        "vision_start_token_id": tid("<|vision_start|>"),
        "vision_end_token_id": tid("<|vision_end|>"),
        "tie_word_embeddings": False,
        "dtype": "float32",
    }


def seeded_model(model_cls: Any, config: Any, tokenizer: Any, seed: int) -> Any:
    """`model_cls(config)` initialised under `seed` without touching the caller's global RNG, in eval mode, with a
    generation config that stops at <|im_end|> or <|endoftext|>."""
    import torch
    from transformers import GenerationConfig

    endoftext = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    im_end = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    with torch.random.fork_rng(devices=[]):  # seed locally: do not disturb the caller's global RNG
        torch.manual_seed(seed)
        model = model_cls(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    return model


def write_tiny(out: Path, model: Any, processor: Any, marker: dict[str, Any]) -> Path:
    """Save `model` and `processor` with `marker` to `out`, built in a temporary sibling first, so a failed build
    leaves nothing half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_tiny_qwen3_vl(out: Path, *, seed: int = 0) -> Path:
    """Write the tiny Qwen3-VL checkpoint to ``out`` (already checked by the caller: missing, empty, or an earlier
    tiny checkpoint). Built in a temporary sibling first, so a failed build leaves nothing half-written."""
    spec = TINY_QWEN3_VL_SPEC
    tokenizer = _build_tokenizer(QWEN3_ADDED_TOKENS)
    processor = _build_processor(tokenizer, QWEN3_VL.chat_template())
    model = _build_model(tokenizer, spec, seed)
    marker = {
        "what": "tiny randomly initialised Qwen3-VL checkpoint for offline tests (not a trained model)",
        "builder": "model.tiny_qwen3_vl.build_tiny_qwen3_vl",
        "family": QWEN3_VL.name,
        "seed": seed,
        "mirrors": QWEN3_VL.mirrors,
        "chat_template": "model/templates/qwen3_vl_chat_template.jinja (see model/templates/SOURCES.md)",
        "spec": asdict(spec),
    }
    return write_tiny(out, model, processor, marker)
