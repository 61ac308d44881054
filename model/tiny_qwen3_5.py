"""A tiny, randomly initialised Qwen3.5 checkpoint, built locally and offline (`mtvr tiny-model --family qwen3_5`).

Why: the serving and grading code must run against the real classes of ``Qwen/Qwen3.5-2B`` without downloading
weights, as for Qwen2.5-VL and Qwen3-VL: ``Qwen3_5ForConditionalGeneration`` / ``Qwen3_5Config`` (hybrid layers:
three Gated DeltaNet linear-attention layers then one full-attention layer, partial rotary 0.25 with interleaved
M-RoPE), and the ``Qwen3VLProcessor`` transformers 5.25 maps ``qwen3_5`` to, at the real geometry (patch 16,
temporal patch 2, merge 2), with the vendored Qwen3.5-2B chat template. On CPU the linear-attention layers run on
transformers' reference PyTorch kernels (no ``flash-linear-attention`` / ``causal-conv1d``): correct, and fast
enough at this size.

The tokenizer is the tiny Qwen3-VL one (``model.tiny_qwen3_vl``: the same BPE and Qwen3's added tokens); the real
Qwen3.5 vocabulary (248k) and its token ids differ, and the config's special-token ids are this tokenizer's.
Deterministic: the same seed and library versions give the same bytes in every file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from model.families import QWEN3_5
from model.tiny_checkpoint import _build_tokenizer
from model.tiny_qwen3_vl import QWEN3_ADDED_TOKENS, _build_processor, seeded_model, vision_token_ids, write_tiny

__all__ = ["TINY_QWEN3_5_SPEC", "TinyQwen3_5Spec", "build_tiny_qwen3_5"]


@dataclass(frozen=True)
class TinyQwen3_5Spec:  # noqa: N801 - the model's own spelling
    """Sizes of the tiny model; everything else is Qwen3.5's. Four text layers make one full period of the hybrid
    layout (3 linear-attention layers, then a full-attention one), so both kinds of layer run in every test."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 4
    full_attention_interval: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32  # x partial rotary 0.25 = 8 rotary dims, 4 frequencies (real 256 -> 32)
    mrope_section: tuple[int, int, int] = (2, 1, 1)  # sums to the 4 frequencies; real [11, 11, 10] of 32
    linear_conv_kernel_dim: int = 4
    linear_key_head_dim: int = 16
    linear_value_head_dim: int = 16
    linear_num_key_heads: int = 2
    linear_num_value_heads: int = 4
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_depth: int = 2
    vision_num_heads: int = 2
    vision_num_position_embeddings: int = 64  # an 8 x 8 grid of learned positions (real: 48 x 48 = 2304)
    vocab_pad_multiple: int = 64


TINY_QWEN3_5_SPEC: Final = TinyQwen3_5Spec()


def _build_model(tokenizer: Any, spec: TinyQwen3_5Spec, seed: int) -> Any:
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    endoftext, im_end = tid("<|endoftext|>"), tid("<|im_end|>")
    vocab_rows = -(-len(tokenizer) // spec.vocab_pad_multiple) * spec.vocab_pad_multiple
    layer_types = [
        "full_attention" if (i + 1) % spec.full_attention_interval == 0 else "linear_attention"
        for i in range(spec.num_hidden_layers)
    ]
    text_config: dict[str, Any] = {
        "vocab_size": vocab_rows,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "layer_types": layer_types,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim,
        "linear_conv_kernel_dim": spec.linear_conv_kernel_dim,
        "linear_key_head_dim": spec.linear_key_head_dim,
        "linear_value_head_dim": spec.linear_value_head_dim,
        "linear_num_key_heads": spec.linear_num_key_heads,
        "linear_num_value_heads": spec.linear_num_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000000.0,
            "partial_rotary_factor": 0.25,
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
        "patch_size": QWEN3_5.patch_size,
        "spatial_merge_size": QWEN3_5.merge_size,
        "temporal_patch_size": QWEN3_5.temporal_patch_size,
        "out_hidden_size": spec.hidden_size,
        "num_position_embeddings": spec.vision_num_position_embeddings,
        "initializer_range": 0.02,
    }
    config = Qwen3_5Config(text_config=text_config, vision_config=vision_config, **vision_token_ids(tokenizer))
    return seeded_model(Qwen3_5ForConditionalGeneration, config, tokenizer, seed)


def build_tiny_qwen3_5(out: Path, *, seed: int = 0) -> Path:
    """Write the tiny Qwen3.5 checkpoint to ``out`` (already checked by the caller: missing, empty, or an earlier
    tiny checkpoint). Built in a temporary sibling first, so a failed build leaves nothing half-written."""
    spec = TINY_QWEN3_5_SPEC
    tokenizer = _build_tokenizer(QWEN3_ADDED_TOKENS)
    processor = _build_processor(tokenizer, QWEN3_5.chat_template())
    model = _build_model(tokenizer, spec, seed)
    marker = {
        "what": "tiny randomly initialised Qwen3.5 checkpoint for offline tests (not a trained model)",
        "builder": "model.tiny_qwen3_5.build_tiny_qwen3_5",
        "family": QWEN3_5.name,
        "seed": seed,
        "mirrors": QWEN3_5.mirrors,
        "chat_template": "model/templates/qwen3_5_chat_template.jinja (see model/templates/SOURCES.md)",
        "spec": asdict(spec),
    }
    return write_tiny(out, model, processor, marker)
