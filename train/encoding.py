"""A conversation (prompt, assistant and tool turns, media) to token ids, a trainable-token mask and media tensors.

One function serves SFT (the mask becomes the labels) and DGRPO (the mask becomes TRL's `tool_mask`, which keeps
tool results out of the loss), so a token is trained on in exactly the same cases in both.

How: the conversation is rendered with the processor's own chat template one message at a time, and each
rendered piece is cut into segments that are either trainable or not. A trainable segment is an assistant turn's
content plus its closing `<|im_end|>` (the model must learn to stop); the `<|im_start|>assistant\\n` header, the
newline after `<|im_end|>`, and every system, user and tool token (the clip's vision tokens included) are not.
Each segment goes through the processor on its own with the media it holds, so video placeholders are expanded
to their real token count and the media tensors come back in placeholder order. Segments start and end at special
tokens, so the concatenated ids equal the processor's ids of the whole conversation (tested token for token).

Media handling is the engines' (`model.engines.media`): frames in as sampled arrays with their sampling rate and
`do_sample_frames=False`, so Qwen2.5-VL's temporal positions match what the policy saw when it generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from model.engines.media import processor_media, template_messages
from model.families import DEFAULT_FAMILY, FAMILIES, ModelFamily

#: Per-sample media fields of every family (`ModelFamily.media_fields`: Qwen2.5-VL's, which add `second_per_grid_ts`
#: to Qwen3-VL's), all concatenated along dimension 0. A batch holds those its family's processor gave.
MEDIA_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(name for f in FAMILIES.values() for name in f.media_fields))

#: `mm_token_type_ids` values (the processor's): text 0, image placeholder 1, video placeholder 2.
IMAGE_TYPE, VIDEO_TYPE = 1, 2


class EncodingError(ValueError):
    """A conversation that cannot be encoded (bad roles, media the processor rejects); the row is skipped loudly."""


@dataclass(slots=True)
class Encoded:
    """One conversation: ids, the trainable mask (1 = assistant-written token), and its media tensors."""

    input_ids: list[int]
    trainable: list[int]
    media: dict[str, torch.Tensor] = field(default_factory=dict)
    num_images: int = 0
    num_videos: int = 0
    #: (start, end) of each assistant turn's trainable ids, in turn order: where DGRPO splices the sampled ids in.
    spans: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def first_trainable(self) -> int:
        """Index of the first assistant-written token (where the prompt ends for RL); len() when there is none."""
        return next((i for i, t in enumerate(self.trainable) if t), len(self.input_ids))


def _render(processor: Any, messages: list[dict[str, Any]], *, generation_prompt: bool = False) -> str:
    from jinja2 import TemplateError

    if not messages:
        return ""
    try:
        return processor.apply_chat_template(
            template_messages(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
    except TemplateError as exc:  # the template's own refusal (Qwen3.5's of a prefix without a user turn)
        raise EncodingError(f"the chat template cannot render the first {len(messages)} message(s): {exc}") from exc


#: A text-only conversation every chat template the trainers can use must cut into turns (`check_template`).
_PROBE: tuple[dict[str, Any], ...] = (
    {"role": "system", "content": [{"type": "text", "text": "S"}]},
    {"role": "user", "content": [{"type": "text", "text": "Q"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "<think>T</think><answer>A</answer>"}]},
)


def check_template(processor: Any) -> None:
    """Refuse, before any training, a chat template this encoding cannot cut into turns: one that does not render
    a conversation prefix by prefix, or whose assistant header is not a prefix of the assistant turn (Qwen3.5's
    does neither: docs/model.md). Without this, SFT would stop at its first row and DGRPO would mark every rollout
    failed and train on nothing. Raises `EncodingError`."""
    _segments(processor, [dict(m) for m in _PROBE])


def _segments(processor: Any, messages: list[dict[str, Any]]) -> list[tuple[str, bool, list[dict[str, Any]]]]:
    """(text, trainable, messages whose media the text holds) pieces whose concatenation is the whole rendering."""
    end_token = "<|im_end|>"
    pieces: list[tuple[str, bool, list[dict[str, Any]]]] = []
    rendered = ""
    for k, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise EncodingError(f"message {k} has role {role!r}")
        full = _render(processor, messages[: k + 1])
        if not full.startswith(rendered):
            raise EncodingError("the chat template does not render conversations prefix by prefix")
        if role != "assistant":
            pieces.append((full[len(rendered) :], False, [message]))
        else:
            head = _render(processor, messages[:k], generation_prompt=True)
            if not (head.startswith(rendered) and full.startswith(head)):
                raise EncodingError("the assistant header is not a prefix of the assistant turn")
            body = full[len(head) :]
            stop = body.find(end_token)
            cut = len(body) if stop < 0 else stop + len(end_token)
            pieces.append((head[len(rendered) :], False, []))
            pieces.append((body[:cut], True, []))
            if body[cut:]:
                pieces.append((body[cut:], False, []))
        rendered = full
    return [p for p in pieces if p[0]]


def _segment_inputs(
    processor: Any, text: str, owners: list[dict[str, Any]], family: ModelFamily = DEFAULT_FAMILY
) -> dict[str, Any]:
    images, videos, metadata = processor_media(owners, family)
    kwargs = family.processor_call_kwargs(images, videos, metadata)
    try:
        return processor(text=[text], return_tensors="pt", **kwargs)
    except Exception as exc:  # the processor's own message, with where it happened
        where = f"a segment with {len(images)} images, {len(videos)} videos"
        raise EncodingError(f"processor failed on {where}: {exc}") from exc


def encode_conversation(
    processor: Any, messages: list[dict[str, Any]], family: ModelFamily = DEFAULT_FAMILY
) -> Encoded:
    """Ids, trainable mask and media tensors of a whole conversation (see the module docstring).

    `messages` are `model.prompts` messages (content parts; media parts carry `Frames`). `family` is the model's
    (`model.families`): its video metadata, processor keywords and media fields. Raises `EncodingError`.
    """
    ids: list[int] = []
    trainable: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in MEDIA_FIELDS}
    num_images = num_videos = 0
    spans: list[tuple[int, int]] = []
    for text, train, owners in _segments(processor, messages):
        out = _segment_inputs(processor, text, owners, family)
        seg_ids = out["input_ids"][0].tolist()
        if train:
            spans.append((len(ids), len(ids) + len(seg_ids)))
        ids += seg_ids
        trainable += [int(train)] * len(seg_ids)
        for name in family.media_fields:
            if name in out:
                parts[name].append(torch.as_tensor(out[name]))
        if "image_grid_thw" in out:
            num_images += int(out["image_grid_thw"].shape[0])
        if "video_grid_thw" in out:
            num_videos += int(out["video_grid_thw"].shape[0])
    media = {name: torch.cat(tensors, dim=0) for name, tensors in parts.items() if tensors}
    return Encoded(ids, trainable, media, num_images, num_videos, spans)


def mm_token_type_ids(input_ids: torch.Tensor, processor: Any) -> torch.Tensor:
    """The processor's `mm_token_type_ids` for already-built ids: 1 on image placeholders, 2 on video ones."""
    tokenizer = getattr(processor, "tokenizer", processor)
    types = torch.zeros_like(input_ids)
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    video_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
    types[input_ids == image_id] = IMAGE_TYPE
    types[input_ids == video_id] = VIDEO_TYPE
    return types


def concat_media(per_sample: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One batch's media fields: each sample's tensors concatenated in sample order (placeholder order)."""
    out: dict[str, torch.Tensor] = {}
    for name in MEDIA_FIELDS:
        tensors = [m[name] for m in per_sample if name in m]
        if tensors:
            out[name] = torch.cat(tensors, dim=0)
    return out
