"""The curated shards as training inputs: load them, turn rows into prompts and encoded conversations, batch them.

Rows come from a built dataset folder or a Hub dataset id through `datasets.load_dataset` (the same call users
make), and are turned back into the project's records (`CotRow`, `RlRow`) by `mtvr_data.parquet_io`, so a row
means what it meant when it was built. Prompts come from the shared prompt builder and frame sampler
(`model.prompts`); a CoT row's tool turns are re-rendered from their clip spans by the same sampler the tool uses.
Both go through the policy's model family (`model.families`): its frame geometry, time channel and processor inputs,
so a Qwen3-VL policy is trained on the frames and time text a Qwen3-VL engine would show it.

Frames are decoded by `SftTransform` when a row is read, which happens in the DataLoader's worker processes
(`dataloader_num_workers`), never in the training step; the collator only pads.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model.families import DEFAULT_FAMILY, ModelFamily, get_family
from model.prompts import DEFAULT_PRESET, PromptConfig, build_messages, load_media, replay_conversation
from model.rollout import MAX_CHARS_PER_TOKEN, PromptTooLong, default_prompt_limit, prompt_tokens, text_tokens
from model.teacher import SFT_BUDGET  # 128 frames of the whole video (docs/papers.md), as the teacher sees
from mtvr_data.dataset_loading import load_built
from mtvr_data.frame_cache import FrameCache
from mtvr_data.frames import FrameBudget
from mtvr_data.media_staging import staged_media
from mtvr_data.normalize import MediaPathError, resolve_media
from mtvr_data.parquet_io import row_to_record
from mtvr_data.schema import CotRow, RlRow
from train.encoding import Encoded, EncodingError, concat_media, encode_conversation, mm_token_type_ids

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
#: An SFT process's frame cache (`SftTransform.cache`): a few 128-frame videos' frames, not a corpus.
SFT_CACHE_BYTES = 512 << 20


def load_rows(data: str, config: str, split: str = "train", *, revision: str | None = None) -> Any:
    """A `datasets.Dataset` of one config ("cot" or "rl") of a built folder or a Hub dataset id.

    A local folder is read through its dataset card's `configs:` YAML, exactly as the Hub would read it (and
    re-read on every call: `mtvr_data.dataset_loading`).
    """
    if config not in ("cot", "rl"):
        raise ValueError(f"config must be 'cot' or 'rl', got {config!r}")
    dataset = load_built(data, config, split=split, revision=revision)
    log.info("loaded %s/%s[%s]: %d rows", data, config, split, len(dataset))
    return dataset


def select_rows(dataset: Any, *, tools: bool | None = None, sources: Sequence[str] | None = None) -> Any:
    """Rows with the given `tools` flag and sources (None keeps all): how the recipe's stages pick their part.

    Selected by index from the columns (not `Dataset.filter`, whose cache fingerprint of a closure can hand back
    an earlier selection).
    """
    keep = range(len(dataset))
    if tools is not None:
        flags = dataset["tools"]
        keep = [i for i in keep if bool(flags[i]) == tools]
    if sources:
        wanted = set(sources)
        names = dataset["source"]
        keep = [i for i in keep if names[i] in wanted]
    return dataset if len(keep) == len(dataset) else dataset.select(list(keep))


def cot_record(row: dict[str, Any]) -> CotRow:
    """An MTVR-CoT row (a dict of its columns, as `datasets` gives it) back as a `CotRow`."""
    record = row_to_record("cot", row)
    assert isinstance(record, CotRow)
    return record


def rl_record(row: dict[str, Any]) -> RlRow:
    """An MTVR-RL row (a dict of its columns, as `datasets` gives it) back as an `RlRow`."""
    record = row_to_record("rl", row)
    assert isinstance(record, RlRow)
    return record


def sft_messages(
    row: CotRow,
    video_root: str | Path | None,
    budget: FrameBudget = SFT_BUDGET,
    *,
    max_prompt_tokens: int | None = None,
    tokenizer: Any | None = None,
    preset: str = DEFAULT_PRESET,
    family: str | ModelFamily = DEFAULT_FAMILY,
    cache: FrameCache | None = None,
) -> list[dict[str, Any]]:
    """The full SFT conversation of a CoT row: the shared prompt, then its recorded turns with clips re-rendered.

    Media under a URL video root is staged to the worker's scratch disk (`media_staging`) and held while the
    prompt's frames and the clips are decoded from it; the row keeps its root-relative `video`. The media path must
    stay under `video_root` (`resolve_media` raises `MediaPathError`, `path_outside_root`, before opening it).

    The prompt (system and user turns, frames included) is measured with `tokenizer` (else estimated) against
    `max_prompt_tokens` (None: `default_prompt_limit` of `budget`); a longer one raises `PromptTooLong`
    (`prompt_too_long`), and a question far past the limit does so before its media is read.

    `family` is the policy's (`model.families`): `budget` (in Qwen2.5-VL pixels) and the clips' budget are converted
    to its geometry by `PromptConfig`, and Qwen3-VL's frames carry no drawn stamp. `cache` (a `FrameCache`) keeps
    a video's facts, open decoder and sampled frames for the next row on the same file.
    """
    sample = row.sample
    family_name = get_family(family).name
    prompt = PromptConfig(tools=row.tools, budget=budget, preset=preset, family=family_name)  # the config's `prompt:`
    limit = max_prompt_tokens if max_prompt_tokens is not None else default_prompt_limit(budget)
    words = "\n".join([sample.question, *sample.options])
    if len(words) > MAX_CHARS_PER_TOKEN * limit:
        raise PromptTooLong(text_tokens(words, limit=limit), limit, "question")
    with staged_media(resolve_media(video_root, sample.video)) as path:
        media = load_media(sample, path, prompt, cache=cache)
        messages, _ = build_messages(sample, media, prompt)
        tokens = prompt_tokens(messages, tokenizer, limit=limit)
        if tokens > limit:
            raise PromptTooLong(tokens, limit)
        return messages + replay_conversation(sample, path, row.messages, cache, clip_budget=prompt.clip_budget)


class SftTransform:
    """Encodes CoT rows for SFT on access (`datasets.Dataset.with_transform`), so frames are decoded lazily in the
    DataLoader's workers, and truncates to `max_length`.

    A row whose media cannot be read or that cannot be encoded raises: SFT data was verified when it was built,
    so a failure here is a broken installation or video root, which must stop the run, not thin the data. So does,
    with the row id and the reason, a row whose media path leads outside `video_root` (`path_outside_root`) or
    whose prompt is longer than `max_prompt_tokens` (`prompt_too_long`; None: the frame budget's default, 3072 at
    64 frames and 5120 at SFT's 128), counted in `refused` and logged first. `family` is the policy's
    (`model.families`; `train.modeling.policy_family`): the prompt's frames and the processor inputs are its.
    """

    def __init__(
        self,
        processor: Any,
        *,
        video_root: str | Path | None,
        budget: FrameBudget = SFT_BUDGET,
        max_length: int | None = None,
        max_prompt_tokens: int | None = None,
        preset: str = DEFAULT_PRESET,
        family: str | ModelFamily = DEFAULT_FAMILY,
    ) -> None:
        self.processor = processor
        self.family = get_family(family)
        self.video_root = video_root
        self.budget = budget
        self.max_length = max_length
        self.max_prompt_tokens = max_prompt_tokens
        self.preset = preset
        self.refused: Counter[str] = Counter()
        self._cache: FrameCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers get the settings, not the parent's open decoders: each makes its own cache."""
        return {**self.__dict__, "_cache": None}

    @property
    def cache(self) -> FrameCache:
        """This process's frame cache. Rows often share a video (many questions on one clip: the demo's practice
        set, VITAL's per-video tasks), and its header probe, open decoder and sampled frames then serve them all;
        bounded (`SFT_CACHE_BYTES`), so a corpus of distinct videos only keeps the last few."""
        if self._cache is None:
            self._cache = FrameCache(max_bytes=SFT_CACHE_BYTES)
        return self._cache

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        size = len(batch["id"])
        features = []
        for i in range(size):
            row = cot_record({name: values[i] for name, values in batch.items()})
            tokenizer = getattr(self.processor, "tokenizer", None)
            try:
                messages = sft_messages(
                    row,
                    self.video_root,
                    self.budget,
                    max_prompt_tokens=self.max_prompt_tokens,
                    tokenizer=tokenizer,
                    preset=self.preset,
                    family=self.family,
                    cache=self.cache,
                )
            except (PromptTooLong, MediaPathError) as exc:
                self.refused[exc.reason] += 1
                log.error("SFT row %s refused: %s", row.sample.id, exc)
                raise EncodingError(f"row {row.sample.id}: {exc}") from exc
            try:
                encoded = encode_conversation(self.processor, messages, self.family)
            except EncodingError as exc:
                raise EncodingError(f"row {row.sample.id}: {exc}") from exc
            features.append(sft_features(encoded, self.processor, self.max_length))
        keys = sorted({k for f in features for k in f})
        return {k: [f.get(k) for f in features] for k in keys}


def sft_dataset(rows: Any, processor: Any, **settings: Any) -> Any:
    """The rows with `SftTransform` attached: indexing yields input_ids, labels and media tensors."""
    return rows.with_transform(SftTransform(processor, **settings))


def sft_features(encoded: Encoded, processor: Any, max_length: int | None = None) -> dict[str, Any]:
    """input_ids and labels (trainable tokens only) of one conversation, plus its media tensors.

    Truncation keeps the media whole: a cut through a video's placeholder tokens would leave the model with
    fewer placeholders than features, so it is refused with a clear message instead.
    """
    ids = torch.tensor(encoded.input_ids, dtype=torch.long)
    labels = ids.masked_fill(torch.tensor(encoded.trainable) == 0, IGNORE_INDEX)
    if max_length is not None and len(ids) > max_length:
        if bool((mm_token_type_ids(ids[max_length:], processor) != 0).any()):
            raise EncodingError(f"max_length {max_length} would cut media tokens (conversation has {len(ids)})")
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels, **encoded.media}


class SftCollator:
    """Right-pads a list of `sft_features` into one batch with attention mask, media and `mm_token_type_ids`."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = f["input_ids"], f["labels"], 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        media = [{k: v for k, v in f.items() if k not in ("input_ids", "labels") and v is not None} for f in features]
        batch.update(concat_media(media))
        batch["mm_token_type_ids"] = mm_token_type_ids(ids, self.processor)
        return batch
