"""A tiny, randomly initialised Qwen2.5-VL checkpoint that is built locally and offline.

Why this exists: the machines that run the tests and the demo cannot download model weights, yet the training and
inference code must be exercised against the *real* architecture and the *real* file layout of
``Qwen/Qwen2.5-VL-7B-Instruct`` (config classes, tokenizer special tokens, processor, chat template, vision
patching). :func:`build_tiny_checkpoint` writes such a checkpoint in well under a second of model work: same classes
(``Qwen2_5_VLForConditionalGeneration`` / ``Qwen2_5_VLConfig`` / ``Qwen2Tokenizer`` / ``Qwen2_5_VLProcessor`` with
``Qwen2VLImageProcessor`` and ``Qwen2VLVideoProcessor``), the real vision geometry (patch 14, temporal patch 2,
spatial merge 2, so 28-pixel frame sides work), the real special tokens in the real order, the real image
mean/std and pixel limits, and the real chat template (vendored in ``model/templates``), but with a few-MB model.

The output is deterministic: the same ``seed`` and the same library versions give the same bytes in every file, so
the checkpoint can be rebuilt anywhere instead of being shipped, and cached by content.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CHAT_TEMPLATE_RESOURCE",
    "MARKER_FILE",
    "QWEN2_5_VL_ADDED_TOKENS",
    "TinyModelSpec",
    "TINY_SPEC",
    "build_tiny_checkpoint",
    "load_chat_template",
]

#: Package-relative location of the vendored Qwen2.5-VL chat template (see ``model/templates/SOURCES.md``).
CHAT_TEMPLATE_RESOURCE: Final = "templates/qwen2_5_vl_chat_template.jinja"

#: Small provenance file written next to the HF files; also lets a rebuild recognise (and replace) its own output.
MARKER_FILE: Final = "tiny_checkpoint.json"

#: The added tokens of the real Qwen2.5-VL tokenizer, in id order (ids 151643..151664 there) with their
#: ``special`` flag. The tiny tokenizer appends them, in this order, right after its byte-level BPE vocabulary.
QWEN2_5_VL_ADDED_TOKENS: Final[tuple[tuple[str, bool], ...]] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# Qwen2's pre-tokenisation regex (transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX); kept here so the
# BPE merges are learned on exactly the pieces the saved tokenizer will produce.
_QWEN2_PRETOKENIZE_REGEX: Final = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Fixed training text for the tiny BPE. Its only job is to give the vocabulary some realistic multi-byte tokens
# (so decode paths that join tokens are exercised); every other string still tokenises byte by byte.
_BPE_CORPUS: Final = """\
You are a helpful assistant. Watch the video and answer the question.
<think>The person opens the door at 12.5 seconds, then walks to the table.</think><answer>B</answer>
<think>First, find when the dog appears. It appears between 3.0 and 7.5 seconds.</think><answer>3.0-7.5</answer>
Question: What does the man do after he picks up the cup? Options: (A) drinks (B) sits down (C) leaves (D) waves
The answer is (A). The event happens from 00:01:05 to 00:01:12 in the video.
<tool_call>
{"name": "crop_video", "arguments": {"start_time": 10.0, "end_time": 20.0}}
</tool_call>
<tool_response>
{"frames": 8, "start_time": 10.0, "end_time": 20.0}
</tool_response>
{"name": "get_frames", "arguments": {"timestamps": [0.5, 1.0, 1.5, 2.0]}}
Describe this video. A woman is cooking in the kitchen; she cuts the vegetables and puts them in the pan.
Temporal grounding: the query "a person turns on the light" starts at 4 seconds and ends at 9 seconds.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 45 60 90 100 120 180 300 600 1000
The the THE and And to of in on at is are was were it this that with for from by as be or not
"""
_BPE_NUM_MERGES: Final = 256
#: With ``words`` (``build_tiny_checkpoint``): the words' share of the BPE training text and their extra merges.
_WORD_REPEATS: Final = 8
_WORD_MERGES: Final = 256


@dataclass(frozen=True)
class TinyModelSpec:
    """Sizes of the tiny model. Everything not listed here is the real Qwen2.5-VL-7B-Instruct value.

    The geometry that the processor and the vision tower must agree on (patch 14, temporal patch 2, spatial
    merge 2, window 112 px) is *not* configurable on purpose: it is what makes inputs prepared for the real model
    valid for the tiny one.
    """

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    mrope_section: tuple[int, int, int] = (2, 3, 3)  # sums to head_dim / 2 = 64 / 4 / 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_depth: int = 2
    vision_num_heads: int = 2
    vision_fullatt_block_indexes: tuple[int, ...] = (1,)  # real: every 8th block ([7, 15, 23, 31] of 32)
    vocab_pad_multiple: int = 64  # the real config pads 151665 tokens to 152064 embedding rows


TINY_SPEC: Final = TinyModelSpec()


def load_chat_template() -> str:
    """Return the vendored Qwen2.5-VL chat template text, byte-identical to the published one."""
    return resources.files("model").joinpath(CHAT_TEMPLATE_RESOURCE).read_text(encoding="utf-8")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character table, the alphabet of every byte-level BPE (Qwen's included)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _learn_bpe(pieces: Iterable[str], num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn byte-level BPE merges with a fully deterministic tie-break (count, then the pair itself).

    Done in plain Python rather than with ``tokenizers.trainers.BpeTrainer`` because the Rust trainer breaks ties
    between equally frequent pairs in hash-map order, which would make the vocabulary (and so every file) vary
    between runs. Base tokens get ids 0..255 in byte order.
    """
    byte_chars = _bytes_to_unicode()
    vocab: dict[str, int] = {byte_chars[b]: b for b in range(256)}
    words: Counter[tuple[str, ...]] = Counter(tuple(piece) for piece in pieces if piece)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pair_counts: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best, best_count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if best_count < 2:
            break
        merged = best[0] + best[1]
        merges.append(best)
        vocab.setdefault(merged, len(vocab))
        new_words: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return vocab, merges


def _build_tokenizer(
    added_tokens: tuple[tuple[str, bool], ...] = QWEN2_5_VL_ADDED_TOKENS, words: tuple[str, ...] = ()
) -> Any:
    """Build a ``Qwen2Tokenizer`` with Qwen2's pipeline, a tiny BPE vocabulary and the real added tokens.

    ``words`` (none by default) are added to the BPE's training text, repeated and with ``_WORD_MERGES`` more merges,
    so that each becomes one token or a few: a model that must tell "red" from "green" in a few hundred steps (the
    demo's warm-up) learns faster from one token per word than from three letters.

    The pipeline (NFC normaliser, Qwen2 split regex + byte-level pre-tokeniser, byte-level decoder, BPE without
    unk/byte-fallback) is the one ``transformers`` gives ``Qwen2Tokenizer``; the special-token settings mirror the
    real ``tokenizer_config.json`` (eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos/unk, model_max_length 131072).
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    normalizer = normalizers.NFC()
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    text = _BPE_CORPUS + "".join(f" {' '.join(words)}\n" for _ in range(_WORD_REPEATS)) if words else _BPE_CORPUS
    pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]
    vocab, merges = _learn_bpe(pieces, _BPE_NUM_MERGES + (_WORD_MERGES if words else 0))

    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    for content, special in added_tokens:  # one at a time: ids follow this order exactly
        backend.add_tokens([AddedToken(content, special=special, normalized=False)])

    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[content for content, special in added_tokens[1:] if special],
        model_max_length=131072,
        errors="replace",
        split_special_tokens=False,
        clean_up_tokenization_spaces=False,
        add_prefix_space=False,
    )


def _build_processor(tokenizer: Any, chat_template: str) -> Any:
    """Assemble ``Qwen2_5_VLProcessor`` with image/video processors configured like the real preprocessor_config."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Real values: min_pixels 3136 (56*56), max_pixels 12845056 (14*14*4*16384), CLIP mean/std, bicubic (3).
    common: dict[str, Any] = {
        "size": {"shortest_edge": 3136, "longest_edge": 12845056},
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_convert_rgb": True,
    }
    image_processor = Qwen2VLImageProcessor(**common)
    # The real checkpoint ships no video_preprocessor_config.json; transformers derives the video processor from
    # preprocessor_config.json and gets the class defaults below (no frame sampling, 4..768 frames). Saving them
    # explicitly pins the behaviour instead of depending on the installed version's defaults.
    video_processor = Qwen2VLVideoProcessor(**common, do_sample_frames=False, min_frames=4, max_frames=768)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )


def _build_model(tokenizer: Any, spec: TinyModelSpec, seed: int) -> Any:
    """Instantiate the real ``Qwen2_5_VLForConditionalGeneration`` at tiny size with seeded random weights."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

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
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": spec.num_hidden_layers,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": list(spec.mrope_section),
        },
        "bos_token_id": endoftext,
        "eos_token_id": im_end,
        "pad_token_id": endoftext,
        "tie_word_embeddings": False,
    }
    vision_config: dict[str, Any] = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_heads,
        "hidden_act": "silu",
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "tokens_per_second": 2,
        "window_size": 112,
        "out_hidden_size": spec.hidden_size,
        "fullatt_block_indexes": list(spec.vision_fullatt_block_indexes),
        "initializer_range": 0.02,
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        tie_word_embeddings=False,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # seed locally: do not disturb the caller's global RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    # Ids only; sampling settings are left at library defaults so `generate()` is greedy unless asked otherwise.
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    return model


def _prepare_destination(out: Path) -> None:
    """Refuse to clobber anything but an empty directory or an earlier tiny checkpoint (recognised by its marker)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    entries = list(out.iterdir())
    if entries and not (out / MARKER_FILE).is_file():
        raise FileExistsError(
            f"{out} is not empty and does not hold a tiny checkpoint ({MARKER_FILE}); not touching it"
        )


def _install(tmp: Path, out: Path) -> None:
    """Move the freshly built files into ``out``, replacing an earlier tiny checkpoint there."""
    if out.exists():
        for entry in out.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in sorted(tmp.iterdir()):
            shutil.move(str(entry), out / entry.name)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), out)


def build_tiny_checkpoint(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    family: str = "qwen2_5_vl",
    spec: TinyModelSpec = TINY_SPEC,
    words: tuple[str, ...] = (),
) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint (model, tokenizer, processor, chat template) to ``out``.

    ``spec`` and ``words`` (Qwen2.5-VL only) change the sizes and add whole-word tokens to the tiny BPE (see
    ``_build_tokenizer``); the defaults give the checkpoint every test builds on, and the demo's warm-up asks for a
    wider model and its own words (``pipelines.demo``). Either way the bytes depend only on the arguments.

    ``family`` (a ``model_type``, ``model.families``): ``qwen2_5_vl`` (the default, described here), ``qwen3_vl``
    (``model.tiny_qwen3_vl``: the real Qwen3-VL classes, processor settings and template, same layout and rules) or
    ``qwen3_5`` (``model.tiny_qwen3_5``: the real Qwen3.5 classes, hybrid linear/full attention, its template).

    The directory loads offline with ``AutoModelForImageTextToText`` / ``Qwen2_5_VLForConditionalGeneration``,
    ``AutoTokenizer`` and ``AutoProcessor`` exactly like ``Qwen/Qwen2.5-VL-7B-Instruct``. ``out`` may be missing,
    empty, or an earlier tiny checkpoint (which is replaced); anything else raises ``FileExistsError``. Files are
    built in a temporary sibling directory first, so a failed build never leaves a half-written checkpoint.

    Returns the resolved path of ``out``.
    """
    out = Path(out).expanduser().resolve()
    if family != "qwen2_5_vl":
        if spec != TINY_SPEC or words:
            raise ValueError(f"spec and words apply to the qwen2_5_vl tiny checkpoint only, not {family!r}")
        from model.tiny_qwen3_5 import build_tiny_qwen3_5
        from model.tiny_qwen3_vl import build_tiny_qwen3_vl

        builders = {"qwen3_vl": build_tiny_qwen3_vl, "qwen3_5": build_tiny_qwen3_5}
        if family not in builders:
            raise ValueError(f"no tiny checkpoint for family {family!r}; available: qwen2_5_vl, {', '.join(builders)}")
        _prepare_destination(out)
        return builders[family](out, seed=seed)
    _prepare_destination(out)
    chat_template = load_chat_template()
    tokenizer = _build_tokenizer(words=words)
    processor = _build_processor(tokenizer, chat_template)
    model = _build_model(tokenizer, spec, seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        marker = {
            "what": "tiny randomly initialised Qwen2.5-VL checkpoint for offline tests (not a trained model)",
            "builder": "model.tiny_checkpoint.build_tiny_checkpoint",
            "seed": seed,
            "mirrors": "Qwen/Qwen2.5-VL-7B-Instruct",
            "chat_template": "model/templates/qwen2_5_vl_chat_template.jinja (see model/templates/SOURCES.md)",
            "spec": asdict(spec),
        }
        if words:  # only when asked for, so the default checkpoint's marker keeps its bytes
            marker["words"] = list(words)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
