"""The prompt token limit: a rendered prompt longer than `max_prompt_tokens` (VITAL's 3072 by default) is refused
as `prompt_too_long` before any engine call, in the rollout loop, the model stage and the trainers."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.prompts import PromptConfig
from model.rollout import (
    MAX_PROMPT_TOKENS,
    PromptTooLong,
    RolloutConfig,
    default_prompt_limit,
    prompt_tokens,
    rollout,
    text_tokens,
)
from model.settings import EngineConfig
from model.trajectory import ANSWER, FINISH_REASONS, MODEL_OUTCOMES, PROMPT_TOO_LONG
from mtvr_data.frames import FrameBudget, FrameCache, Frames
from mtvr_data.parquet_io import record_to_row
from mtvr_data.schema import CotRow, RlRow, Sample
from pipelines.grading import GradeStage
from pipelines.model_stage import StageHandler
from pipelines.stage_settings import GradeSettings
from tests.test_rollout import ScriptedEngine, by_turn
from tests.test_rollout import mcq as rollout_mcq
from train.data import SftTransform, sft_messages
from train.encoding import EncodingError
from train.rollouts import PolicyRollouts

#: Far past the limit (the incident's question was 50 MB; 1 MB shows the same path without the memory).
HUGE = "why " * 250_000
#: Past the limit, yet short enough to be measured after the prompt is built (frames included).
LONG = "why " * 12_000


def mcq(sample_id: str = "s-mcq", question: str = "Which square appears first?", video: str = "DM0A1.mp4") -> Sample:
    return dataclasses.replace(rollout_mcq(sample_id, video), question=question)


def RecordingEngine() -> ScriptedEngine:  # noqa: N802 - reads like the engine it makes
    """An engine that answers every request and records them: a refused sample must leave it untouched."""
    return ScriptedEngine(by_turn("<think>The red square shows first.</think><answer>B</answer>"))


CONFIG = RolloutConfig(prompt=PromptConfig(budget=FrameBudget(max_frames=8)))


def run(samples: list[Sample], videos: Path, config: RolloutConfig = CONFIG, k: int = 2, **kw: Any):
    engine = RecordingEngine()
    groups = asyncio.run(rollout(samples, engine, k=k, config=config, video_root=videos, cache=FrameCache(), **kw))
    return engine, groups


# --- measuring -------------------------------------------------------------------------------------------------------


def test_the_default_limit_is_vitals_3072_raised_only_for_larger_frame_budgets() -> None:
    assert MAX_PROMPT_TOKENS == 3072
    assert default_prompt_limit(FrameBudget()) == 3072  # 64 frames of 224x224: 2048 vision tokens + 1024 words
    assert default_prompt_limit(FrameBudget(max_frames=8)) == 3072
    assert default_prompt_limit(FrameBudget(max_frames=128)) == 4096 + 1024  # the teacher's and SFT's budget
    assert RolloutConfig().prompt_limit == 3072 and RolloutConfig(max_prompt_tokens=10).prompt_limit == 10
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        RolloutConfig(max_prompt_tokens=0)


def test_prompt_tokens_count_words_and_vision_tokens_without_an_engine() -> None:
    frames = Frames(np.zeros((8, 224, 168, 3), np.uint8), [0.5 * i for i in range(8)], 2.0, 0.0, 4.0, "v.mp4")
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "abc"}]},
        {"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "defghi"}]},
    ]
    vision = 4 * (224 // 28) * (168 // 28)  # 8 frames in pairs, 8 x 6 tokens each
    assert prompt_tokens(messages) == 3 * 8 + vision + text_tokens("abc\ndefghi")

    class Tokenizer:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [0] * len(text.split())

    assert text_tokens("one two three", Tokenizer()) == 3
    assert text_tokens(HUGE, Tokenizer(), limit=3072) == text_tokens(HUGE)  # too big to tokenize: estimated


# --- the rollout loop ------------------------------------------------------------------------------------------------


def test_a_huge_question_is_refused_before_its_media_or_the_engine(demo_corpus: Path) -> None:
    # the video does not exist: had the media been read, the sample would be a media_error
    engine, (group,) = run([mcq("s-huge", HUGE, video="missing.mp4")], demo_corpus / "videos")
    assert engine.requests == []
    assert [t.finish_reason for t in group] == [PROMPT_TOO_LONG] * 2
    assert "longer than max_prompt_tokens 3072" in (group[0].error or "")
    assert PROMPT_TOO_LONG in FINISH_REASONS and PROMPT_TOO_LONG not in MODEL_OUTCOMES


def test_a_long_rendered_prompt_is_refused_and_a_normal_one_passes(demo_corpus: Path) -> None:
    videos = demo_corpus / "videos"
    engine, (long, normal) = run([mcq("s-long", LONG), mcq("s-ok")], videos)
    assert [t.finish_reason for t in long] == [PROMPT_TOO_LONG] * 2
    assert [t.finish_reason for t in normal] == [ANSWER] * 2
    assert [r.key for r in engine.requests] == ["s-ok/t0"]
    # the setting decides: a limit below a normal prompt refuses it too
    engine, (group,) = run([mcq("s-ok")], videos, dataclasses.replace(CONFIG, max_prompt_tokens=50))
    assert [t.finish_reason for t in group] == [PROMPT_TOO_LONG] * 2 and engine.requests == []


# --- the model stage -------------------------------------------------------------------------------------------------


def test_the_model_stage_gives_prompt_too_long_results_without_an_engine_call(demo_corpus: Path) -> None:
    engine = RecordingEngine()
    call = GradeSettings(
        engine=EngineConfig.model_construct(kind="scripted", settings={}), k=2, frames=FrameBudget(max_frames=4)
    )
    stage = GradeStage(call=call, tools=False)
    handler = StageHandler(stage, {"charades_sta": str(demo_corpus / "videos")}, engine_factory=lambda _: engine)
    results = list(handler.run_inference([mcq("s-huge", HUGE), mcq("s-ok")], handler.load_model()))
    assert [r.sample.id for r in results] == ["s-huge", "s-ok"]
    assert results[0].reason == PROMPT_TOO_LONG and (results[0].error or "").startswith(PROMPT_TOO_LONG)
    assert not stage.cacheable(results[0])
    assert results[1].error is None and results[1].reason is None and results[1].finish_reasons == [ANSWER] * 2
    assert [r.key for r in engine.requests] == ["s-ok/t0"]


def test_the_setting_reaches_the_loop_and_stays_out_of_the_cache_key() -> None:
    engine = EngineConfig.model_construct(kind="scripted", settings={})
    plain = GradeSettings(engine=engine)
    limited = GradeSettings(engine=engine, rollout={"max_prompt_tokens": 100})
    assert plain.rollout_config().max_prompt_tokens is None and plain.rollout_config().prompt_limit == 3072
    assert limited.rollout_config().prompt_limit == 100
    assert GradeStage(call=plain).config_hash == GradeStage(call=limited).config_hash


# --- the trainers ----------------------------------------------------------------------------------------------------


class NoTokenizerProcessor:
    tokenizer = None


def test_dgrpo_rollouts_refuse_a_row_count_and_log_it(demo_corpus: Path, caplog) -> None:
    from model.engine_api import SamplingSettings

    rows = [
        record_to_row(RlRow(mcq(sid, q), 2, 0.5, 0.5, 0.5, "medium", "p", False))
        for sid, q in (("s-huge", HUGE), ("s-huge", HUGE), ("s-ok", "Which square appears first?"))
    ]
    policy = PolicyRollouts(
        NoTokenizerProcessor(),
        video_root=demo_corpus / "videos",
        budget=FrameBudget(max_frames=4),
        sampling=SamplingSettings(),
    )
    engine = RecordingEngine()
    with caplog.at_level("WARNING"):
        trajectories = policy.trajectories(rows, engine)
    assert [t.finish_reason for t in trajectories] == [PROMPT_TOO_LONG, PROMPT_TOO_LONG, ANSWER]
    assert policy.refused[PROMPT_TOO_LONG] == 1  # one row (a group of 2 rollouts)
    assert "refused, prompt_too_long" in caplog.text and "s-huge" in caplog.text
    assert [r.key for r in engine.requests] == ["s-ok/t0"]


def test_sft_refuses_a_row_whose_prompt_is_too_long_with_the_reason(demo_corpus: Path) -> None:
    row = CotRow(mcq("s-huge", HUGE, video="missing.mp4"), [], "teacher", "h", 1.0, 0, False, False)
    with pytest.raises(PromptTooLong, match="max_prompt_tokens 5120"):  # SFT's 128 frames: 3072 + 2048
        sft_messages(row, demo_corpus / "videos")
    transform = SftTransform(NoTokenizerProcessor(), video_root=demo_corpus / "videos")
    batch = {k: [v] for k, v in record_to_row(row).items()}
    with pytest.raises(EncodingError, match="row s-huge: prompt_too_long"):
        transform(batch)
    assert transform.refused[PROMPT_TOO_LONG] == 1
    normal = CotRow(mcq("s-ok"), [], "teacher", "h", 1.0, 0, False, False)
    assert len(sft_messages(normal, demo_corpus / "videos", FrameBudget(max_frames=4))) == 2
