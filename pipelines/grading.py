"""Grading by pass rate (docs/papers.md, VITAL step 2): K rollouts of a grader model per sample, on the one model
stage (`pipelines.model_stage`).

    samples -> CachedInference(GradeStage) -> ModelResult -> GradeToRlRow -> RL rows | dead letters

Why it looks like this:
- The stage is a definition (`GradeStage.run`: K rollouts through `model.rollout`); batching, engine sharing, the
  per-sample retry, the cache and metrics are the model stage's.
- The cache holds the K trajectories' text. Rewards, pass flags, pass rate, difficulty and the keep rule are derived
  on read, so a reward fix rescores cached grades and a changed pass rule or `keep` redoes no model work.
- Pass rates count only trajectories that ended by the model's doing (`MODEL_OUTCOMES`): an engine error or an
  unreadable video is not a wrong answer. With fewer than `min_graded` such trajectories the sample is a dead
  letter `grading_failed`, and it is not cached, so a rerun tries again.

Difficulty buckets, by pass-rate thirds over the graded rollouts: pass rate <= 1/3 is `hard`, >= 2/3 is `easy`,
anything between is `medium` (compared in integers, so K=3 or K=6 boundaries are exact). With K=8 and the default
keep rule (0 < passes < K): 1-2 passes hard, 3-5 medium, 6-7 easy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from model.engine_api import Engine
from model.settings import EngineConfig
from model.trajectory import MODEL_OUTCOMES
from mtvr_data.schema import RlRow, Sample, SampleError
from pipelines.config import BuildConfig
from pipelines.model_stage import CachedInference, ModelResult, RolloutStage, build_engine
from pipelines.stage_settings import GradeSettings
from pipelines.transforms import DEAD, CountStage, PrepareSamples, StageMetrics, StageOutput

STAGE = "grade"


@dataclass(frozen=True)
class GradeStage(RolloutStage):
    """K rollouts of each sample, tools as the part says; a result is final once enough rollouts were graded."""

    name: str = STAGE

    def cacheable(self, result: ModelResult) -> bool:
        settings = self.call
        need = settings.min_graded if isinstance(settings, GradeSettings) else 1
        return result.error is None and len(graded(result)) >= need


def graded(result: ModelResult) -> list[int]:
    """Indices of the trajectories that count: ended by the model's doing and scored."""
    return [i for i, t in enumerate(result.trajectories) if t.finish_reason in MODEL_OUTCOMES and t.reward is not None]


def bucket(num_passed: int, num_graded: int) -> str:
    """`hard` / `medium` / `easy` by pass-rate thirds (module docstring), in integers so boundaries are exact."""
    if 3 * num_passed <= num_graded:
        return "hard"
    if 3 * num_passed >= 2 * num_graded:
        return "easy"
    return "medium"


class GradeToRlRow(beam.DoFn):
    """A graded `ModelResult` as an `RlRow` (main output) or a dead letter (`DEAD`, stage `grade`).

    Reasons: `grading_error` (the rollout or its batch raised), `grading_failed` (fewer than `min_graded` graded
    rollouts), and with `keep="medium"` `all_passed` / `all_failed`.
    """

    def __init__(self, settings: GradeSettings) -> None:
        self.settings = settings
        self.metrics = StageMetrics(STAGE)

    def process(self, result: ModelResult) -> Iterator[Any]:
        self.metrics.inc("in")
        out = self.convert(result)
        if isinstance(out, SampleError):
            yield self.metrics.rejected(out)
        else:
            self.metrics.inc("kept")
            yield out

    def convert(self, result: ModelResult) -> RlRow | SampleError:
        """The row or the dead letter for `result` (pure; the DoFn only counts)."""
        sample = result.sample
        if result.error is not None:
            return SampleError.for_sample(sample, STAGE, result.reason or "grading_error", result.error)
        indices = graded(result)
        passes = sum(1 for i in indices if result.trajectories[i].passed)
        if len(indices) < self.settings.min_graded:
            reasons = dict(sorted(Counter(result.finish_reasons).items()))
            detail = f"{len(indices)}/{len(result.trajectories)} rollouts graded: {reasons}"
            return SampleError.for_sample(sample, STAGE, "grading_failed", detail)
        if self.settings.keep == "medium" and passes in (0, len(indices)):
            reason = "all_failed" if passes == 0 else "all_passed"
            return SampleError.for_sample(sample, STAGE, reason, f"{passes}/{len(indices)} rollouts passed")
        rewards = [float(result.trajectories[i].reward.total) for i in indices]  # type: ignore[union-attr]
        pass_rate = passes / len(indices)
        return RlRow(
            sample=sample,
            num_rollouts=len(indices),
            pass_rate=pass_rate,
            mean_reward=sum(rewards) / len(rewards),
            difficulty=1.0 - pass_rate,
            bucket=bucket(passes, len(indices)),
            policy=result.model,
            tools=result.tools,
        )


class Grade(beam.PTransform[beam.PCollection[Sample], StageOutput]):
    """samples -> `StageOutput(RL rows, dead letters, tallies)` of stage `grade`: the model stage, `GradeToRlRow`.

    `tools` is the part's (see `PrepareAndGrade`). Unpacks as `(rows, dead_letters)`; `.counts` feeds
    `pipelines.accounting` (in = kept + rejected, and cached / computed).
    """

    def __init__(
        self,
        settings: GradeSettings,
        video_roots: Mapping[str, str | None] | None = None,
        *,
        tools: bool | None = None,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.settings = settings
        stage = GradeStage(call=settings, tools=settings.rollout.tools if tools is None else tools)
        self.infer = CachedInference(stage, video_roots, out_dir=out_dir, engine_factory=engine_factory)

    def expand(self, samples: beam.PCollection[Sample]):
        results, cache_counts = samples | "Model" >> self.infer
        rows = results | "ToRlRows" >> beam.ParDo(GradeToRlRow(self.settings)).with_outputs(DEAD, main="rows")
        counts = (
            samples | CountStage(STAGE, "in"),
            rows.rows | "SampleOfRow" >> beam.Map(lambda row: row.sample) | CountStage(STAGE, "kept"),
            cache_counts,
        ) | "Tallies" >> beam.Flatten()
        return StageOutput(rows.rows, rows[DEAD], counts)


class PrepareAndGrade(beam.PTransform[beam.pvalue.PBegin, StageOutput]):
    """PBegin -> `StageOutput(RL rows, dead letters, tallies)` of the stages read .. grade, for one build config.

    The config's source entries fall into two parts (`BuildConfig.tool_parts`): graded with the clip tool (an
    entry's `tools: true`, or the grade block's `rollout.tools` when the entry does not say) or without. Each part
    is prepared and graded on its own branch, so its rows carry `tools` (the RL mix's `tool/...` keys) and its
    results have their own cache keys (`tools` is in the stage's fingerprint). Dedup runs within a part: a sample
    listed in both parts is graded both ways and gives one row in each.
    """

    def __init__(
        self,
        config: BuildConfig,
        settings: GradeSettings,
        *,
        out_dir: str | None = None,
        engine_factory: Callable[[EngineConfig], Engine] = build_engine,
    ) -> None:
        super().__init__()
        self.config, self.settings = config, settings
        self.out_dir, self.engine_factory = out_dir, engine_factory

    def expand(self, pbegin: beam.pvalue.PBegin):
        parts = self.config.tool_parts(self.settings.rollout.tools)
        rows, dead, counts = [], [], []
        for tools, part in parts.items():
            name = "" if len(parts) == 1 else ("Tools" if tools else "Text")
            prepared = pbegin | f"Prepare{name}" >> PrepareSamples(part)
            grade = Grade(
                self.settings, part.video_roots, tools=tools, out_dir=self.out_dir, engine_factory=self.engine_factory
            )
            graded_part = prepared.kept | f"Grade{name}" >> grade
            rows.append(graded_part.kept)
            dead += [prepared.dead_letters, graded_part.dead_letters]
            counts += [prepared.counts, graded_part.counts]
        return StageOutput(
            tuple(rows) | "Rows" >> beam.Flatten(),
            tuple(dead) | "DeadLetters" >> beam.Flatten(),
            tuple(counts) | "Tallies" >> beam.Flatten(),
        )
