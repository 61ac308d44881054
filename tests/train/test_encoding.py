"""Masks token for token: what SFT trains on and what DGRPO's tool_mask keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.engines.media import frame_array, iter_media, sample_fps, template_messages
from mtvr_data.frames import Frames
from train.data import cot_record, load_rows, sft_features, sft_messages
from train.encoding import EncodingError, check_template, encode_conversation, mm_token_type_ids


@pytest.fixture(scope="module")
def processor(demo_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(demo_dir / "tiny")


@pytest.fixture(scope="module")
def cot_rows(demo_dir: Path):
    return load_rows(str(demo_dir / "build"), "cot")


def _whole(processor, messages):
    """The processor's encoding of the whole conversation in one call (the reference)."""
    text = processor.apply_chat_template(template_messages(messages), tokenize=False)
    videos, images, meta = [], [], []
    for kind, frames in iter_media(messages):
        if kind == "video":
            videos.append(frame_array(frames))
            meta.append({"fps": sample_fps(frames), "total_num_frames": len(frames.frames)})
        else:
            images.append(frame_array(frames)[0])
    kwargs = {"videos": videos, "video_metadata": meta, "do_sample_frames": False} if videos else {}
    if images:
        kwargs["images"] = images
    return processor(text=[text], return_tensors="pt", **kwargs)


def _row(cot_rows, *, tools: bool, modality: str = "video"):
    for i in range(len(cot_rows)):
        row = cot_record(dict(cot_rows[i]))
        if row.tools == tools and row.sample.modality == modality:
            return row
    pytest.skip(f"demo has no CoT row with tools={tools} modality={modality}")


@pytest.mark.parametrize(("tools", "modality"), [(True, "video"), (False, "video"), (False, "image")])
def test_ids_and_media_equal_the_processor_on_the_whole_conversation(processor, cot_rows, demo_dir, tools, modality):
    row = _row(cot_rows, tools=tools, modality=modality)
    messages = sft_messages(row, demo_dir / "corpus" / "videos")
    encoded = encode_conversation(processor, messages)
    whole = _whole(processor, messages)
    assert encoded.input_ids == whole["input_ids"][0].tolist()
    for name, tensor in encoded.media.items():
        assert tensor.equal(whole[name]), name
    assert mm_token_type_ids(whole["input_ids"], processor).equal(whole["mm_token_type_ids"])
    assert encoded.num_videos == (2 if tools else 1 if modality == "video" else 0)


def test_trainable_tokens_are_exactly_the_assistant_turns_and_their_end_token(processor, cot_rows, demo_dir):
    row = _row(cot_rows, tools=True)
    messages = sft_messages(row, demo_dir / "corpus" / "videos")
    encoded = encode_conversation(processor, messages)
    tok = processor.tokenizer
    expected: list[int] = []
    for m in messages:
        if m["role"] == "assistant":
            expected += tok(m["content"][0]["text"] + "<|im_end|>")["input_ids"]
    trained = [t for t, keep in zip(encoded.input_ids, encoded.trainable, strict=True) if keep]
    assert trained == expected
    # Tool turns (their text and every clip vision token), system and user tokens are all masked.
    video_pad = tok.convert_tokens_to_ids("<|video_pad|>")
    assert all(not keep for t, keep in zip(encoded.input_ids, encoded.trainable, strict=True) if t == video_pad)
    header = tok("<|im_start|>assistant\n")["input_ids"]
    first = encoded.first_trainable()
    assert encoded.input_ids[first - len(header) : first] == header
    # Labels: -100 everywhere but the trainable tokens, which keep their ids.
    labels = sft_features(encoded, processor)["labels"].tolist()
    assert [x for x in labels if x != -100] == expected


def test_truncation_that_would_cut_media_is_refused(processor, cot_rows, demo_dir):
    row = _row(cot_rows, tools=True)
    encoded = encode_conversation(processor, sft_messages(row, demo_dir / "corpus" / "videos"))
    with pytest.raises(EncodingError, match="cut media"):
        sft_features(encoded, processor, max_length=encoded.first_trainable())
    end = len(encoded) - 3
    assert len(sft_features(encoded, processor, max_length=end)["input_ids"]) == end


def test_unknown_role_and_bad_media_raise_encoding_error(processor):
    with pytest.raises(EncodingError, match="role"):
        encode_conversation(processor, [{"role": "narrator", "content": [{"type": "text", "text": "x"}]}])
    bad = Frames(np.zeros((2, 28, 28), dtype=np.uint8), [0.0, 0.5], 2.0, 0.0, 1.0, "x.mp4")
    with pytest.raises(ValueError):
        encode_conversation(processor, [{"role": "user", "content": [{"type": "video", "video": bad}]}])


@pytest.mark.parametrize("video", ["broken_truncated.mp4", "no/such/video.mp4"])
def test_sft_rows_with_a_corrupt_or_missing_video_stop_with_the_reason(processor, cot_rows, demo_dir, video):
    """SFT data was verified when built: a video that cannot be read now is a broken setup and must stop the run."""
    from mtvr_data.frame_decode import FrameError
    from train.data import SftTransform

    row = dict(next(r for r in cot_rows if r["modality"] == "video"))
    batch = {k: [v] for k, v in {**row, "video": video}.items()}
    transform = SftTransform(processor, video_root=demo_dir / "corpus" / "videos")
    with pytest.raises(FrameError, match="video_truncated|video_unreadable|video_missing"):
        transform(batch)


def test_a_chat_template_that_cannot_be_cut_into_turns_is_refused_before_training(processor, tiny_checkpoints):
    """Qwen3.5's template refuses a prefix without a user turn (docs/model.md): the trainers stop before loading
    data, with the template's own reason; the templates the trainers do take pass."""
    from transformers import AutoProcessor

    check_template(processor)
    check_template(AutoProcessor.from_pretrained(tiny_checkpoints("qwen3_vl")))
    with pytest.raises(EncodingError, match="No user query found in messages"):
        check_template(AutoProcessor.from_pretrained(tiny_checkpoints("qwen3_5")))


def test_sft_rows_on_one_video_share_its_frames_and_give_what_an_uncached_pass_gives(processor, cot_rows, demo_dir):
    """The transform's frame cache: a second question on the same video is served from it (no second probe or
    decode), the features equal an uncached encoding, and a DataLoader worker's copy starts with no cache."""
    import pickle

    import torch

    from train.data import SftTransform

    row = dict(next(r for r in cot_rows if r["modality"] == "video" and not r["tools"]))
    batch = {k: [v, v] for k, v in row.items()}  # two rows, one video
    transform = SftTransform(processor, video_root=demo_dir / "corpus" / "videos")
    cached = transform(batch)
    stats = transform.cache.stats()
    assert stats["hits"] >= 1 and stats["opened"] == 1
    fresh = SftTransform(processor, video_root=demo_dir / "corpus" / "videos")({k: [v] for k, v in row.items()})
    for key, values in fresh.items():
        for got in cached[key]:
            assert torch.equal(got, values[0]) if isinstance(got, torch.Tensor) else got == values[0]
    assert pickle.loads(pickle.dumps(transform))._cache is None
