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
    """The `mtvr` preset: this project's paraphrase (the default is `vital`, tested below)."""
    text = user_text(sample(), tools=False, preset="mtvr")
    lines = text.splitlines()
    assert lines[0] == "This is a video with duration 33.40 seconds."
    assert "<think>" in lines[1] and "<answer>" in lines[1]
    assert lines[2] == "what does the man do after sitting down"
    assert lines[3:6] == ["A. stand up", "B. wave", "C. eat"]
    assert "letter" in lines[6]
    tg = user_text(
        sample(task="tg", options=[], answer="", answer_type="span", span=[1.0, 2.0]), tools=True, preset="mtvr"
    )
    assert "ONCE" in tg and "<tool_call>" in tg and "'S - E seconds'" in tg
    gqa = user_text(sample(task="gqa", span=[1.0, 2.0]), tools=False, preset="mtvr")
    assert "From S to E, <answer>" in gqa
    image = user_text(sample(modality="image", duration=None), tools=True, preset="mtvr")
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
    for name in (
        "WITH_TOOL",
        "THINK_ANSWER",
        "TOOL_BLOCK",
        "VIDEO_HEAD",
        "TG_QUESTION",
        "GQA_FORMAT",
        "VITAL_THINK_GENERAL",
        "VITAL_THINK_GENERAL_TOOL",
        "VITAL_IMAGE_HEAD",
    ):
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


# --- the `vital` preset: VITAL's exact strings -----------------------------------------------------------------------

#: VITAL's templates as docs/papers.md quotes them (copied from VITAL's eval_prompts.py), written out here on their
#: own so a change to model/prompts.py cannot change what the test expects. "\x20\n" marks the trailing spaces.
VITAL_GENERAL = (
    "This is a video with duration {duration} seconds.\n"
    "You should first think the user's question step-by-step and then provides the user with the answer.\x20\n"
    "Note that there must be an answer for each question and you must answer it.\n"
    "Output your thought process within the <think> </think> tags, and output your answer within the <answer> "
    "</answer> tags,\n"
    "i.e., <think> ... </think><answer> ... </answer>.\n"
    "User Question:\x20\n"
    "{input_text}\n"
)
VITAL_TOOL = (
    "This is a video with duration {duration} seconds.\n"
    "You should first think the user's question step-by-step and then provides the user with the answer.\x20\n"
    "Note that there must be an answer for each question and you must answer it.\n"
    "# Instruction\n"
    "1. Output your thought process within the <think> </think> tags, and output your answer within the <answer> "
    "</answer> tags.\n"
    "2. You can call the provided tools ONCE to get more visual information within the <tool_call> </tool_call> "
    "tags.\x20\n"
    "3. When you get the tool result, you need to integrate your initial reasoning with the new visual evidence from "
    "the tool, think step-by-step again and provide the final answer.\x20\n"
    "# Output Format\n"
    "<think> ... </think> <tool_call> ... </tool_call> <think> ... </think> <answer> ... </answer>\n"
    "User Question:\x20\n"
    "{input_text}\n"
)

MCQ_TEXT = (
    "what does the man do after sitting down\nA. stand up\nB. wave\nC. eat\nAnswer with the option's letter only."
)
TG_TEXT = (
    'Find the moment in the video described by: "the man sits down"\n'
    "Answer with the start and end time of the moment, as 'S - E seconds'."
)
GQA_TEXT = (
    "what does the man do after sitting down\nA. stand up\nB. wave\nC. eat\n"
    "Answer as 'From S to E, <answer>', where S - E seconds is the moment that shows the evidence."
)
OPEN_TEXT = "why does the man wave\nAnswer with a short sentence."
NUMBER_TEXT = "how many people are in the room\nAnswer with a number."


def tg_sample(**kw) -> Sample:
    base = dict(
        task="tg", question="the man sits down", options=[], answer="", answer_type="span", span=[1.0, 2.0], **kw
    )
    return sample(**base)


VITAL_ROWS = [
    # (row, tools, template, duration as filled, input_text)
    pytest.param(sample(), False, VITAL_GENERAL, "33.4", MCQ_TEXT, id="mcq-no-tool"),
    pytest.param(sample(), True, VITAL_TOOL, "33.4", MCQ_TEXT, id="mcq-tool"),
    pytest.param(tg_sample(duration=120.0), False, VITAL_GENERAL, "120.0", TG_TEXT, id="grounding-no-tool"),
    pytest.param(tg_sample(duration=615.257), True, VITAL_TOOL, "615.26", TG_TEXT, id="grounding-tool"),
    pytest.param(sample(task="gqa", span=[1.0, 2.0]), False, VITAL_GENERAL, "33.4", GQA_TEXT, id="gqa-no-tool"),
    pytest.param(sample(task="gqa", span=[1.0, 2.0]), True, VITAL_TOOL, "33.4", GQA_TEXT, id="gqa-tool"),
    pytest.param(
        sample(task="open", question="why does the man wave", options=[], answer="hello", answer_type="text"),
        True,
        VITAL_TOOL,
        "33.4",
        OPEN_TEXT,
        id="open-tool",
    ),
    pytest.param(
        sample(task="open", question="how many people are in the room", options=[], answer="3", answer_type="number"),
        False,
        VITAL_GENERAL,
        "33.4",
        NUMBER_TEXT,
        id="number-no-tool",
    ),
]


@pytest.mark.parametrize(("row", "tools", "template", "duration", "input_text"), VITAL_ROWS)
def test_vital_preset_renders_vitals_strings_exactly(row, tools, template, duration, input_text):
    """The default preset's user turn is VITAL's THINK_GENERAL / THINK_GENERAL_TOOL, character for character, with
    the duration and the question (options and answer format included) put where VITAL's caller puts them."""
    expected = template.format(duration=duration, input_text=input_text)
    assert user_text(row, tools=tools) == expected
    assert user_text(row, tools=tools, preset="vital") == expected
    messages, schemas = build_messages(row, frames(), PromptConfig(tools=tools))
    assert messages[1]["content"][-1]["text"] == expected
    assert (schemas is not None) == tools


def test_vital_image_row_starts_with_this_is_an_image():
    """An image row: VITAL's first line is "This is an image."; no tools, so THINK_GENERAL's body."""
    row = sample(modality="image", duration=None)
    expected = "This is an image." + VITAL_GENERAL.format(duration="X", input_text=MCQ_TEXT).split("seconds.", 1)[1]
    assert user_text(row, tools=True) == expected
    messages, schemas = build_messages(row, frames(1), PromptConfig(tools=True))
    assert schemas is None and messages[1]["content"][-1]["text"] == expected


def test_vital_templates_match_the_quoted_docs():
    """model/prompts.py's VITAL templates are the blocks docs/papers.md quotes ("␠" marks a trailing space)."""
    import re

    from model import prompts

    docs = (Path(__file__).resolve().parents[1] / "docs" / "papers.md").read_text(encoding="utf-8")
    for name, constant in (
        ("THINK_GENERAL", prompts.VITAL_THINK_GENERAL),
        ("THINK_GENERAL_TOOL", prompts.VITAL_THINK_GENERAL_TOOL),
    ):
        block = re.search(rf"^{name} \([^\n]*\):\n\n```\n(.*?)```", docs, re.DOTALL | re.MULTILINE)
        assert block is not None, name
        assert block.group(1).replace("\u2420", " ") == constant, name
    assert prompts.VITAL_THINK_GENERAL == VITAL_GENERAL and prompts.VITAL_THINK_GENERAL_TOOL == VITAL_TOOL


def test_hint_follows_the_vital_prompt_on_its_own_line():
    text = build_messages(sample(), frames(), PromptConfig(), hint="The answer is B.")[0][1]["content"][-1]["text"]
    assert text == VITAL_GENERAL.format(duration="33.4", input_text=MCQ_TEXT) + "The answer is B."


def test_preset_is_in_the_fingerprint_and_validated():
    vital = PromptConfig().fingerprint_inputs()
    mtvr = PromptConfig(preset="mtvr").fingerprint_inputs()
    assert vital["preset"] == "vital" and mtvr["preset"] == "mtvr" and vital != mtvr
    assert PromptConfig(preset="vital").fingerprint_inputs() == vital
    with pytest.raises(ValueError, match="unknown prompt preset 'qwen'; allowed: vital, mtvr"):
        PromptConfig(preset="qwen")
    with pytest.raises(ValueError, match="unknown prompt preset"):
        user_text(sample(), tools=False, preset="qwen")


def test_preset_is_a_setting_of_every_model_call_and_train_config():
    """`prompt:` in the grade / teach / eval blocks (default vital), in the model call's fingerprint; an unknown
    preset is a one-line config error naming the key."""
    from model.config_error import ConfigError
    from model.settings import fingerprint
    from pipelines.evaluate import EVAL_DEFAULTS
    from pipelines.stage_settings import GradeSettings, TeachSettings
    from train.config import TrainConfigError, config_from_dict

    engine = {"kind": "vllm", "settings": {"model": "Qwen/x"}}
    grade = GradeSettings.read({"engine": engine})
    assert grade.prompt == "vital" and grade.prompt_config().preset == "vital"
    assert grade.rollout_config().prompt.preset == "vital"
    assert TeachSettings.read({"engine": engine}).teacher_config().rollout.prompt.preset == "vital"
    assert EVAL_DEFAULTS["prompt"] == "vital"
    ours = GradeSettings.read({"engine": engine, "prompt": "mtvr"})
    assert ours.prompt_config().preset == "mtvr"
    assert fingerprint(ours.fingerprint_inputs()) != fingerprint(grade.fingerprint_inputs())
    assert grade.facts()["prompt"] == "vital"
    for read, where in ((GradeSettings.read, "grade"), (TeachSettings.read, "teach")):
        with pytest.raises(ConfigError) as error:
            read({"engine": engine, "prompt": "qwen"})
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{where}.prompt: unknown prompt preset 'qwen'"), message

    train = {"kind": "sft", "model": "Qwen/x", "data": "d", "output_dir": "out"}
    assert config_from_dict(dict(train)).prompt == "vital"
    assert config_from_dict({**train, "prompt": "vital"}).prompt == "vital"
    assert config_from_dict({**train, "prompt": "mtvr"}).prompt == "mtvr"
    with pytest.raises(TrainConfigError, match="prompt: unknown prompt preset 'qwen'"):
        config_from_dict({**train, "prompt": "qwen"})


def test_the_parser_reads_answers_in_the_shape_vitals_prompts_ask_for():
    """VITAL's Output Format puts a space between tags; the parser accepts it, and the answer forms of each task."""
    from mtvr_data.parsing import check_format, extract_answer, parse_grounded, parse_letter, parse_span

    call = '{"name": "get_video_clip_frame", "arguments": {"start_time": 1.0, "end_time": 5.0}}'
    tool = f"<think> look </think> <tool_call>{call}</tool_call> <think> saw </think> <answer> 12.5 - 30.0 s </answer>"
    plain = "<think> ... </think><answer> B </answer>"
    assert check_format(tool) is None and check_format(plain) is None
    assert parse_span(extract_answer(tool)) == (12.5, 30.0)
    assert parse_letter(extract_answer(plain), 3) == "B"
    assert parse_grounded("From 1.0 to 2.0, the man waves") == ((1.0, 2.0), "the man waves")


def test_the_trainers_render_the_preset_of_their_config(demo_corpus):
    """SFT conversations and DGRPO rollouts build the user turn with the train config's `prompt:` preset."""
    from mtvr_data.schema import CotRow, Message
    from tests.test_rollout import mcq, think_answer
    from train.data import sft_messages

    row = CotRow(mcq(), [Message("assistant", think_answer())], "teacher", "h", 3.0, 0, False, False)
    for preset in ("vital", "mtvr"):
        messages = sft_messages(row, demo_corpus / "videos", preset=preset)
        user = next(m for m in messages if m["role"] == "user")
        text = "".join(part.get("text", "") for part in user["content"] if part["type"] == "text")
        assert text.strip() == user_text(row.sample, tools=False, preset=preset).strip(), preset
