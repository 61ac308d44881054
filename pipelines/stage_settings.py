"""The typed `grade:` and `teach:` blocks of a build config: a `ModelCall` each, plus what that stage adds.

Kept apart from the stages (`pipelines.grading`, `pipelines.teaching`) so the build config can parse them when the
file is read, before any pipeline exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, StrictStr

from model.config_error import ConfigError
from model.prompts import DEFAULT_PRESET
from model.settings import ModelCall
from model.teacher import SFT_BUDGET, TeacherConfig

if TYPE_CHECKING:
    from pipelines.config import BuildConfig


class GradeSettings(ModelCall):
    """The `grade:` block: a `ModelCall` (defaults: VITAL's RL rollouts, K = 8 at temperature 1 with tools on 64
    frames, in VITAL's prompt strings, `prompt: vital`) plus what turns passes into rows.

    `min_graded_fraction`: a sample needs at least max(1, ceil(fraction * K)) graded rollouts, else it is a dead
    letter `grading_failed`. `keep`: "medium" keeps 0 < passes < graded; "all" keeps every graded sample.
    `max_failed_fraction` / `max_failed`: the failure budget (`pipelines.failure_budget`): more samples lost to the
    machinery than max(max_failed, fraction x samples graded) fails the build with exit 1, before any commit.
    """

    keep: Literal["medium", "all"] = "medium"
    min_graded_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0)
    max_failed: int = Field(3, ge=0)

    @classmethod
    def read(cls, data: Any, *, base: Path | None = None) -> GradeSettings:
        return cls.parse(data, base=base, where="grade")

    @property
    def min_graded(self) -> int:
        return max(1, math.ceil(self.min_graded_fraction * self.k))

    def facts(self, config: BuildConfig | None = None) -> dict[str, Any]:
        """The grader as the dataset card and stats.json report it. With the build `config`, `tools` says what its
        source entries do: true or false when all agree, else "per source", with `tool_sources`."""
        facts: dict[str, Any] = {
            "engine": self.engine.kind,
            "model": self.engine.identity,
            "num_rollouts": self.k,
            "temperature": self.sampling.temperature,
            "tools": self.rollout.tools,
            "keep": self.keep,
            "prompt": self.prompt,
        }
        if config is not None:
            parts = config.tool_parts(self.rollout.tools)
            facts["tools"] = next(iter(parts)) if len(parts) == 1 else "per source"
            if True in parts:
                facts["tool_sources"] = sorted({s.source for s in parts[True].sources})
        return facts


#: The teacher's defaults under the user's `teach:` block: one chain at temperature 0.7 (VITAL does not publish
#: the teacher's sampling; plain sampling would waste more rejected chains, greedy gives the same chain on every
#: try) on SFT's 128-frame budget, since SFT sees what the teacher saw, in VITAL's exact prompt strings (the preset
#: SFT renders the rows with).
TEACH_DEFAULTS: dict[str, Any] = {
    "k": 1,
    "sampling": {"temperature": 0.7},
    "frames": {"max_frames": SFT_BUDGET.max_frames},
    "prompt": DEFAULT_PRESET,
}


class TeachSettings(ModelCall):
    """The `teach:` block: a `ModelCall` (defaults `TEACH_DEFAULTS`) plus the routing of chains.

    `tool_sources` and `long_video_s` decide which samples get tool chains, `span_noise` the hinted interval's noise.
    `max_failed_fraction` / `max_failed`: the teacher's failure budget, as grading's.
    """

    tool_sources: tuple[StrictStr, ...] = ("vidchapters", "longvideo_reason")
    max_failed_fraction: float = Field(0.05, ge=0.0, le=1.0)
    max_failed: int = Field(3, ge=0)
    long_video_s: float | None = Field(120.0, gt=0)
    span_noise: float = Field(0.2, ge=0.0, le=1.0)

    @classmethod
    def read(cls, data: Any, *, base: Path | None = None) -> TeachSettings:
        if not isinstance(data, Mapping) or not data.get("engine"):
            raise ConfigError("teach.engine: build-cot needs the teacher's engine: {kind, settings: {model: ...}}")
        return cls.parse(data, TEACH_DEFAULTS, base=base, where="teach")

    def teacher_config(self) -> TeacherConfig:
        return TeacherConfig(
            self.rollout_config(tools=True), self.tool_sources, self.long_video_s, self.span_noise, self.pass_rule
        )

    def facts(self) -> dict[str, Any]:
        """The teacher's settings as the card and stats report them."""
        return {
            "engine": self.engine.kind,
            "model": self.engine.identity,
            "chains_per_sample": self.k,
            "temperature": self.sampling.temperature,
            "max_frames": self.frames.max_frames,
            "tool_sources": list(self.tool_sources),
            "long_video_s": self.long_video_s,
            "span_noise": self.span_noise,
            "prompt": self.prompt,
            "answer_conditioned": True,
        }
