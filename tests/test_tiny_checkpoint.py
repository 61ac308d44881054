"""The tiny Qwen2.5-VL checkpoint loads and runs like the real one, offline and reproducibly.

The checkpoint is built once per module (about 0.3 s once torch/transformers are imported); the model, tokenizer
and processor are loaded once and shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
jinja2 = pytest.importorskip("jinja2")

from model.tiny_checkpoint import (  # noqa: E402  (after the importorskip guards)
    MARKER_FILE,
    QWEN2_5_VL_ADDED_TOKENS,
    build_tiny_checkpoint,
    load_chat_template,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_FILE = REPO_ROOT / "model" / "templates" / "qwen2_5_vl_chat_template.jinja"
VIDEO_BLOCK = "<|vision_start|><|video_pad|><|vision_end|>"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "qwen2_5_vl_tiny")


@pytest.fixture(scope="module")
def model(ckpt: Path) -> Any:
    return transformers.AutoModelForImageTextToText.from_pretrained(ckpt).eval()


@pytest.fixture(scope="module")
def tokenizer(ckpt: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(ckpt)


@pytest.fixture(scope="module")
def processor(ckpt: Path) -> Any:
    return transformers.AutoProcessor.from_pretrained(ckpt)


def _tiny_video(frames: int = 4, side: int = 56) -> np.ndarray:
    """(T, H, W, C) uint8, the layout decord / qwen-vl-utils frame arrays have."""
    return np.random.default_rng(7).integers(0, 256, size=(frames, side, side, 3), dtype=np.uint8)


def _video_inputs(processor: Any) -> Any:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens first?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # No resampling: do_sample_frames=False (also the saved default). The frame rate reaches the model only through
    # video_metadata (a bare `fps=` is ignored when not sampling); it sets second_per_grid_ts = 2 frames / fps.
    return processor(
        text=[text],
        videos=[_tiny_video()],
        video_metadata=[{"fps": 2.0, "total_num_frames": 4}],
        do_sample_frames=False,
        return_tensors="pt",
    )


# --- files, size, determinism ---------------------------------------------------------------------------------


def test_layout_and_size(ckpt: Path) -> None:
    files = _digests(ckpt)
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
        MARKER_FILE,
    ):
        assert name in files, name
    total = sum(path.stat().st_size for path in ckpt.rglob("*") if path.is_file())
    assert 100_000 < total < 5_000_000, total
    assert (ckpt / "chat_template.jinja").read_text(encoding="utf-8") == TEMPLATE_FILE.read_text(encoding="utf-8")


def test_rebuild_is_byte_identical_and_seed_only_changes_weights(ckpt: Path, tmp_path: Path) -> None:
    again = build_tiny_checkpoint(tmp_path / "again")
    assert _digests(again) == _digests(ckpt)
    # Rebuilding over an earlier tiny checkpoint replaces it and gives the same bytes.
    assert _digests(build_tiny_checkpoint(again)) == _digests(ckpt)

    other = _digests(build_tiny_checkpoint(tmp_path / "seed1", seed=1))
    first = _digests(ckpt)
    changed = {name for name in first if first[name] != other[name]}
    assert changed == {"model.safetensors", MARKER_FILE}


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):
        build_tiny_checkpoint(tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_offline_load_and_build_in_a_fresh_process(ckpt: Path, tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 and sockets disabled: loading never reaches for the network, and a build made by another
    interpreter (another PYTHONHASHSEED) has the same bytes."""
    script = textwrap.dedent(
        """
        import hashlib, json, socket, sys
        from pathlib import Path

        def _no_network(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = _no_network
        socket.create_connection = _no_network

        import torch
        from transformers import (
            AutoModelForImageTextToText, AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration,
        )
        from model.tiny_checkpoint import build_tiny_checkpoint

        ckpt, fresh = Path(sys.argv[1]), Path(sys.argv[2])
        model = AutoModelForImageTextToText.from_pretrained(ckpt)
        Qwen2_5_VLForConditionalGeneration.from_pretrained(ckpt)
        tokenizer = AutoTokenizer.from_pretrained(ckpt)
        processor = AutoProcessor.from_pretrained(ckpt)
        ids = tokenizer("hello", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        build_tiny_checkpoint(fresh)
        digests = {
            str(p.relative_to(fresh)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(fresh.rglob("*")) if p.is_file()
        }
        print(json.dumps({
            "model": type(model).__name__,
            "tokenizer": type(tokenizer).__name__,
            "processor": type(processor).__name__,
            "finite": bool(torch.isfinite(logits).all()),
            "digests": digests,
        }))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="12345")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", script, str(ckpt), str(tmp_path / "fresh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["model"] == "Qwen2_5_VLForConditionalGeneration"
    assert report["tokenizer"] == "Qwen2Tokenizer"
    assert report["processor"] == "Qwen2_5_VLProcessor"
    assert report["finite"] is True
    assert report["digests"] == _digests(ckpt)


# --- config, tokenizer ----------------------------------------------------------------------------------------


def test_config_points_at_the_tokenizer_ids(model: Any, tokenizer: Any) -> None:
    cfg = model.config
    assert type(cfg).__name__ == "Qwen2_5_VLConfig"

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    assert cfg.image_token_id == tid("<|image_pad|>")
    assert cfg.video_token_id == tid("<|video_pad|>")
    assert cfg.vision_start_token_id == tid("<|vision_start|>")
    assert cfg.vision_end_token_id == tid("<|vision_end|>")
    assert cfg.text_config.eos_token_id == tid("<|im_end|>") == tokenizer.eos_token_id
    assert cfg.text_config.pad_token_id == tid("<|endoftext|>") == tokenizer.pad_token_id
    assert cfg.text_config.bos_token_id == tid("<|endoftext|>")
    assert model.generation_config.eos_token_id == [tid("<|im_end|>"), tid("<|endoftext|>")]
    assert cfg.text_config.vocab_size >= len(tokenizer)
    vision = cfg.vision_config
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (14, 2, 2)
    assert vision.out_hidden_size == cfg.text_config.hidden_size


def test_tokenizer_has_the_real_added_tokens_in_order(tokenizer: Any) -> None:
    ids = [tokenizer.convert_tokens_to_ids(content) for content, _ in QWEN2_5_VL_ADDED_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(QWEN2_5_VL_ADDED_TOKENS)))
    assert ids[-1] == len(tokenizer) - 1
    decoder = tokenizer.added_tokens_decoder
    for (content, special), token_id in zip(QWEN2_5_VL_ADDED_TOKENS, ids, strict=True):
        assert decoder[token_id].content == content
        assert decoder[token_id].special is special, content
        assert tokenizer(content, add_special_tokens=False)["input_ids"] == [token_id]
    assert tokenizer.bos_token is None
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.model_max_length == 131072


def test_tokenizer_pipeline_matches_qwen2() -> None:
    """The BPE merges are learned on Qwen2's pre-tokenisation; if transformers changes it, the copy must follow."""
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from model import tiny_checkpoint

    assert tiny_checkpoint._QWEN2_PRETOKENIZE_REGEX == PRETOKENIZE_REGEX


@pytest.mark.parametrize(
    "text",
    [
        "<think>x</think><answer>B</answer>",
        '<tool_call>\n{"name": "crop_video", "arguments": {"start_time": 1.5, "end_time": 12.0}}\n</tool_call>',
        "Ответ: 42 — 12:05.5 → [0, 1, 2]\t😀 and 中文 ¿qué?\r\n",
        '{"a": [1, 2.5e-3, null, true], "b": "c\\"d"}',
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Why?<|im_end|>\n",
    ],
)
def test_tokenizer_round_trips(tokenizer: Any, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    if "<tool_call>" in text:  # not a special token in Qwen2.5-VL: kept even when special tokens are skipped
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


# --- chat template ---------------------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "crop_video",
            "description": "Return the frames between two timestamps.",
            "parameters": {
                "type": "object",
                "properties": {"start_time": {"type": "number"}, "end_time": {"type": "number"}},
                "required": ["start_time", "end_time"],
            },
        },
    }
]
CONVERSATION = [
    {"role": "system", "content": "You are a careful video analyst."},
    {
        "role": "user",
        "content": [{"type": "video", "video": "clip.mp4"}, {"type": "text", "text": "When does the door open?"}],
    },
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "crop_video", "arguments": {"start_time": 0, "end_time": 5}}}
        ],
    },
    {"role": "tool", "name": "crop_video", "content": '{"frames": 4}'},
]


def _render_directly(**variables: Any) -> str:
    """Render the vendored file with jinja2 itself, using the environment flags transformers uses."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(TEMPLATE_FILE.read_text(encoding="utf-8")).render(**variables)


def test_vendored_template_is_the_published_text() -> None:
    text = load_chat_template()
    assert text == TEMPLATE_FILE.read_text(encoding="utf-8")
    # The hash recorded for Qwen/Qwen2.5-VL-7B-Instruct@cc594898 (sha256 of the JSON-encoded string); see SOURCES.md.
    assert hashlib.sha256(json.dumps(text).encode()).hexdigest() == (
        "4df95d05455c2a6f762616492bba63d0f9bef904ef47daabad35f5715d6d2e4e"
    )


def test_chat_template_renders_like_the_real_template(tokenizer: Any, processor: Any) -> None:
    rendered = tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert rendered == _render_directly(messages=CONVERSATION, tools=TOOLS, add_generation_prompt=True)
    assert rendered == processor.apply_chat_template(
        CONVERSATION, tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert rendered.startswith("<|im_start|>system\nYou are a careful video analyst.<|im_end|>\n")
    assert f"<|im_start|>user\n{VIDEO_BLOCK}When does the door open?<|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    # Pinned on purpose: Qwen2.5-VL's published template has no tool support. `tools` is ignored, the assistant's
    # tool_calls are dropped and the tool turn is a plain `tool` role; tool-calling data needs its own template.
    for marker in ("<tools>", "<tool_call>", "<tool_response>"):
        assert marker not in rendered
    assert "<|im_start|>assistant\n<|im_end|>\n" in rendered
    assert '<|im_start|>tool\n{"frames": 4}<|im_end|>\n' in rendered


def test_chat_template_default_system_prompt_and_vision_ids(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Compare."}]}
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_vision_id=True)
    assert rendered == _render_directly(messages=messages, add_vision_id=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"Picture 1: <|vision_start|><|image_pad|><|vision_end|>Video 1: {VIDEO_BLOCK}Compare.<|im_end|>\n"
    )


# --- processor and model -------------------------------------------------------------------------------------


def test_processor_video_inputs(processor: Any, model: Any) -> None:
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    for part in (processor.image_processor, processor.video_processor):
        assert (part.patch_size, part.temporal_patch_size, part.merge_size) == (14, 2, 2)
        assert list(part.image_mean) == [0.48145466, 0.4578275, 0.40821073]
        assert list(part.image_std) == [0.26862954, 0.26130258, 0.27577711]
    assert processor.video_processor.do_sample_frames is False

    inputs = _video_inputs(processor)
    # 4 frames of 56x56 -> 2 temporal x 4x4 patches of 14 px -> 32 patches of 3*2*14*14 values -> 8 merged tokens.
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert tuple(inputs["pixel_values_videos"].shape) == (32, 3 * 2 * 14 * 14)
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 8
    assert inputs["second_per_grid_ts"].tolist() == [1.0]


def test_forward_and_greedy_generate(processor: Any, model: Any) -> None:
    inputs = _video_inputs(processor)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert tuple(logits.shape) == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()

    first = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    second = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert torch.equal(first, second)
    assert torch.equal(first[:, :prompt_len], inputs["input_ids"])
    assert 1 <= first.shape[1] - prompt_len <= 5


def test_image_forward(processor: Any, model: Any) -> None:
    image = np.random.default_rng(3).integers(0, 256, size=(56, 84, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 6
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()
