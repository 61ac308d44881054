"""The answer-conditioned teacher on the one model stage (docs/papers.md, VITAL step 3), with verify and select.

    samples -> CachedInference(TeachStage) -> ModelResult -> stage `teacher` -> stage `verify`
    -> one CotRow per sample | dead letters

Why it looks like this:
- The stage is a definition (`TeachStage.run`: `model.teacher.teacher_rollouts`, text chains for short videos and
  images, tool chains with the clip tool really executed for the tool sources and long videos); batching, engine
  sharing, the per-sample retry, the cache (`<out>/cache/teach/`) and metrics are the model stage's.
- The cached value is the chains as generated (turns, tool steps, finish reasons), not the verdict: rewards, verify
  and select are derived on read, so a changed pass rule re-judges the same chains without new model work. The
  key covers the hint wording and the routing as well as what `ModelCall` fingerprints.
- Stage `teacher` rejects what the machinery lost (`teacher_error`: the rollout raised or its batch failed;
  `teacher_failed`: no chain ended by the model's doing); stage `verify` rejects samples none of whose chains
  passes `model.teacher.verify` (strict format, right answer, tool calls returned frames, no hint mentioned), with
  the chains' reasons. A sample that passes keeps its best chain (`model.teacher.select`) as a `CotRow`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from model.engine_api import Engine
from model.settings import EngineConfig
from model.teacher import HINTS, TeacherRun, make_cot_row, select, teacher_rollouts
from model.trajectory import MODEL_OUTCOMES
from mtvr_data.frames import FrameCache
from mtvr_data.schema import Sample, SampleError
from pipelines.model_stage import CachedInference, ModelResult, StageDefinition, build_engine
from pipelines.stage_settings import TeachSettings
from pipelines.transforms import DEAD, CountStage, StageMetrics, StageOutput

STAGE = "teacher"
VERIFY_STAGE = "verify"
CACHE_STAGE = "teach"


@dataclass(frozen=True)
class TeachStage(StageDefinition):
    """K hinted chains per sample (`model.teacher.teacher_rollouts`)."""

    name: str = CACHE_STAGE

    def fingerprint_inputs(self) -> dict[str, Any]:
        settings = self.call
        routing = (
            [list(settings.tool_sources), settings.long_video_s, settings.span_noise]
            if isinstance(settings, TeachSettings)
            else None
        )
        return {**super().fingerprint_inputs(), "hints": list(HINTS), "routing": routing}

    async def run(self, samples: list[Sample], engine: Engine, frames: FrameCache) -> list[ModelResult]:
        assert isinstance(self.call, TeachSettings)
        runs: list[TeacherRun] = await teacher_rollouts(
            samples, engine, k=self.call.k, config=self.call.teacher_config(), cache=frames
        )
        return [
            ModelResult(s, self.model, r.trajectories, r.tools, r.hint) for s, r in zip(samples, runs, strict=True)
        ]


# --- transforms ----------------------------------------------------------------------------------------------------


class _CheckTaught(beam.DoFn):
    """Stage `teacher`: results whose machinery failed become dead letters; the rest go on to verify."""

    def setup(self) -> None:
        self.metrics = StageMetrics(STAGE)

    def process(self, result: ModelResult) -> Iterator[Any]:
        self.metrics.inc("in")
        if result.error is not None:
            yield self.metrics.rejected(
                SampleError.for_sample(result.sample, STAGE, result.reason or "teacher_error", result.error)
            )
        elif not any(r in MODEL_OUTCOMES for r in result.finish_reasons):
            reasons = dict(sorted(Counter(result.finish_reasons).items()))
            detail = f"no chain ended by the model: {reasons}"
            yield self.metrics.rejected(SampleError.for_sample(result.sample, STAGE, "teacher_failed", detail))
        else:
            self.metrics.inc("kept")
            yield result


class _VerifyAndSelect(beam.DoFn):
    """Stage `verify`: the best verified chain of a sample as a `CotRow`, or a dead letter with the reasons.

    The reason is the commonest reject code among the sample's chains (ties: alphabetical); the detail lists all.
    """

    def __init__(self, settings: TeachSettings) -> None:
        self.settings = settings

    def setup(self) -> None:
        self.metrics = StageMetrics(VERIFY_STAGE)
        self.config = self.settings.teacher_config()

    def process(self, result: ModelResult) -> Iterator[Any]:
        self.metrics.inc("in")
        run = TeacherRun(result.sample, result.tools, result.hint, result.trajectories)
        chosen, reasons = select(run, rule=self.config.pass_rule)
        if chosen is None:
            counts = Counter(reasons)
            reason = min(counts, key=lambda r: (-counts[r], r))
            detail = f"{len(reasons)} chain(s) rejected: {dict(sorted(counts.items()))}"
            yield self.metrics.rejected(SampleError.for_sample(result.sample, VERIFY_STAGE, reason, detail))
            return
        self.metrics.inc("kept")
        yield make_cot_row(result.sample, chosen, teacher=result.model, config=self.config)


class Teach(beam.PTransform[beam.PCollection[Sample], StageOutput]):
    """samples -> `StageOutput(CoT rows, dead letters, tallies)` of stages `teacher` and `verify`: the model stage,
    the machinery check, then verify and select. Without `out_dir` nothing is cached."""

    def __init__(
        self,
        settings: TeachSettings,
        video_roots: Mapping[str, str | None] | None = None,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        stage = TeachStage(call=settings, tools=True)
        self.infer = CachedInference(stage, video_roots, out_dir=out_dir, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]):
        results, cache_counts = samples | "Model" >> self.infer
        checked = results | "CheckTaught" >> beam.ParDo(_CheckTaught()).with_outputs(DEAD, main="taught")
        verified = checked.taught | "Verify" >> beam.ParDo(_VerifyAndSelect(self.settings)).with_outputs(
            DEAD, main="rows"
        )
        dead = (checked[DEAD], verified[DEAD]) | "DeadLetters" >> beam.Flatten()
        taught_samples = checked.taught | "SampleOfTaught" >> beam.Map(lambda r: r.sample)
        counts = (
            samples | CountStage(STAGE, "in"),
            taught_samples | CountStage(STAGE, "kept"),
            taught_samples | "CountVerifyIn" >> CountStage(VERIFY_STAGE, "in"),
            verified.rows | "SampleOfRow" >> beam.Map(lambda row: row.sample) | CountStage(VERIFY_STAGE, "kept"),
            cache_counts | "AsTeacher" >> beam.Map(lambda t: ((STAGE, t[0][1], t[0][2]), t[1])),
        ) | "Tallies" >> beam.Flatten()
        return StageOutput(verified.rows, dead, counts)
