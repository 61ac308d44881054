"""What a model call needs, as one typed, nested settings block shared by grading, teaching, evaluation and the
trainers' rollouts: the engine, sampling, rollout limits, frame and clip budgets, the pass rule and batching.

    engine:   {kind: transformers | openai | vllm | oracle, settings: {model: ..., <that kind's own keys>}}
    k: 8                                  # rollouts (or chains) per sample
    sampling: {temperature, top_p, max_new_tokens, repetition_penalty, seed}
    rollout:  {tools, max_tool_calls, max_turns, max_total_tokens, max_prompt_tokens, tool_timeout_s, media_timeout_s}
    frames:   {fps, max_frames, min_frames, min_pixels, max_pixels, overlay, keyframe_snap}   # the whole video
    clip:     {...the same keys...}       # what a tool call returns
    pass_rule: {min_reward, tg_min_iou, gqa_min_iou, gqa_min_answer}
    batching: {min_batch_size, max_batch_size, max_concurrent_samples, workers, max_engine_calls,
               streaming, in_flight, ordering, prefetch_bytes}
    prompt: vital                         # the user turn's words: vital (VITAL's exact strings) | mtvr (ours)

Why it looks like this:
- A config mistake must fail when the file is read, with the key path, never on a worker inside a Beam traceback.
  pydantic models with `extra="forbid"` refuse unknown keys at every level and check types and ranges; an engine
  kind's own settings are checked against that engine's constructor (one source of truth: adding a keyword to an
  engine makes it a valid config key), and a local model path must exist.
- Each stage has its own defaults (grading: K = 8 at temperature 1 on 64 frames; the teacher: 0.7 on 128 frames;
  evaluation: greedy). `ModelCall.parse(data, defaults)` deep-merges the user's block over the stage's defaults, so
  `sampling: {seed: 0}` in the teacher's block keeps the teacher's temperature.
- The model is named portably (`EngineConfig.identity`): a Hub id with its revision, or a content hash of a local
  checkpoint, never an absolute path, so moving a checkout keeps every cached result and identical builds in two
  folders write identical shards.
- `ModelCall.fingerprint()` is what decides the model's text: sampling, rollout limits, K, and what the model saw
  (prompt templates, tool schemas, frame and clip budgets). Result caches key on it. The pass rule is not in it:
  results are scored when read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from model.config_error import ConfigError
from model.engine_api import SamplingSettings
from model.families import DEFAULT_FAMILY, ModelFamily, family_for_model
from model.prompts import DEFAULT_PRESET, PromptConfig, check_preset
from model.rollout import RolloutConfig
from mtvr_data.frames import FrameBudget
from mtvr_data.rewards import PassRule
from mtvr_data.tools import CLIP_BUDGET

EngineKind = Literal["transformers", "openai", "vllm", "oracle"]
ENGINE_KINDS: tuple[str, ...] = typing.get_args(EngineKind)
#: VITAL's rollout limits: 1024 new tokens a turn, 3 turns (2 tool calls + the answer), 7168 tokens in all.
MAX_NEW_TOKENS = 1024
MAX_TOTAL_TOKENS = 7168
TOOL_TIMEOUT_S = 60.0
MEDIA_TIMEOUT_S = 300.0
#: A Hub repository id: `name` or `org/name`.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
#: Bytes of each weights file hashed at its start, middle and end (`checkpoint_fingerprint`).
HASH_CHUNK = 1 << 20


class Block(BaseModel):
    """A config block: unknown keys are refused, values checked when read, immutable afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- engines ---------------------------------------------------------------------------------------------------------

#: Constructor keywords that are objects, not config values.
_NOT_CONFIG = frozenset(
    {
        "self",
        "model_path_or_id",
        "model",
        "processor",
        "http_client",
        "client",
        "clock",
        "sleep",
        "jitter",
        "on_close",
        "health_check",
    }  # fmt: skip
)


def _keywords(cls: type, skip: frozenset[str] = _NOT_CONFIG) -> dict[str, tuple[Any, Any]]:
    """`{name: (type, default)}` of a constructor's (or dataclass's) keyword parameters, for a pydantic model."""
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, tuple[Any, Any]] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        out[name] = (hints.get(name, Any), default)
    return out


@functools.cache
def engine_settings_model(kind: str) -> type[BaseModel]:
    """A pydantic model of the settings engine `kind` accepts, read off the engine's own constructor."""
    fields: dict[str, tuple[Any, Any]] = {"model": (str, ...)}
    if kind == "transformers":
        from model.engines.transformers_engine import TransformersEngine

        fields.update(_keywords(TransformersEngine))
    elif kind == "openai":
        from model.engines.openai_engine import OpenAIEngine

        fields.update(_keywords(OpenAIEngine))
        fields["base_url"] = (str | list[str], ...)  # a list: one client per server, balanced (make_engine)
    elif kind == "vllm":
        from model.engines.openai_engine import OpenAIEngine
        from model.engines.vllm_engine import VLLMSettings

        server_chosen = {"base_url", "name", "video_mode", "vllm_extensions", "exact_token_counts", "stop_mode"}
        fields.update(_keywords(OpenAIEngine, _NOT_CONFIG | server_chosen))
        fields.update(_keywords(VLLMSettings))
        fields["model"] = (str, ...)
    elif kind == "oracle":
        fields = {"model": (str, "oracle"), "name": (str, "oracle")}
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    model = create_model(f"{kind.title()}EngineSettings", __config__=config, **fields)  # type: ignore[call-overload]
    return model


class EngineConfig(Block):
    """Which engine runs a stage: its kind and that kind's settings (checked against the engine's constructor)."""

    kind: EngineKind = "transformers"
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_settings(self) -> EngineConfig:
        if self.kind not in ENGINE_KINDS:  # only `model_construct` makes one: a test's scripted engine
            return self
        try:
            engine_settings_model(self.kind).model_validate(self.settings)
        except ValidationError as exc:
            raise ValueError(_first_error(exc, ("settings",), engine_settings_model(self.kind))) from None
        if self.kind in ("transformers", "vllm"):
            check_model_ref(str(self.settings["model"]))
        return self

    @property
    def model_id(self) -> str:
        """The model as configured (a path, a Hub id or a served name): for people, never for keys."""
        return str(self.settings.get("model") or "unknown")

    @functools.cached_property
    def identity(self) -> str:
        """The model, named portably: `sha256:<hash>` of a local checkpoint, `<hub id>@<revision>`, or the served
        name of an OpenAI-compatible server or the oracle."""
        if self.kind in ("transformers", "vllm"):
            path = Path(self.model_id)
            if path.is_dir():
                return f"sha256:{checkpoint_fingerprint(path)}"
            return f"{self.model_id}@{self.settings.get('revision') or 'main'}"
        return self.model_id

    @functools.cached_property
    def family(self) -> ModelFamily:
        """The model's family (`model.families`), from its checkpoint's config.json; the default (Qwen2.5-VL) for a
        served model whose checkpoint this process cannot see (an OpenAI-compatible server, the oracle)."""
        if self.kind in ("transformers", "vllm"):
            return family_for_model(self.model_id, self.settings.get("revision"))
        return DEFAULT_FAMILY

    @property
    def name(self) -> str:
        """The model's name in rows and card: engine kind and portable identity."""
        return f"{self.kind}:{self.identity}"


def check_model_ref(model: str) -> None:
    """A model is a local checkpoint folder that exists, or a Hub id (`org/name`); anything else is refused."""
    path = Path(model).expanduser()
    if path.is_dir():
        return
    if path.is_absolute() or model.startswith((".", "~")) or not HUB_ID.match(model):
        raise ValueError(
            f"settings.model: {model!r} is neither a checkpoint folder that exists nor a Hub id (org/name)"
        )


def checkpoint_fingerprint(folder: Path) -> str:
    """A content hash of a local checkpoint: its config, its weights index, and each weights file's size and its
    first, middle and last MiB. Cheap for a 7B checkpoint, and it changes when the weights are retrained."""
    digest = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json"):
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as fh:
            for offset in sorted({0, max(0, size // 2 - HASH_CHUNK // 2), max(0, size - HASH_CHUNK)}):
                fh.seek(offset)
                digest.update(fh.read(HASH_CHUNK))
    return digest.hexdigest()[:16]


# --- paths -----------------------------------------------------------------------------------------------------------


def resolve_path(base: Path | None, value: str) -> str:
    """A path from a config: `~` expanded, relative paths taken against the config's folder (`base`), URLs
    (`gs://...`, `s3://...`) as written. The one resolver of build, eval and train configs."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() or base is None else (base / path))


def resolve_model(base: Path | None, value: str) -> str:
    """A model reference: a folder that exists relative to the config's folder becomes that folder's absolute
    path; anything else (a Hub id, an absolute path) is kept as written."""
    if base is not None and not Path(value).expanduser().is_absolute() and (base / value).is_dir():
        return str((base / value).resolve())
    return str(Path(value).expanduser()) if value.startswith("~") else value


# --- the model call --------------------------------------------------------------------------------------------------


class Sampling(Block):
    """How each turn is sampled. `seed` is the build seed: each rollout's own seed derives from it and the sample."""

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: StrictInt = Field(MAX_NEW_TOKENS, ge=1)
    repetition_penalty: float = Field(1.05, gt=0.0)
    seed: StrictInt | None = None

    def settings(self) -> SamplingSettings:
        return SamplingSettings(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )


class RolloutLimits(Block):
    """The tool loop's limits: VITAL's at most 2 calls, 3 turns and 7168 response tokens; the timeouts that keep a
    slow decoder from hanging a worker."""

    tools: StrictBool = True
    max_tool_calls: StrictInt = Field(2, ge=0)
    max_turns: StrictInt = Field(3, ge=1)
    max_total_tokens: StrictInt = Field(MAX_TOTAL_TOKENS, ge=1)
    #: The longest first prompt (text + vision tokens) sent to the engine; longer samples end `prompt_too_long`.
    #: None: VITAL's 3072 (`model.rollout.MAX_PROMPT_TOKENS`), raised for frame budgets above 64 frames.
    max_prompt_tokens: StrictInt | None = Field(None, ge=1)
    tool_timeout_s: float = Field(TOOL_TIMEOUT_S, gt=0)
    media_timeout_s: float = Field(MEDIA_TIMEOUT_S, gt=0)


class Batching(Block):
    """How work reaches the engine. None of it changes a result, so none of it is in the fingerprint.

    `max_engine_calls`: None sends each request as its own call (a server); 1 coalesces waiting requests into one
    call (an in-process engine that batches within a call). None with the transformers engine means 1.

    `streaming` (pipelines/model_stage.py `StreamingInference`, model/request_scheduler.py): each sample starts on
    the worker process's one event loop as it arrives, with no batch barrier, and at most `in_flight` sequences (a
    request with n = K counts K) are at the engine at once; a finished request's slots go to the next waiting one,
    in `ordering` (`fifo`, or `longest_first` by a length learned online). Size `in_flight` to about twice the
    server's capacity (vLLM's `max_num_seqs`) divided by the SDK processes that share it: a request with n = K
    holds K slots here until its slowest choice ends, while the server frees each choice's slot as it ends, and the
    server's own queue absorbs the rest. `prefetch_bytes` and `max_concurrent_samples` bound the samples in
    progress, whose prompt frames are decoded ahead of their requests. `streaming: false` runs RunInference batch
    by batch, each batch in its own loop, with no cap (the old behaviour).
    """

    min_batch_size: StrictInt = Field(1, ge=1)
    max_batch_size: StrictInt = Field(8, ge=1)
    max_concurrent_samples: StrictInt = Field(64, ge=1)
    workers: StrictInt = Field(8, ge=1)
    max_engine_calls: StrictInt | None = Field(None, ge=1)
    streaming: StrictBool = True
    in_flight: StrictInt = Field(512, ge=1)
    ordering: Literal["fifo", "longest_first"] = "fifo"
    prefetch_bytes: StrictInt = Field(2 << 30, ge=1)

    @model_validator(mode="after")
    def _check_sizes(self) -> Batching:
        if self.min_batch_size > self.max_batch_size:
            raise ValueError(
                f"min_batch_size ({self.min_batch_size}) must be <= max_batch_size ({self.max_batch_size})"
            )
        return self


class ModelCall(Block):
    """Everything a model stage needs to run a model on samples (module docstring)."""

    engine: EngineConfig
    k: StrictInt = Field(8, ge=1)
    sampling: Sampling = Field(default_factory=Sampling)
    rollout: RolloutLimits = Field(default_factory=RolloutLimits)
    frames: FrameBudget = Field(default_factory=FrameBudget)
    clip: FrameBudget = CLIP_BUDGET
    pass_rule: PassRule = Field(default_factory=PassRule)
    batching: Batching = Field(default_factory=Batching)
    prompt: StrictStr = DEFAULT_PRESET

    @field_validator("frames", "clip")
    @classmethod
    def _check_factor(cls, value: FrameBudget) -> FrameBudget:
        if value.factor != FrameBudget().factor:
            raise ValueError(
                "factor is the model family's (model/families.py: budgets are written in Qwen2.5-VL's 28-pixel "
                "terms and converted to the model's geometry), not a setting"
            )
        return value

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        return check_preset(value)

    @classmethod
    def parse(cls, data: Any, defaults: Mapping[str, Any] | None = None, *, base: Path | None = None, where: str = ""):
        """`data` (a config block) over `defaults` (the stage's), validated; errors are `ConfigError`s naming the
        key path under `where`. A local model path is resolved against `base` (the config's folder)."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where or 'block'}: must be a mapping, got {type(data).__name__}")
        merged = deep_merge(dict(defaults or {}), dict(data))
        engine = merged.get("engine")
        if isinstance(engine, Mapping) and isinstance(engine.get("settings"), Mapping) and base is not None:
            model = engine["settings"].get("model")
            if isinstance(model, str) and engine.get("kind", "transformers") in ("transformers", "vllm"):
                merged["engine"] = {**engine, "settings": {**engine["settings"], "model": resolve_model(base, model)}}
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_first_error(exc, tuple(where.split(".")) if where else (), cls)) from None

    # what the stages use

    def rollout_config(self, *, tools: bool | None = None) -> RolloutConfig:
        """The rollout loop's config. An in-process transformers engine serialises calls: coalesce into one."""
        max_calls = self.batching.max_engine_calls
        if max_calls is None and self.engine.kind == "transformers":
            max_calls = 1
        r = self.rollout
        return RolloutConfig(
            tools=r.tools if tools is None else tools,
            max_tool_calls=r.max_tool_calls,
            max_turns=r.max_turns,
            sampling=self.sampling.settings(),
            max_total_tokens=r.max_total_tokens,
            max_prompt_tokens=r.max_prompt_tokens,
            tool_timeout_s=r.tool_timeout_s,
            media_timeout_s=r.media_timeout_s,
            prompt=self.prompt_config(),
            pass_rule=self.pass_rule,
            max_concurrent_samples=self.batching.max_concurrent_samples,
            workers=self.batching.workers,
            max_engine_calls=max_calls,
        )

    def prompt_config(self) -> PromptConfig:
        family = self.engine.family.name
        return PromptConfig(budget=self.frames, clip_budget=self.clip, preset=self.prompt, family=family)

    def fingerprint_inputs(self) -> dict[str, Any]:
        """What decides the model's text (besides the sample and the model): see the module docstring."""
        return {
            "k": self.k,
            "sampling": self.sampling.model_dump(),
            "rollout": self.rollout.model_dump(exclude={"tool_timeout_s", "media_timeout_s", "max_prompt_tokens"}),
            "prompt": self.prompt_config().fingerprint_inputs(),
        }


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key (a stage's defaults under a user's block)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "settings":
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """A stable 16-hex hash of JSON-able `inputs`: same inputs, same hash, on every machine and Python version.

    >>> fingerprint({"k": 8, "t": 1.0}) == fingerprint({"t": 1.0, "k": 8})
    True
    """
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


# --- errors ----------------------------------------------------------------------------------------------------------


#: A message that starts with a nested key path (a nested block's own one-line error): `settings.devic: ...`.
_NESTED = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)*): (.*)$", re.DOTALL)


def _first_error(exc: ValidationError, prefix: tuple[str, ...], model: type) -> str:
    """One line from pydantic's errors: the key path, what is wrong, what was given (and how many more).

    `model` is the class that was validated, so an unknown key's message can list the allowed ones.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in (*prefix, *first["loc"]) if p != ""]
    message = str(first["msg"]).removeprefix("Value error, ")
    nested = _NESTED.match(message) if first["type"] == "value_error" else None
    if nested:  # a nested block's error: its key path continues ours
        loc.append(nested.group(1))
        message = nested.group(2)
    path = ".".join(loc) or "config"
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(model, first)
        message = f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
    elif first["type"] not in ("value_error", "missing") and "input" in first:
        message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {message}{more}"


def _allowed_keys(node: Any, error: Mapping[str, Any]) -> list[str]:
    """The keys allowed where an unknown key was found, read off the model (`node`) that refused it."""
    for part in error["loc"][:-1]:
        fields = _field_types(node)
        if not isinstance(part, str) or part not in fields:
            return []
        node = fields[part]
    return sorted(_field_types(node))


def _field_types(node: Any) -> dict[str, Any]:
    """Field name -> type of a pydantic model or a dataclass (Optional unwrapped); {} for anything else."""
    for candidate in (node, *typing.get_args(node)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return {name: f.annotation for name, f in candidate.model_fields.items()}
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            hints = typing.get_type_hints(candidate)
            return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(candidate)}
    return {}


def config_error(exc: ValidationError, *, model: type, where: str = "", file: str | Path | None = None) -> ConfigError:
    """A `ConfigError` from pydantic's: `FILE: key.path: message` (`model`: the class that was validated)."""
    line = _first_error(exc, tuple(where.split(".")) if where else (), model)
    return ConfigError(f"{file}: {line}" if file is not None else line)
