"""Teacher mode: hints, the noise rule, routing, really executed tool chains, verification, CoT rows for SFT."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from model.engine_api import SamplingSettings
from model.prompts import PromptConfig
from model.rollout import RolloutConfig
from model.teacher import (
    HINT_HEAD,
    TeacherConfig,
    expected_answer,
    hint_for,
    make_cot_row,
    noisy_interval,
    select,
    teacher_rollouts,
    verify,
    wants_tool_chain,
)
from model.trajectory import ANSWER, Trajectory, Turn
from mtvr_data.frames import FrameBudget, FrameCache
from mtvr_data.parquet_io import read_parquet, write_parquet
from mtvr_data.rewards import task_reward
from mtvr_data.schema import Sample
from tests.test_rollout import ScriptedEngine
from train.data import sft_messages

CONFIG = TeacherConfig()
SMALL = PromptConfig(budget=FrameBudget(max_frames=8))


def tg(sample_id: str, video: str, duration: float, span: list[float], source: str = "charades_sta") -> Sample:
    return Sample(
        id=sample_id,
        source=source,
        task="tg",
        modality="video",
        video=video,
        question="the white square appears",
        answer_type="span",
        span=span,
        windows=[span],
        duration=duration,
    )


def long_qa() -> Sample:
    return Sample(
        id="lvr-1",
        source="longvideo_reason",
        task="mcq",
        modality="video",
        video="longvila_videos/mtvrLong001.mp4",
        question="What color is the square shown at the start?",
        options=["blue", "red", "green"],
        answer="B",
        duration=240.0,
    )


SHORT_TG = tg("cha-1", "DM0A1.mp4", 30.0, [5.0, 12.0])
LONG_TG = tg("vc-1", "mtvrChapt01.mp4", 180.0, [50.0, 70.0], source="vidchapters")


# --- hints and the noise rule ----------------------------------------------------------------------------------------


def test_noisy_interval_is_seeded_bounded_and_valid():
    first = noisy_interval(LONG_TG)
    assert first == noisy_interval(LONG_TG)  # deterministic per sample id
    assert abs(first[0] - 50.0) <= 4.0 + 0.005 and abs(first[1] - 70.0) <= 4.0 + 0.005  # 20% of 20 s
    others = {noisy_interval(tg(f"vc-{i}", "x.mp4", 180.0, [50.0, 70.0])) for i in range(20)}
    assert len(others) > 15  # the noise differs between samples
    for start, end in others:
        assert start >= 46.0 - 0.005 and end <= 74.0 + 0.005 and end - start > 1.0
    edge = tg("edge", "x.mp4", 10.0, [9.5, 10.0])  # short span at the very end: widened inside the video
    start, end = noisy_interval(edge)
    assert start >= 0.0 and end <= 10.0 and end - start > 1.0


def test_routing_by_source_and_duration():
    assert not wants_tool_chain(SHORT_TG, CONFIG)
    assert wants_tool_chain(LONG_TG, CONFIG) and wants_tool_chain(long_qa(), CONFIG)
    assert wants_tool_chain(tg("anet", "a.mp4", 150.0, [1.0, 9.0], source="activitynet_captions"), CONFIG)
    image = Sample("img", "vidchapters", "open", "image", "a.png", "q", answer="4", answer_type="number")
    assert not wants_tool_chain(image, CONFIG)


@pytest.mark.parametrize("sample", [SHORT_TG, long_qa()])
def test_expected_answer_is_what_the_parser_reads(sample):
    assert task_reward(sample, f"<think>x</think><answer>{expected_answer(sample)}</answer>").passed


def test_hints_by_mode():
    text = hint_for(SHORT_TG, False, CONFIG)
    assert "5.00 - 12.00 seconds" in text and "Do not call any tool" in text
    start, end = noisy_interval(LONG_TG)
    assert f"start_time {start:.2f} and end_time {end:.2f}" in hint_for(LONG_TG, True, CONFIG)
    assert "holds the evidence" in hint_for(long_qa(), True, CONFIG)


# --- the teacher through the rollout loop ------------------------------------------------------------------------


def hinted_script(engine: ScriptedEngine) -> Any:
    """A teacher that follows its hint: calls the hinted interval (or one it picks), then gives the answer."""

    def script(sample_id: str, index: int, turn: int) -> str:
        request = next(r for r in reversed(engine.requests) if r.key.startswith(sample_id + "/"))
        user = request.messages[1]["content"][-1]["text"]
        answer = re.search(r"The correct final answer is: (.*)", user).group(1)
        if request.tools and turn == 0:
            m = re.search(r"start_time (\d+\.\d+) and end_time (\d+\.\d+)", user)
            start, end = (float(m.group(1)), float(m.group(2))) if m else (2.0, 30.0)
            args = f'{{"start_time": {start}, "end_time": {end}}}'
            call = f'{{"name": "get_video_clip_frame", "arguments": {args}}}'
            return f"<think>The moment should be around there.</think><tool_call>{call}</tool_call>"
        return f"<think>The clip shows it clearly.</think><answer>{answer}</answer>"

    return script


@pytest.fixture(scope="module")
def runs(demo_corpus: Path):
    engine = ScriptedEngine(lambda *a: "")
    engine.script = hinted_script(engine)
    config = TeacherConfig(rollout=RolloutConfig(sampling=SamplingSettings(temperature=0.7), prompt=SMALL))
    samples = [SHORT_TG, LONG_TG, long_qa()]
    out = asyncio.run(
        teacher_rollouts(samples, engine, k=2, config=config, video_root=demo_corpus / "videos", cache=FrameCache())
    )
    return engine, config, out


def test_modes_and_hints_reach_the_teacher(runs):
    engine, _, (short, long, qa) = runs
    assert (short.tools, long.tools, qa.tools) == (False, True, True)
    first = engine.request("cha-1/t0")
    assert first.tools is None and first.settings.n == 2
    assert first.messages[1]["content"][-1]["text"].endswith(short.hint)
    assert engine.request("vc-1/t0").tools is not None


def test_teacher_tool_calls_are_really_executed(runs):
    _, _, (short, long, qa) = runs
    assert all(t.finish_reason == ANSWER and t.num_tool_calls == 0 for t in short.trajectories)
    for traj in long.trajectories:
        (step,) = traj.tool_steps
        assert step.ok and step.clip == noisy_interval(LONG_TG) and len(step.frame_times) > 0
    assert qa.trajectories[0].tool_steps[0].clip == (2.0, 30.0)
    for run in (short, long, qa):
        best, reasons = select(run)
        assert best is not None and reasons == []
        assert verify(best, run.sample, require_tools=run.tools) == (True, None)


def test_cot_row_holds_the_student_prompt_and_replays_the_clip(runs, demo_corpus, tmp_path):
    _, config, (_, long, _) = runs
    best, _ = select(long)
    row = make_cot_row(long.sample, best, teacher="scripted-model", config=config)
    assert [m.role for m in row.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert (
        row.answer_conditioned and row.tools and row.num_tool_calls == 1 and row.reward == 2.5
    )  # format 1 + one call 0.5 + IoU 1
    assert all("correct final answer" not in m.content and "start_time 4" not in m.content for m in row.messages[:2])
    assert "<tools>" in row.messages[0].content
    (back,) = read_parquet(write_parquet(tmp_path / "cot.parquet", [row]), "cot")
    assert back.messages[3].clip.frame_times == best.tool_steps[0].frame_times

    messages = sft_messages(row, demo_corpus / "videos", SMALL.budget)  # what SFT trains on
    assert "<tools>" in messages[0]["content"][0]["text"] and len(messages) == 5
    assert all(HINT_HEAD.split(":")[0] not in str(p.get("text", "")) for m in messages for p in m["content"])
    tool = messages[3]
    assert tool["role"] == "tool" and tool["content"][0]["video"].times == best.tool_steps[0].frame_times
    assert messages[2]["content"][0]["text"] == best.turns[0].text


# --- verify ----------------------------------------------------------------------------------------------------------


def traj(*texts: str, finish: str = ANSWER) -> Trajectory:
    turns = [Turn(t, "stop", 10, 5, 1024) for t in texts]
    return Trajectory("x", 0, tools=False, turns=turns, finish_reason=finish)


@pytest.mark.parametrize(
    ("trajectory", "reason"),
    [
        (traj("<think>x</think><answer>5.00 - 12.00 seconds</answer>"), None),
        (traj("<think>x</think><answer>20 - 28 seconds</answer>"), "wrong_answer"),
        (traj("<answer>5.00 - 12.00 seconds</answer>"), "format_must_start_with_think"),
        (traj("<think>the hint says so</think><answer>5.00 - 12.00 seconds</answer>"), "mentions_hint"),
        (traj("<think>x</think>", finish="no_answer"), "no_answer"),
    ],
)
def test_verify_reasons(trajectory, reason):
    assert verify(trajectory, SHORT_TG) == (reason is None, reason)


def test_verify_tool_requirements(runs):
    _, _, (short, long, _) = runs
    assert verify(short.trajectories[0], SHORT_TG, require_tools=True) == (False, "no_tool_call")
    assert verify(long.trajectories[0], LONG_TG, require_tools=False) == (False, "unexpected_tool_call")
    first = long.trajectories[0].turns[0]
    bad_step = dataclasses.replace(first.tool, ok=False, error="past_end", clip=None, frame_times=[])
    failed = dataclasses.replace(
        long.trajectories[0], turns=[dataclasses.replace(first, tool=bad_step), *long.trajectories[0].turns[1:]]
    )
    assert verify(failed, LONG_TG) == (False, "tool_past_end")
