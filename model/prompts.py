"""Prompt building: a `Sample` (and, for training, its recorded conversation) to Qwen2.5-VL chat messages.

One function serves the grader, the teacher, SFT and DGRPO, so the model sees the same words and the
same frames wherever a row is used. Messages are in the Qwen2.5-VL processor's format (content parts);
a video part carries the `Frames` chosen by the shared sampler (time-stamped), an image part the
image's `Frames`. Engines turn the parts into what their back-end takes.

Qwen2.5-VL's processor chat template has no tool support (see model/templates/SOURCES.md), so the tool
block of the system prompt is written here, in the words of Qwen's standard function-calling system prompt,
and a tool turn is a `tool` message holding the clip and its caption (docs/papers.md).

The user turn's words come in two presets (`PromptConfig.preset`, the `prompt:` key of every model-call block and
train config): `vital`, VITAL's own templates character for character (its checkpoints were trained on them; the
default), and `mtvr`, this project's paraphrase. Both put the same question text (`question_text`) in the prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from model.families import DEFAULT_FAMILY, ModelFamily, get_family
from model.tiny_checkpoint import load_chat_template
from mtvr_data.frames import (
    FrameBudget,
    FrameCache,
    FramePerturbation,
    Frames,
    budget_fingerprint,
    load_image,
    sample_frames,
)
from mtvr_data.schema import OPTION_LETTERS, Message, Sample
from mtvr_data.tasks import GroundTruth, family
from mtvr_data.tasks.answer_terms import ANSWER_FORMAT
from mtvr_data.tasks.grounded_qa import GQA_FORMAT
from mtvr_data.tasks.temporal_grounding import TG_QUESTION
from mtvr_data.tools import CLIP_BUDGET, CLIP_CAPTION, ToolRegistry, clip_caption, default_tools

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

#: The head of the user turn for each kind of media.
IMAGE_HEAD = "This is an image."
VIDEO_HEAD = "This is a video with duration {duration:.2f} seconds."

#: VITAL's user-turn templates, copied exactly from its released code (docs/papers.md, "VITAL: the prompt strings"):
#: THINK_GENERAL (stages 1-2, no tool) and THINK_GENERAL_TOOL (stages 3-4 and evaluation with the tool). Mind the
#: trailing spaces (after "the answer.", "User Question:" and the tool template's items 2 and 3) and the final
#: newline. `{input_text}` is the question (VITAL's data `text` field; here `question_text`).
VITAL_THINK_GENERAL = (
    "This is a video with duration {duration} seconds.\n"
    "You should first think the user's question step-by-step and then provides the user with the answer. \n"
    "Note that there must be an answer for each question and you must answer it.\n"
    "Output your thought process within the <think> </think> tags, and output your answer within the <answer> "
    "</answer> tags,\n"
    "i.e., <think> ... </think><answer> ... </answer>.\n"
    "User Question: \n"
    "{input_text}\n"
)
VITAL_THINK_GENERAL_TOOL = (
    "This is a video with duration {duration} seconds.\n"
    "You should first think the user's question step-by-step and then provides the user with the answer. \n"
    "Note that there must be an answer for each question and you must answer it.\n"
    "# Instruction\n"
    "1. Output your thought process within the <think> </think> tags, and output your answer within the <answer> "
    "</answer> tags.\n"
    "2. You can call the provided tools ONCE to get more visual information within the <tool_call> </tool_call> "
    "tags. \n"
    "3. When you get the tool result, you need to integrate your initial reasoning with the new visual evidence "
    "from the tool, think step-by-step again and provide the final answer. \n"
    "# Output Format\n"
    "<think> ... </think> <tool_call> ... </tool_call> <think> ... </think> <answer> ... </answer>\n"
    "User Question: \n"
    "{input_text}\n"
)
#: VITAL's first line for an image (its video line is the templates' first line).
VITAL_IMAGE_HEAD = "This is an image."

#: The user-turn presets: VITAL's exact strings (the default everywhere) and this project's paraphrase.
PROMPT_PRESETS = ("vital", "mtvr")
DEFAULT_PRESET = "vital"


def check_preset(preset: object) -> str:
    """`preset` if it names a prompt preset, else a ValueError naming the allowed ones (for config errors)."""
    if preset not in PROMPT_PRESETS:
        raise ValueError(f"unknown prompt preset {preset!r}; allowed: {', '.join(PROMPT_PRESETS)}")
    return preset  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """What a prompt holds: tools on or off, the frame budgets of the whole video and of a clip, the system text,
    and the user turn's words (`preset`: "vital", VITAL's exact templates, or "mtvr", ours).

    RL rollouts use at most 64 frames, SFT 128 (docs/papers.md). `clip_budget` is what a tool call's clip is sampled
    with, in the rollout (the tools are bound with it) and when a recorded conversation is replayed for training
    (`replay_conversation`), so the trainer encodes the clip the model saw. `perturbation` (DeepVideo-R1's
    DA-Aug, per sample) changes the prompt's frames, never the tool's clips.

    `family` (a `model_type`, `model.families`) is the model's: both budgets are converted to its frame geometry
    (the same tokens per frame; no drawn time stamp where time reaches the model as text), and its chat template
    is the one in the fingerprint. Qwen2.5-VL, the default, leaves the budgets and the fingerprint as they were.
    """

    tools: bool = False
    budget: FrameBudget = field(default_factory=FrameBudget)
    system: str = DEFAULT_SYSTEM
    perturbation: FramePerturbation | None = None
    clip_budget: FrameBudget = CLIP_BUDGET
    preset: str = DEFAULT_PRESET
    family: str = DEFAULT_FAMILY.name

    def __post_init__(self) -> None:
        check_preset(self.preset)
        family = get_family(self.family)
        object.__setattr__(self, "budget", family.frame_budget(self.budget))
        object.__setattr__(self, "clip_budget", family.frame_budget(self.clip_budget))

    @property
    def model_family(self) -> ModelFamily:
        return get_family(self.family)

    def fingerprint_inputs(self, registry: ToolRegistry | None = None) -> dict[str, Any]:
        """Everything of what the model sees that is not the sample itself, as a JSON-able dict, for cache keys.

        The words (system prompt, tool block, user-turn templates, answer formats, clip caption), the chat
        template the text is rendered with, the tool schemas of `registry` (VITAL's toolbox by default), the
        frame and clip budgets and the configured perturbation. Changing any of them changes the dict; a caller
        hashes it (canonical JSON) with the sampling settings and the model.
        """
        family = self.model_family
        extra = {} if family is DEFAULT_FAMILY else {"family": family.name}
        return extra | {
            "tools": self.tools,
            "system": self.system,
            "preset": self.preset,
            "templates": {
                "tool_block": TOOL_BLOCK,
                "think_answer": THINK_ANSWER,
                "with_tool": WITH_TOOL,
                "answer_format": dict(sorted(ANSWER_FORMAT.items())),
                "gqa_format": GQA_FORMAT,
                "tg_question": TG_QUESTION,
                "image_head": IMAGE_HEAD,
                "video_head": VIDEO_HEAD,
                "vital_think_general": VITAL_THINK_GENERAL,
                "vital_think_general_tool": VITAL_THINK_GENERAL_TOOL,
                "vital_image_head": VITAL_IMAGE_HEAD,
                "clip_caption": CLIP_CAPTION,
                "chat_template": chat_template() if family is DEFAULT_FAMILY else family.chat_template(),
            },
            "tool_schemas": (registry or default_tools()).schemas(),
            "budget": budget_fingerprint(self.budget),
            "clip_budget": budget_fingerprint(self.clip_budget),
            "perturbation": None if self.perturbation is None else dataclasses.asdict(self.perturbation),
        }


@functools.cache
def chat_template() -> str:
    """The vendored Qwen2.5-VL chat template's text (model/templates/SOURCES.md), read once: the template the
    prompt is rendered with (the tiny checkpoint's and the published model's)."""
    return load_chat_template()


def system_text(config: PromptConfig, tool_schemas: list[dict[str, Any]] | None) -> str:
    """The system prompt, with the <tools> block when tools are offered."""
    if not tool_schemas:
        return config.system
    schemas = "\n".join(json.dumps(s, ensure_ascii=False) for s in tool_schemas)
    return config.system + TOOL_BLOCK.format(schemas=schemas)


def question_text(sample: Sample) -> str:
    """The question with its lettered options and the answer format its task needs (the task family's head and
    format line, `mtvr_data.tasks`)."""
    task = family(sample.task)
    lines = [task.question_head(sample.question)]
    lines += [f"{OPTION_LETTERS[i]}. {text}" for i, text in enumerate(sample.options)]
    lines.append(task.answer_format(GroundTruth.of(sample)))
    return "\n".join(lines)


def vital_duration(duration: float) -> str:
    """The duration as it fills VITAL's `{duration}`: Python's own str of the seconds, to two decimals."""
    return str(round(float(duration), 2))


def user_text(sample: Sample, *, tools: bool, preset: str = DEFAULT_PRESET) -> str:
    """The user turn's words (docs/papers.md): what the media is, how to think and answer, the question.

    `preset` "vital": VITAL's THINK_GENERAL_TOOL when tools are offered (video rows only), else THINK_GENERAL, with
    the question text as `{input_text}`; an image row's first line is "This is an image.". "mtvr": ours.
    """
    if check_preset(preset) == "vital":
        video = sample.modality == "video"
        template = VITAL_THINK_GENERAL_TOOL if tools and video else VITAL_THINK_GENERAL
        text = template.format(
            duration=vital_duration(sample.duration) if video else "", input_text=question_text(sample)
        )
        return text if video else VITAL_IMAGE_HEAD + text[text.index("\n") :]
    head = IMAGE_HEAD if sample.modality == "image" else VIDEO_HEAD.format(duration=sample.duration)
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
        {
            "role": "user",
            "content": [part, {"type": "text", "text": user_text(sample, tools=tools, preset=config.preset)}],
        },
    ]
    if hint:
        text = messages[1]["content"][-1]["text"]
        messages[1]["content"][-1]["text"] = f"{text}{hint}" if text.endswith("\n") else f"{text}\n{hint}"
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
    sample: Sample,
    path: str,
    recorded: list[Message],
    cache: FrameCache | None = None,
    *,
    clip_budget: FrameBudget = CLIP_BUDGET,
) -> list[dict[str, Any]]:
    """Turns after the user turn of a recorded (CoT) conversation, tool clips re-rendered from their spans.

    A CoT row stores clips by time only; the frames come back from the same sampler and the clip budget the
    tool used (`PromptConfig.clip_budget` of the rollout), so SFT and DGRPO see what the tool returned.
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
                    path, start=message.clip.start, end=message.clip.end, budget=clip_budget, cache=cache
                )
                text = message.content or clip_caption(message.clip.start, message.clip.end)
            turns.append(tool_turn(frames, text))
    return turns
