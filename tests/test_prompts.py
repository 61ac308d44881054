"""Prompt building: VITAL's words (docs/papers.md), tools on video rows only, Qwen2.5-VL's template token for token."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jinja2
import numpy as np
import pytest

from model.engines.media import iter_media, template_messages
from model.prompts import (
    PromptConfig,
    build_messages,
    replay_conversation,
    system_text,
    tool_turn,
    user_text,
)
from model.tiny_checkpoint import build_tiny_checkpoint, load_chat_template
from mtvr_data.frames import FrameBudget, Frames, sample_frames
from mtvr_data.schema import Clip, Message, Sample
from mtvr_data.tools import CLIP_BUDGET, default_tools


def frames(n: int = 4, side: int = 56) -> Frames:
    data = np.zeros((n, side, side, 3), dtype=np.uint8)
    return Frames(frames=data, times=[0.5 * i for i in range(n)], sample_fps=2.0, start=0.0, end=2.0, path="v.mp4")


def sample(**kw) -> Sample:
    base = dict(
        id="s1",
        source="nextgqa",
        task="mcq",
        modality="video",
        video="v.mp4",
        question="what does the man do after sitting down",
        options=["stand up", "wave", "eat"],
        answer="B",
        answer_type="letter",
        duration=33.4,
    )
    base.update(kw)
    return Sample(**base)


def test_user_turn_words():
    text = user_text(sample(), tools=False)
    lines = text.splitlines()
    assert lines[0] == "This is a video with duration 33.40 seconds."
    assert "<think>" in lines[1] and "<answer>" in lines[1]
    assert lines[2] == "what does the man do after sitting down"
    assert lines[3:6] == ["A. stand up", "B. wave", "C. eat"]
    assert "letter" in lines[6]
    tg = user_text(sample(task="tg", options=[], answer="", answer_type="span", span=[1.0, 2.0]), tools=True)
    assert "ONCE" in tg and "<tool_call>" in tg and "'S - E seconds'" in tg
    gqa = user_text(sample(task="gqa", span=[1.0, 2.0]), tools=False)
    assert "From S to E, <answer>" in gqa
    image = user_text(sample(modality="image", duration=None), tools=True)
    assert image.startswith("This is an image.") and "<tool_call>" not in image


def test_tools_only_on_video_rows():
    messages, schemas = build_messages(sample(), frames(), PromptConfig(tools=True))
    assert schemas == default_tools().schemas()
    system = messages[0]["content"][0]["text"]
    assert "<tools>" in system and json.dumps(schemas[0]) in system and "<tool_call>" in system
    assert messages[1]["content"][0]["type"] == "video"
    messages, schemas = build_messages(sample(modality="image", duration=None), frames(1), PromptConfig(tools=True))
    assert schemas is None and "<tools>" not in messages[0]["content"][0]["text"]
    assert messages[1]["content"][0]["type"] == "image"
    messages, schemas = build_messages(sample(), frames(), PromptConfig(tools=False))
    assert schemas is None and system_text(PromptConfig(), None) == messages[0]["content"][0]["text"]


def test_media_in_order():
    clip = frames(2)
    messages, _ = build_messages(
        sample(),
        frames(),
        PromptConfig(tools=True),
        history=[
            {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
            tool_turn(clip, "Video clip from 1.00 to 3.00 seconds."),
        ],
    )
    media = list(iter_media(messages))  # the order the engines hand media to the processor
    assert [kind for kind, _ in media] == ["video", "video"] and media[1][1] is clip


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(build_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))


def test_token_for_token_with_the_real_template(processor):
    """What the engines render equals Qwen2.5-VL's published template rendered directly, token for token."""
    history = [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "text",
                    "text": '<think>look</think><tool_call>{"name": '
                    '"get_video_clip_frame", "arguments": {"start_time": 1, "end_time": 3}}'
                    "</tool_call>",
                }
            ],
        },
        tool_turn(frames(2), "Video clip from 1.00 to 3.00 seconds."),
    ]
    messages, _ = build_messages(sample(), frames(), PromptConfig(tools=True), history=history)
    ours = processor.apply_chat_template(template_messages(messages), add_generation_prompt=True, tokenize=False)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers compiles chat templates
    reference = env.from_string(load_chat_template()).render(
        messages=template_messages(messages), add_generation_prompt=True
    )
    assert ours == reference
    tok = processor.tokenizer
    assert tok(ours)["input_ids"] == tok(reference)["input_ids"]
    assert ours.count("<|vision_start|><|video_pad|><|vision_end|>") == 2
    assert "<|im_start|>tool\n<|vision_start|>" in ours and ours.endswith("<|im_start|>assistant\n")
    assert "# Tools" in ours and "<tools>" in ours


def test_replay_rerenders_clips_from_their_spans(demo_corpus: Path):
    video = demo_corpus / "videos" / "DM0A1.mp4"
    recorded = [
        Message("assistant", "<think>a</think><tool_call>{}</tool_call>"),
        Message("tool", "Video clip from 4.00 to 9.00 seconds.", clip=Clip(4.0, 9.0, [])),
        Message("assistant", "<think>b</think><answer>B</answer>"),
    ]
    turns = replay_conversation(sample(), str(video), recorded)
    assert [t["role"] for t in turns] == ["assistant", "tool", "assistant"]
    clip = turns[1]["content"][0]["video"]
    expected = sample_frames(video, start=4.0, end=9.0, budget=CLIP_BUDGET)
    assert clip.times == expected.times and np.array_equal(clip.frames, expected.frames)
    assert turns[1]["content"][1]["text"] == "Video clip from 4.00 to 9.00 seconds."
    assert FrameBudget().max_frames == 64
    small = dataclasses.replace(CLIP_BUDGET, max_frames=4)
    fewer = replay_conversation(sample(), str(video), recorded, clip_budget=small)[1]["content"][0]["video"]
    assert len(fewer.times) == 4 and fewer.times == sample_frames(video, start=4.0, end=9.0, budget=small).times


def test_fingerprint_inputs_change_with_what_the_model_sees(monkeypatch):
    """Templates, tool schemas and budgets are all in the fingerprint input; the dict is plain JSON and stable."""
    import model.prompts as prompts
    from mtvr_data.tools import ToolRegistry, VideoClipTool

    base = PromptConfig().fingerprint_inputs()
    assert json.loads(json.dumps(base, allow_nan=False)) == base
    assert PromptConfig().fingerprint_inputs() == base
    assert base["clip_budget"]["max_frames"] == CLIP_BUDGET.max_frames
    assert base["templates"]["chat_template"] == load_chat_template()

    def changed(**kw) -> bool:
        return PromptConfig(**kw).fingerprint_inputs() != base

    assert changed(budget=FrameBudget(max_frames=8))
    assert changed(clip_budget=dataclasses.replace(CLIP_BUDGET, max_frames=4))
    assert changed(clip_budget=dataclasses.replace(CLIP_BUDGET, overlay=False))
    assert changed(system="You are terse.")

    class OtherClip(VideoClipTool):
        description = VideoClipTool.description + " Use it sparingly."

    assert PromptConfig().fingerprint_inputs(ToolRegistry.of([OtherClip()])) != base
    for name in ("WITH_TOOL", "THINK_ANSWER", "TOOL_BLOCK", "VIDEO_HEAD", "TG_QUESTION", "GQA_FORMAT"):
        with monkeypatch.context() as patch:
            patch.setattr(prompts, name, getattr(prompts, name) + " ")
            assert PromptConfig().fingerprint_inputs() != base, name
    with monkeypatch.context() as patch:
        patch.setattr(prompts, "ANSWER_FORMAT", {**prompts.ANSWER_FORMAT, "letter": "Just the letter."})
        assert PromptConfig().fingerprint_inputs() != base
    with monkeypatch.context() as patch:
        patch.setattr(prompts, "CLIP_CAPTION", "Clip {start:.1f}-{end:.1f} s.")
        assert PromptConfig().fingerprint_inputs() != base
    with monkeypatch.context() as patch:
        patch.setattr(prompts, "chat_template", lambda: load_chat_template() + "\n")
        assert PromptConfig().fingerprint_inputs() != base
