"""Model families: everything that differs between Qwen2.5-VL, Qwen3-VL and Qwen3.5 in one object per family.

Why: the grader, the teacher, the evaluation harness and both trainers must show a model the frames, the words and
the time stamps it was trained on, and these differ by family. Every module asks the family instead of testing
`model_type` itself (this is the only module that reads it), so adding a family is adding one object here.

What a family holds:
- **Frame geometry.** `factor` = patch x spatial merge (28 on Qwen2.5-VL, 32 on Qwen3-VL and Qwen3.5): frame sides
  are multiples of it. Frames go in pairs on all three (temporal patch 2). A frame budget means a number of visual
  tokens per frame, written in Qwen2.5-VL pixels as VITAL writes it (`max_pixels: 64*28*28` is 64 tokens a frame);
  `frame_budget` converts it to the family's pixels (64*32*32 on Qwen3-VL) and sets `FrameBudget.factor`.
- **How time reaches the model.** Qwen2.5-VL reads absolute time from a stamp drawn on each frame (VITAL's recipe)
  and its temporal positions from the sampling rate (`fps` metadata). Qwen3-VL and Qwen3.5 read time as text: the
  processor writes `<t seconds>` before each temporal patch, computed as `frames_indices / fps` of the video
  metadata (averaged over the pair). `video_metadata` gives `fps = 1` and the frames' own presentation times as
  `frames_indices`, so the text is the real time of the frames taken (right for variable frame rates and clips too,
  where index / average fps is not); no stamp is drawn on these families' frames.
- **Chat template.** The vendored template of the published checkpoint (`model/templates/`, `SOURCES.md`). Tool
  schemas are written into the system prompt by `model.prompts` in Qwen's Hermes wording, which is byte for byte what
  the Qwen3-VL template renders from `tools=` (tested), and what Qwen2.5-VL's template, which ignores `tools=`, needs.
  Tool turns are the template's own: `<|im_start|>tool` on Qwen2.5-VL, a `user` turn wrapping `<tool_response>` on
  Qwen3-VL. Calls stay inline in the assistant text as the model wrote them.
- **Processor fields** the trainers forward and slice per sample, and the keywords every processor call gets
  (frames are already sampled and sized: never resample, and on Qwen3-VL never resize, whose video processor would
  otherwise fit the whole clip into one pixel budget).
- **vLLM launch arguments** (coded against vLLM's documented options; vLLM does not run on these machines).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from mtvr_data.frames import FACTOR, FrameBudget

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "ModelFamily",
    "family_for_checkpoint",
    "family_for_model",
    "get_family",
]

log = logging.getLogger(__name__)

TimeChannel = Literal["drawn", "metadata"]


@dataclass(frozen=True, slots=True)
class ModelFamily:
    """One model family (module docstring). Immutable and hashable: a key of caches and prompt configs."""

    name: str  #: the `model_type` of the checkpoint's config.json
    mirrors: str  #: the published checkpoint its tiny test checkpoint mirrors
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    time_channel: TimeChannel
    chat_template_resource: str  #: package-relative path under `model/`
    media_fields: tuple[str, ...]  #: per-sample processor fields the trainers forward and slice, in this order
    #: keywords of a processor call with videos, and with images (beyond the media and the metadata)
    video_kwargs: tuple[tuple[str, Any], ...]
    image_kwargs: tuple[tuple[str, Any], ...] = ()
    #: whether the tiny checkpoint of this family runs on CPU here (the tests are parametrised over these)
    tested_on_cpu: bool = True

    @property
    def factor(self) -> int:
        """Frame sides are multiples of this: one visual token is `factor` x `factor` pixels."""
        return self.patch_size * self.merge_size

    @property
    def draws_time(self) -> bool:
        return self.time_channel == "drawn"

    # --- frames ------------------------------------------------------------------------------------------------

    def frame_budget(self, budget: FrameBudget) -> FrameBudget:
        """`budget` in this family's pixels: the same tokens per frame, frame sides multiples of `factor`, and no
        drawn stamp where time reaches the model as text. A budget already in this family's factor is kept (so
        converting twice is converting once)."""
        changes: dict[str, Any] = {}
        if budget.factor != self.factor:
            scale = (self.factor / budget.factor) ** 2
            changes.update(
                factor=self.factor,
                min_pixels=max(1, round(budget.min_pixels * scale)),
                max_pixels=max(1, round(budget.max_pixels * scale)),
            )
        if budget.overlay and not self.draws_time:
            changes["overlay"] = False
        return dataclasses.replace(budget, **changes) if changes else budget

    def tokens_per_frame(self, budget: FrameBudget) -> int:
        """The most visual tokens one frame of `budget` costs on this family (after merging)."""
        return self.frame_budget(budget).max_pixels // (self.factor * self.factor)

    # --- processor inputs --------------------------------------------------------------------------------------

    def video_metadata(self, frames: Any, count: int | None = None) -> dict[str, Any]:
        """What the processor is told about one sampled video (a `Frames`-like object with `frames`, `times`,
        `sample_fps`): its sampling rate (Qwen2.5-VL's temporal positions), or the frames' own times (Qwen3-VL's
        `<t seconds>` text, computed by the processor as `frames_indices / fps`)."""
        count = int(len(frames.frames)) if count is None else count
        fps = float(frames.sample_fps)
        if not fps > 0:
            raise ValueError(f"sample_fps must be > 0, got {fps}")
        if self.draws_time:
            return {"fps": fps, "total_num_frames": count}
        times = [float(t) for t in frames.times]
        if len(times) != count:
            raise ValueError(f"{len(times)} time stamps for {count} frames")
        return {"fps": 1.0, "frames_indices": times, "total_num_frames": count}

    def processor_call_kwargs(
        self, images: list[Any], videos: list[Any], metadata: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The media keywords of a processor call for already sampled and sized frames."""
        kwargs: dict[str, Any] = {}
        if videos:
            kwargs.update(videos=videos, video_metadata=metadata, **dict(self.video_kwargs))
        if images:
            kwargs.update(images=images, **dict(self.image_kwargs))
        return kwargs

    # --- chat template -----------------------------------------------------------------------------------------

    def chat_template(self) -> str:
        """The vendored chat template's text, byte-identical to the published one (model/templates/SOURCES.md)."""
        return _template(self.chat_template_resource)

    # --- vLLM --------------------------------------------------------------------------------------------------

    def vllm_serve_args(self, *, frames_per_video: int, videos: int, images: int) -> list[str]:
        """The family's own `vllm serve` arguments for already sampled frames sent as `data:video/jpeg` lists.

        Common to all: keep every frame sent (`--media-io-kwargs` video `num_frames`, default 32 in new releases) and
        allow the prompt's and the tool turns' videos (`--limit-mm-per-prompt`). Qwen3-VL and Qwen3.5 also get
        `--mm-processor-kwargs` that stop vLLM's HF processor from resampling or resizing the frames (its video
        processor's defaults sample at 2 fps and fit the clip into one pixel budget). Coded against vLLM's documented
        options (`vllm serve --help`, engine args); untested here: vLLM cannot run on these machines.
        """
        args = [
            "--limit-mm-per-prompt",
            json.dumps({"video": videos, "image": images}),
            "--media-io-kwargs",
            json.dumps({"video": {"num_frames": frames_per_video}}),
        ]
        if not self.draws_time:
            args += ["--mm-processor-kwargs", json.dumps({"do_sample_frames": False, "do_resize": False})]
        return args


#: Per-sample media fields of Qwen2.5-VL (`second_per_grid_ts` carries its temporal positions) and of Qwen3-VL.
_QWEN2_5_FIELDS: Final = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)
_QWEN3_FIELDS: Final = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")

QWEN2_5_VL: Final = ModelFamily(
    name="qwen2_5_vl",
    mirrors="Qwen/Qwen2.5-VL-7B-Instruct",
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    time_channel="drawn",
    chat_template_resource="templates/qwen2_5_vl_chat_template.jinja",
    media_fields=_QWEN2_5_FIELDS,
    video_kwargs=(("do_sample_frames", False),),
)
QWEN3_VL: Final = ModelFamily(
    name="qwen3_vl",
    mirrors="Qwen/Qwen3-VL-8B-Instruct",
    patch_size=16,
    merge_size=2,
    temporal_patch_size=2,
    time_channel="metadata",
    chat_template_resource="templates/qwen3_vl_chat_template.jinja",
    media_fields=_QWEN3_FIELDS,
    video_kwargs=(("do_sample_frames", False), ("do_resize", False)),
    image_kwargs=(("do_resize", False),),
)
#: Qwen3.5 (natively multimodal): transformers 5.25 maps it to Qwen3-VL's processor and video processor, so frames,
#: time and fields are Qwen3-VL's; its chat template is its own (Qwen3.5-2B's, thinking off by default). Its tiny
#: checkpoint (`model.tiny_qwen3_5`) runs on CPU (grading through the transformers engine); training does not: its
#: template cannot be rendered prefix by prefix (docs/model.md).
QWEN3_5: Final = dataclasses.replace(
    QWEN3_VL,
    name="qwen3_5",
    mirrors="Qwen/Qwen3.5-2B",
    chat_template_resource="templates/qwen3_5_chat_template.jinja",
)

#: Every family by `model_type`. The MoE variants share their dense sibling's processor, template and geometry.
FAMILIES: Final[Mapping[str, ModelFamily]] = {
    "qwen2_5_vl": QWEN2_5_VL,
    "qwen3_vl": QWEN3_VL,
    "qwen3_vl_moe": dataclasses.replace(QWEN3_VL, name="qwen3_vl_moe", mirrors="Qwen/Qwen3-VL-30B-A3B-Instruct"),
    "qwen3_5": QWEN3_5,
}
#: VITAL's family, and the default wherever no checkpoint says otherwise (a hosted OpenAI-compatible model).
DEFAULT_FAMILY: Final = QWEN2_5_VL
#: Budgets are written in this family's pixels (VITAL's): `FrameBudget.factor`'s default.
assert DEFAULT_FAMILY.factor == FACTOR


def get_family(name: str | ModelFamily | None) -> ModelFamily:
    """A family by its `model_type` (None: the default); a family is returned as is."""
    if isinstance(name, ModelFamily):
        return name
    if name is None:
        return DEFAULT_FAMILY
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def family_for_checkpoint(path_or_config: str | os.PathLike[str] | Mapping[str, Any] | Any) -> ModelFamily:
    """The family of a checkpoint, from the `model_type` of its config.json, never from its name.

    Takes a checkpoint folder, a config.json path, the config as a dict, a transformers config or model (anything
    with `.config.model_type` or `.model_type`), or a Hub id (its config is read by `AutoConfig`, from the local
    cache or the Hub).
    """
    model_type = _model_type(path_or_config)
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"no model_type in the config of {path_or_config!r}")
    return get_family(model_type)


def _model_type(source: Any) -> Any:
    if isinstance(source, Mapping):
        return source.get("model_type")
    config = getattr(source, "config", None)
    if config is not None and hasattr(config, "model_type"):
        return config.model_type
    if hasattr(source, "model_type"):
        return source.model_type
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    if path.exists() or Path(os.fspath(source)).is_absolute():
        raise FileNotFoundError(f"{source}: no config.json")
    from transformers import AutoConfig  # a Hub id: its config, from the cache or the Hub

    return AutoConfig.from_pretrained(os.fspath(source)).model_type


def family_for_model(model: str, revision: str | None = None) -> ModelFamily:
    """The family of an engine's model setting: a local checkpoint's config.json, or a Hub id's config.json from the
    local Hugging Face cache. A Hub id whose config is not cached gets the default family with a warning (looking it
    up on the Hub would make reading a config depend on the network); download its config.json first, or pass the
    checkpoint folder, to serve another family by Hub id."""
    path = Path(model).expanduser()
    if path.is_dir():
        return family_for_checkpoint(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # not a valid repo id for the cache: no config to read
        cached = None
    if isinstance(cached, str):
        return family_for_checkpoint(cached)
    log.warning("%s: no local config.json (folder or Hugging Face cache); assuming %s", model, DEFAULT_FAMILY.name)
    return DEFAULT_FAMILY


_TEMPLATES: dict[str, str] = {}


def _template(resource: str) -> str:
    if resource not in _TEMPLATES:
        _TEMPLATES[resource] = resources.files("model").joinpath(resource).read_text(encoding="utf-8")
    return _TEMPLATES[resource]
