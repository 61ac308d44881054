"""Prompt building: a `Sample` (and, for training, its recorded conversation) to Qwen2.5-VL chat messages.

One function serves the grader, the teacher, SFT and DGRPO, so the model sees the same words and the
same frames wherever a row is used. Messages are in the Qwen2.5-VL processor's format (content parts);
a video part carries the `Frames` chosen by the shared sampler (time-stamped), an image part the
image's `Frames`. Engines turn the parts into what their back-end takes.

Qwen2.5-VL's processor chat template has no tool support (see model/templates/SOURCES.md), so the tool
block of the system prompt is written here, in the words of Qwen's standard function-calling system prompt,
and a tool turn is a `tool` message holding the clip and its caption (PAPERS.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mtvr_data.frames import FrameBudget, FrameCache, FramePerturbation, Frames, load_image, sample_frames
from mtvr_data.schema import OPTION_LETTERS, Message, Sample
from mtvr_data.tools import CLIP_BUDGET, ToolRegistry, clip_caption, default_tools

DEFAULT_SYSTEM = "You are a helpful assistant."

#: Qwen's standard function-calling instructions (the wording of Qwen2.5's tokenizer chat template).
TOOL_BLOCK = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{schemas}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)

THINK_ANSWER = (
    "Think about the question step by step inside <think> </think> tags, then give the final answer inside "
    "<answer> </answer> tags."
)
WITH_TOOL = (
    "You may call the tool ONCE to look at a clip of the video more closely: write your reasoning in <think> "
    "</think>, then the call in <tool_call> </tool_call>. After the clip comes back, integrate what you see in it "
    "with the video in a new <think> </think>, then give the final answer inside <answer> </answer> tags."
)

#: How each kind of answer must be written, so the shared parser can read it (mtvr_data.parsing).
ANSWER_FORMAT = {
    "letter": "Answer with the option's letter only.",
    "span": "Answer with the start and end time of the moment, as 'S - E seconds'.",
    "number": "Answer with a number.",
    "regression": "Answer with a number.",
    "text": "Answer with a short sentence.",
    "ocr": "Answer with the exact text.",
}
GQA_FORMAT = "Answer as 'From S to E, <answer>', where S - E seconds is the moment that shows the evidence."


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """What a prompt holds: tools on or off, the frame budget of the whole video, the system text.

    RL rollouts use at most 64 frames, SFT 128 (PAPERS.md); clips always use the clip tool's budget.
    `perturbation` (DeepVideo-R1's DA-Aug, per sample) changes the prompt's frames, never the tool's clips.
    """

    tools: bool = False
    budget: FrameBudget = field(default_factory=FrameBudget)
    system: str = DEFAULT_SYSTEM
    perturbation: FramePerturbation | None = None


def system_text(config: PromptConfig, tool_schemas: list[dict[str, Any]] | None) -> str:
    """The system prompt, with the <tools> block when tools are offered."""
    if not tool_schemas:
        return config.system
    schemas = "\n".join(json.dumps(s, ensure_ascii=False) for s in tool_schemas)
    return config.system + TOOL_BLOCK.format(schemas=schemas)


def question_text(sample: Sample) -> str:
    """The question with its lettered options and the answer format its task needs."""
    if sample.task == "tg":
        lines = [f'Find the moment in the video described by: "{sample.question}"']
    else:
        lines = [sample.question]
    lines += [f"{OPTION_LETTERS[i]}. {text}" for i, text in enumerate(sample.options)]
    lines.append(GQA_FORMAT if sample.task == "gqa" else ANSWER_FORMAT[sample.answer_type])
    return "\n".join(lines)


def user_text(sample: Sample, *, tools: bool) -> str:
    """The user turn's words (PAPERS.md): what the media is, how to think and answer, the question."""
    if sample.modality == "image":
        head = "This is an image."
    else:
        head = f"This is a video with duration {sample.duration:.2f} seconds."
    how = WITH_TOOL if tools and sample.modality == "video" else THINK_ANSWER
    return f"{head}\n{how}\n{question_text(sample)}"


def load_media(sample: Sample, path: str, config: PromptConfig, cache: FrameCache | None = None) -> Frames:
    """The frames the model sees of a sample's media, from the shared sampler."""
    if sample.modality == "image":
        return load_image(path, budget=config.budget, perturbation=config.perturbation)
    return sample_frames(path, budget=config.budget, cache=cache, perturbation=config.perturbation)


def build_messages(
    sample: Sample,
    media: Frames,
    config: PromptConfig,
    *,
    history: list[dict[str, Any]] | None = None,
    registry: ToolRegistry | None = None,
    hint: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tool schemas) for a sample: system, user (media + words), then `history` turns if any.

    Tools are offered only on video rows and only when `config.tools`; image rows never get them. The
    schemas come from `registry` (VITAL's toolbox by default), the same registry that runs the calls.
    `hint` (the teacher's answer note, DA-Aug's partial trace) goes on a new line after the question, so the
    system prompt stays byte-identical with and without it.
    """
    tools = config.tools and sample.modality == "video"
    schemas = (registry or default_tools()).schemas() if tools else None
    part = {"type": "video", "video": media} if sample.modality == "video" else {"type": "image", "image": media}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": system_text(config, schemas)}]},
        {"role": "user", "content": [part, {"type": "text", "text": user_text(sample, tools=tools)}]},
    ]
    if hint:
        messages[1]["content"][-1]["text"] += f"\n{hint}"
    messages.extend(history or [])
    return messages, schemas


def assistant_turn(text: str) -> dict[str, Any]:
    """An assistant turn exactly as generated (tool calls stay inline, as the model wrote them)."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def tool_turn(frames: Frames | None, text: str) -> dict[str, Any]:
    """A tool turn: the clip's frames (if the call succeeded) and the caption or error text."""
    content: list[dict[str, Any]] = [{"type": "video", "video": frames}] if frames is not None else []
    content.append({"type": "text", "text": text})
    return {"role": "tool", "content": content}


def replay_conversation(
    sample: Sample, path: str, recorded: list[Message], cache: FrameCache | None = None
) -> list[dict[str, Any]]:
    """Turns after the user turn of a recorded (CoT) conversation, tool clips re-rendered from their spans.

    A CoT row stores clips by time only; the frames come back from the same sampler and budget the tool
    uses, so SFT sees what the tool would have returned.
    """
    turns: list[dict[str, Any]] = []
    for message in recorded:
        if message.role == "assistant":
            turns.append(assistant_turn(message.content))
        elif message.role == "tool":
            frames = None
            text = message.content
            if message.clip is not None:
                frames = sample_frames(
                    path, start=message.clip.start, end=message.clip.end, budget=CLIP_BUDGET, cache=cache
                )
                text = message.content or clip_caption(message.clip.start, message.clip.end)
            turns.append(tool_turn(frames, text))
    return turns


def media_of(messages: list[dict[str, Any]]) -> tuple[list[Frames], list[Frames]]:
    """(images, videos) in the order they appear: what a processor takes beside the rendered text."""
    images: list[Frames] = []
    videos: list[Frames] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == "image":
                images.append(part["image"])
            elif part.get("type") == "video":
                videos.append(part["video"])
    return images, videos
