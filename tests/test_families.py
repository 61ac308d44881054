"""Model families: the family comes from config.json, a frame budget keeps its tokens per frame on every family, and
Qwen3-VL's frames, time text and tokens agree with qwen-vl-utils (`image_patch_size=16`) on the demo videos."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from model.families import DEFAULT_FAMILY, FAMILIES, QWEN2_5_VL, QWEN3_VL, family_for_checkpoint, get_family
from model.prompts import PromptConfig, system_text
from mtvr_data import demo_media
from mtvr_data.frames import FrameBudget, budget_fingerprint, sample_frames_with
from mtvr_data.tools import CLIP_BUDGET, default_tools

#: VITAL's budget in Qwen2.5-VL pixels (4 to 64 tokens a frame), qwen-vl-utils' frames exactly (no key-frame snap).
EXACT = FrameBudget(keyframe_snap=0.0, overlay=False, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28)
#: The decoder's scaling against qwen-vl-utils' torchvision resize, mean |difference| over a video in 0-255 levels:
#: measured 0.2-1.3 on these files at 28-pixel sides (docs/model.md); the bound leaves room for 32-pixel sides.
DECODER_MEAN_LEVELS = 3.0


@pytest.fixture(scope="module")
def tiny_qwen3_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.tiny_checkpoint import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen3_vl") / "tiny", family="qwen3_vl")


# --- which family ---------------------------------------------------------------------------------------------


def test_family_comes_from_model_type_never_from_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "Qwen2.5-VL-looking-name"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert family_for_checkpoint(folder) is QWEN3_VL
    assert family_for_checkpoint(folder / "config.json") is QWEN3_VL
    assert family_for_checkpoint({"model_type": "qwen2_5_vl"}) is QWEN2_5_VL
    assert family_for_checkpoint({"model_type": "qwen3_5"}).factor == 32
    with pytest.raises(ValueError, match="unknown model family 'llava'"):
        family_for_checkpoint({"model_type": "llava"})
    with pytest.raises(ValueError, match="no model_type"):
        family_for_checkpoint({})
    assert get_family(None) is DEFAULT_FAMILY is QWEN2_5_VL
    assert {"qwen2_5_vl", "qwen3_vl", "qwen3_5"} <= set(FAMILIES)


def test_tiny_qwen3_vl_checkpoint_is_the_real_classes_and_deterministic(tiny_qwen3_vl: Path, tmp_path: Path) -> None:
    import hashlib

    from transformers import AutoConfig, AutoProcessor

    from model.tiny_checkpoint import build_tiny_checkpoint

    def digests(root: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}

    assert digests(build_tiny_checkpoint(tmp_path / "again", family="qwen3_vl")) == digests(tiny_qwen3_vl)
    assert family_for_checkpoint(tiny_qwen3_vl) is QWEN3_VL
    config = AutoConfig.from_pretrained(tiny_qwen3_vl)
    assert config.architectures == ["Qwen3VLForConditionalGeneration"]
    assert config.vision_config.patch_size == 16 and config.vision_config.spatial_merge_size == 2
    processor = AutoProcessor.from_pretrained(tiny_qwen3_vl)
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert processor.chat_template == QWEN3_VL.chat_template()
    assert processor.tokenizer.convert_ids_to_tokens(len(processor.tokenizer) - 1) == "</think>"
    assert sum(p.stat().st_size for p in tiny_qwen3_vl.iterdir()) < 3_000_000


# --- budgets ----------------------------------------------------------------------------------------------------


def test_a_budget_is_tokens_per_frame_on_every_family() -> None:
    vital = FrameBudget()
    assert QWEN2_5_VL.frame_budget(vital) is vital
    q3 = QWEN3_VL.frame_budget(vital)
    assert (q3.factor, q3.min_pixels, q3.max_pixels, q3.overlay) == (32, 4 * 32 * 32, 64 * 32 * 32, False)
    assert QWEN3_VL.frame_budget(q3) is q3
    assert QWEN2_5_VL.tokens_per_frame(vital) == QWEN3_VL.tokens_per_frame(vital) == 64
    assert QWEN3_VL.frame_budget(CLIP_BUDGET).max_pixels == 64 * 32 * 32
    with pytest.raises(ValueError, match="factor"):
        FrameBudget(factor=0)


def test_qwen2_5_vl_cache_keys_are_unchanged() -> None:
    """The factor field is left out of Qwen2.5-VL budgets' keys, so existing builds keep their cache."""
    budget = FrameBudget()
    assert "factor" not in budget_fingerprint(budget)
    assert budget_fingerprint(budget) == {k: v for k, v in dataclasses.asdict(budget).items() if k != "factor"}
    assert budget_fingerprint(QWEN3_VL.frame_budget(budget))["factor"] == 32
    assert PromptConfig().fingerprint_inputs()["budget"] == budget_fingerprint(budget)


# --- the tool block ---------------------------------------------------------------------------------------------


def test_our_tool_block_is_what_the_qwen3_vl_template_renders_from_tools() -> None:
    """The system text carries the tool block on every family; on Qwen3-VL it renders byte for byte like the
    template's own `tools=` rendering, so a server that renders `tools` and this project agree."""
    from transformers.utils.chat_template_utils import render_jinja_template

    schemas = default_tools().schemas()
    ours = [
        {"role": "system", "content": [{"type": "text", "text": system_text(PromptConfig(tools=True), schemas)}]},
        {"role": "user", "content": [{"type": "text", "text": "Q"}]},
    ]
    plain = [{**ours[0], "content": [{"type": "text", "text": PromptConfig().system}]}, ours[1]]
    template = QWEN3_VL.chat_template()
    mine, _ = render_jinja_template([ours], chat_template=template, add_generation_prompt=True)
    theirs, _ = render_jinja_template([plain], chat_template=template, tools=schemas, add_generation_prompt=True)
    assert mine == theirs
    assert "<tools>\n{" in mine[0]


# --- against qwen-vl-utils on the demo corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_fetch():  # noqa: ANN201
    """qwen-vl-utils' `fetch_video` for Qwen3-VL (`image_patch_size=16`, `return_video_metadata=True`), decord."""
    os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
    from qwen_vl_utils import vision_process

    previous = vision_process.FORCE_QWENVL_VIDEO_READER
    vision_process.FORCE_QWENVL_VIDEO_READER = "decord"
    q3 = QWEN3_VL.frame_budget(EXACT)

    def fetch(path: Path) -> tuple[np.ndarray, dict]:
        element = {"video": str(path), "fps": 2.0, "min_frames": 4, "max_frames": 64}
        element |= {"min_pixels": q3.min_pixels, "max_pixels": q3.max_pixels}
        video, meta = vision_process.fetch_video(element, image_patch_size=16, return_video_metadata=True)
        pixels = video.permute(0, 2, 3, 1).numpy()
        assert np.array_equal(pixels, np.round(pixels))
        return pixels.astype(np.uint8), meta

    yield fetch
    vision_process.FORCE_QWENVL_VIDEO_READER = previous


def _decord_indices(path: Path, times: list[float]) -> list[int]:
    import decord

    reader = decord.VideoReader(str(path))
    starts = np.asarray(reader.get_frame_timestamp(np.arange(len(reader))))[:, 0]
    return [int(np.argmin(np.abs(starts - t))) for t in times]


@pytest.mark.parametrize(
    "spec",
    [demo_media.LONG_B, demo_media.R1_VP8, demo_media.CHARADES_B],
    ids=lambda spec: spec.file.rsplit("/", 1)[-1],
)
def test_qwen3_vl_frames_and_tokens_equal_qwen_vl_utils(
    demo_corpus: Path,
    qwen3_fetch,
    tiny_qwen3_vl: Path,
    spec,  # noqa: ANN001
) -> None:
    """Same frame count, size (32-pixel sides) and indices as qwen-vl-utils; `resize="reference"` gives its pixels
    exactly, the decoder's scaling is within DECODER_MEAN_LEVELS on average; and the processor builds the same
    tokens (time text included) and grid from our frames and metadata as from qwen-vl-utils' output."""
    from transformers import AutoProcessor

    from model.engines.media import processor_media

    path = demo_corpus / "videos" / spec.file
    pixels, meta = qwen3_fetch(path)
    budget = QWEN3_VL.frame_budget(dataclasses.replace(EXACT, resize="reference"))
    reference = sample_frames_with(path, budget=budget, backend="decord")
    assert len(reference.times) == len(meta["frames_indices"])
    assert _decord_indices(path, reference.times) == list(meta["frames_indices"])
    assert reference.frames.shape == pixels.shape
    assert pixels.shape[1] % 32 == 0 and pixels.shape[2] % 32 == 0
    assert np.array_equal(reference.frames, pixels)
    decoded = sample_frames_with(path, budget=QWEN3_VL.frame_budget(EXACT), backend="decord")
    assert decoded.times == reference.times and decoded.frames.shape == pixels.shape
    assert np.abs(decoded.frames.astype(np.int16) - pixels).mean() < DECODER_MEAN_LEVELS

    processor = AutoProcessor.from_pretrained(tiny_qwen3_vl)
    messages = [{"role": "user", "content": [{"type": "video", "video": reference}, {"type": "text", "text": "Q"}]}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    _, videos, metadata = processor_media(messages, QWEN3_VL)
    ours = processor(text=[text], return_tensors="pt", **QWEN3_VL.processor_call_kwargs([], videos, metadata))
    theirs = processor(
        text=[text],
        videos=[pixels],
        video_metadata=[meta],
        do_resize=False,
        do_sample_frames=False,
        return_tensors="pt",
    )
    assert ours["input_ids"].tolist() == theirs["input_ids"].tolist()
    assert ours["video_grid_thw"].tolist() == theirs["video_grid_thw"].tolist()
    assert ours["pixel_values_videos"].equal(theirs["pixel_values_videos"])
    rendered = processor.tokenizer.decode(ours["input_ids"][0])
    assert rendered.count("seconds>") == len(reference.times) // 2


def test_qwen3_vl_conversation_with_a_tool_clip_encodes_like_the_whole_and_runs(
    demo_corpus: Path, tiny_qwen3_vl: Path
) -> None:
    """The trainers' encoding (segment by segment, the family's metadata and fields) gives the processor's ids and
    media for the whole conversation, the tool turn is Qwen3-VL's `<tool_response>` user turn, and the tiny model
    takes the encoded fields in one forward pass."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from model.engines.media import processor_media, template_messages
    from model.prompts import assistant_turn, tool_turn
    from train.encoding import encode_conversation, mm_token_type_ids

    path = demo_corpus / "videos" / demo_media.CHARADES_B.file
    config = PromptConfig(tools=True, family="qwen3_vl", budget=FrameBudget(max_frames=4))
    video = sample_frames_with(path, budget=config.budget)
    clip = sample_frames_with(path, start=1.0, end=3.0, budget=config.clip_budget)
    assert video.frames.shape[1] % 32 == 0 and clip.frames.shape[2] % 32 == 0
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system_text(config, default_tools().schemas())}]},
        {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "What happens?"}]},
        assistant_turn('<think>Look.</think><tool_call>{"name": "get_video_clip_frame"}</tool_call>'),
        tool_turn(clip, "Video clip from 1.00 to 3.00 seconds."),
        assistant_turn("<think>Done.</think><answer>A</answer>"),
    ]
    processor = AutoProcessor.from_pretrained(tiny_qwen3_vl)
    encoded = encode_conversation(processor, messages, QWEN3_VL)
    text = processor.apply_chat_template(template_messages(messages), tokenize=False)
    assert "<|im_start|>user\n<tool_response>\n" in text
    images, videos, metadata = processor_media(messages, QWEN3_VL)
    whole = processor(text=[text], return_tensors="pt", **QWEN3_VL.processor_call_kwargs(images, videos, metadata))
    assert encoded.input_ids == whole["input_ids"][0].tolist()
    assert set(encoded.media) == {"pixel_values_videos", "video_grid_thw"}
    for name, tensor in encoded.media.items():
        assert tensor.equal(whole[name]), name
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3_vl)
    ids = torch.tensor([encoded.input_ids])
    with torch.no_grad():
        types = mm_token_type_ids(ids, processor)  # as the trainers pass it
        logits = model(
            input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types, **encoded.media
        ).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()


# --- Qwen3.5 ----------------------------------------------------------------------------------------------------


def test_tiny_qwen3_5_checkpoint_is_the_real_classes_and_runs_a_video_prompt_on_cpu(
    demo_corpus: Path, tiny_checkpoints
) -> None:
    """The tiny Qwen3.5 checkpoint loads as `Qwen3_5ForConditionalGeneration` with both kinds of layer (Gated DeltaNet
    linear attention on transformers' PyTorch kernels, and full attention), takes a video prompt built through the
    family (32-pixel frames, time text, no drawn stamp) in one forward pass, and generates."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from model.engines.media import processor_media, template_messages
    from model.families import QWEN3_5

    tiny = tiny_checkpoints("qwen3_5")
    assert family_for_checkpoint(tiny) is QWEN3_5 and QWEN3_5.tested_on_cpu
    config = AutoConfig.from_pretrained(tiny)
    assert config.architectures == ["Qwen3_5ForConditionalGeneration"]
    assert set(config.text_config.layer_types) == {"linear_attention", "full_attention"}
    processor = AutoProcessor.from_pretrained(tiny)
    assert type(processor).__name__ == "Qwen3VLProcessor" and processor.chat_template == QWEN3_5.chat_template()
    assert sum(p.stat().st_size for p in tiny.iterdir()) < 3_000_000

    prompt = PromptConfig(family="qwen3_5", budget=FrameBudget(max_frames=4))
    video = sample_frames_with(demo_corpus / "videos" / demo_media.CHARADES_B.file, budget=prompt.budget)
    assert video.frames.shape[1] % 32 == 0 and video.frames.shape[2] % 32 == 0 and not prompt.budget.overlay
    messages = [
        {"role": "system", "content": [{"type": "text", "text": system_text(prompt, None)}]},
        {"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "What happens?"}]},
    ]
    text = processor.apply_chat_template(template_messages(messages), tokenize=False, add_generation_prompt=True)
    images, videos, metadata = processor_media(messages, QWEN3_5)
    inputs = processor(text=[text], return_tensors="pt", **QWEN3_5.processor_call_kwargs(images, videos, metadata))
    assert set(QWEN3_5.media_fields) & set(inputs) == {"pixel_values_videos", "video_grid_thw"}
    assert processor.tokenizer.decode(inputs["input_ids"][0]).count("seconds>") == len(video.times) // 2
    model = AutoModelForImageTextToText.from_pretrained(tiny)
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 4
