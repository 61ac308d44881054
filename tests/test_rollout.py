"""The rollout loop, driven by a scripted engine over real demo media: every branch, and its scheduling."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.engine_api import Completion, GenerationRequest, SamplingSettings
from model.prompts import PromptConfig
from model.rollout import RolloutConfig, rollout, rollout_seed
from model.trajectory import (
    ANSWER,
    ENGINE_ERROR,
    FINISH_REASONS,
    MAX_TURNS,
    MEDIA_ERROR,
    NO_ANSWER,
    TOKEN_BUDGET,
    TOOL_TIMEOUT,
    Trajectory,
    to_messages,
)
from mtvr_data.frames import FrameBudget, FrameCache, Frames
from mtvr_data.schema import Sample
from mtvr_data.tools import BoundTools

# --- a scripted engine -------------------------------------------------------------------------------------------

#: (sample id, rollout index, turn) -> a text, a Completion, or an exception to raise.
Script = Callable[[str, int, int], Any]


def fake_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A deterministic stand-in for a tokenizer: 100 for system + user, then words and 2 per frame."""
    n = 100
    for message in messages[2:]:
        for part in message["content"]:
            n += len(part["text"].split()) + 1 if part["type"] == "text" else 2 * len(part["video"].times)
    return n


class ScriptedEngine:
    """Implements the Engine protocol with pre-written outputs; records every request it gets.

    `lock` makes generation serial (one accelerator); `delay` is slept per request; `on_generate` is called at
    the start of each request (tests use it to see what runs meanwhile).
    """

    name = "scripted"
    model = "scripted-model"

    def __init__(
        self,
        script: Script,
        *,
        delay: float = 0.0,
        serial: bool = False,
        on_generate: Callable[[], None] | None = None,
    ) -> None:
        self.script = script
        self.delay = delay
        self.lock = asyncio.Lock() if serial else None
        self.on_generate = on_generate
        self.requests: list[GenerationRequest] = []
        self.calls: list[int] = []  # requests per generate call

    def request(self, key: str) -> GenerationRequest:
        (found,) = [r for r in self.requests if r.key == key]
        return found

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(len(requests))
        return [await self._one(r) for r in requests]

    async def _one(self, request: GenerationRequest) -> list[Completion]:
        self.requests.append(request)
        if self.on_generate is not None:
            self.on_generate()
        if self.lock is not None:
            async with self.lock:
                await asyncio.sleep(self.delay)
        elif self.delay:
            await asyncio.sleep(self.delay)
        parts = request.key.split("/")
        sample_id, turn = parts[0], int(parts[-1][1:])
        out = []
        for i in range(request.settings.n):
            item = self.script(sample_id, i if len(parts) == 2 else int(parts[1]), turn)
            if isinstance(item, BaseException):
                raise item
            if not isinstance(item, Completion):
                stop = next((s for s in request.settings.stop if item.endswith(s)), None)
                item = Completion(item, "stop", fake_prompt_tokens(request.messages), len(item.split()) + 1, stop)
            out.append(item)
        return out

    async def aclose(self) -> None:
        pass


def by_turn(*turns: Any) -> Script:
    """The same outputs for every sample and rollout, one per turn."""
    return lambda sample_id, index, turn: turns[turn]


def think_answer(answer: str = "B") -> str:
    return f"<think>The red square shows first.</think><answer>{answer}</answer>"


def call(start: Any = 5, end: Any = 12, name: str = "get_video_clip_frame") -> str:
    args = json.dumps({"name": name, "arguments": {"start_time": start, "end_time": end}})
    return f"<think>Look closer at that moment.</think><tool_call>{args}</tool_call>"


# --- samples on the demo corpus ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(demo_corpus: Path) -> Path:
    return demo_corpus / "videos"


@pytest.fixture(scope="module")
def cache() -> FrameCache:
    return FrameCache()


def mcq(sample_id: str = "s-mcq", video: str = "DM0A1.mp4", duration: float = 30.0) -> Sample:
    return Sample(
        id=sample_id,
        source="charades_sta",
        task="mcq",
        modality="video",
        video=video,
        question="Which square appears first?",
        options=["blue square", "red square"],
        answer="B",
        answer_type="letter",
        duration=duration,
    )


def long_mcq(sample_id: str = "s-long") -> Sample:
    return mcq(sample_id, "longvila_videos/mtvrLong001.mp4", 240.0)


CONFIG = RolloutConfig(prompt=PromptConfig(budget=FrameBudget(max_frames=8)), tool_timeout_s=30.0)


def run(samples: list[Sample], engine: ScriptedEngine, videos: Path, cache: FrameCache, *, k: int = 1, **kw: Any):
    config = kw.pop("config", CONFIG)
    return asyncio.run(rollout(samples, engine, k=k, config=config, video_root=videos, cache=cache, **kw))


def single(groups: list[list[Trajectory]]) -> Trajectory:
    ((traj,),) = groups
    return traj


# --- branches ------------------------------------------------------------------------------------------------------


def test_answer_in_first_turn_shares_one_request_for_k(videos, cache):
    engine = ScriptedEngine(by_turn(think_answer()))
    (group,) = run([mcq()], engine, videos, cache, k=3)
    (request,) = engine.requests
    assert request.settings.n == 3 and request.settings.max_new_tokens == 1024 and request.key == "s-mcq/t0"
    assert request.settings.temperature == 1.0 and request.settings.repetition_penalty == 1.05
    video = request.messages[1]["content"][0]["video"]
    assert isinstance(video, Frames) and video.path == str(videos / "DM0A1.mp4") and len(video.times) == 8
    assert request.tools and request.tools[0]["function"]["name"] == "get_video_clip_frame"
    assert [t.index for t in group] == [0, 1, 2]
    for traj in group:
        assert traj.finish_reason == ANSWER and len(traj.turns) == 1 and traj.answer == "B"
        assert traj.reward is not None and (traj.reward.format, traj.reward.tool, traj.reward.task) == (1.0, 0.0, 1.0)
        assert traj.passed and traj.num_tool_calls == 0
        assert (
            traj.prompt_tokens == 100 and traj.completion_tokens > 0 and traj.response_tokens == traj.completion_tokens
        )


def test_valid_tool_call_returns_frames_of_the_bound_video(videos, cache):
    engine = ScriptedEngine(by_turn(call(5, 12), think_answer()))
    traj = single(run([mcq()], engine, videos, cache))
    assert traj.finish_reason == ANSWER and len(traj.turns) == 2
    step = traj.turns[0].tool
    assert step.ok and step.error is None and step.clip == (5.0, 12.0) and step.name == "get_video_clip_frame"
    assert len(step.frame_times) == 14 and all(5.0 - 0.05 <= t <= 12.0 + 0.05 for t in step.frame_times)
    second = engine.request("s-mcq/0/t1")
    assert second.settings.n == 1
    assistant, tool = second.messages[-2:]
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": call(5, 12)}]}
    assert tool["role"] == "tool"
    clip = tool["content"][0]["video"]
    assert clip.path == str(videos / "DM0A1.mp4") and clip.times == step.frame_times
    assert tool["content"][1]["text"] == "Video clip from 5.00 to 12.00 seconds."
    assert traj.reward.tool == 0.5 and traj.reward.format == 1.0 and traj.reward.total == 2.5 and traj.passed
    # Tool-turn tokens count toward the response: 14 frames (2 each) plus the caption's words.
    assert traj.response_tokens == traj.completion_tokens + 28 + 8 + 0
    messages = to_messages(traj)
    assert [m.role for m in messages] == ["assistant", "tool", "assistant"]
    assert messages[0].tool_calls[0].name == "get_video_clip_frame"
    assert json.loads(messages[0].tool_calls[0].arguments) == {"start_time": 5, "end_time": 12}
    assert (messages[1].clip.start, messages[1].clip.end, messages[1].clip.frame_times) == (
        5.0,
        12.0,
        step.frame_times,
    )


@pytest.mark.parametrize(
    ("turn_text", "code"),
    [
        ('<think>x</think><tool_call>{"name": "get_video_clip_frame", "arguments": {</tool_call>', "not_json"),
        (call(10, 31), "past_end"),
        (call(5, 12, name="open_file"), "unknown_tool"),
        ("<think>x</think></tool_call>", "no_tool_call_block"),
    ],
)
def test_invalid_tool_call_feeds_an_error_and_continues(videos, cache, turn_text, code):
    engine = ScriptedEngine(by_turn(turn_text, think_answer()))
    traj = single(run([mcq()], engine, videos, cache))
    step = traj.turns[0].tool
    assert not step.ok and step.error == code and step.clip is None and step.frame_times == []
    tool = engine.request("s-mcq/0/t1").messages[-1]
    assert [p["type"] for p in tool["content"]] == ["text"] and tool["content"][0]["text"].startswith("Error")
    assert traj.finish_reason == ANSWER and traj.reward.tool == 0.0 and traj.passed
    assert to_messages(traj)[1].clip is None


@pytest.mark.parametrize("max_turns", [3, 6])
def test_third_tool_call_is_refused(videos, cache, max_turns):
    engine = ScriptedEngine(by_turn(call(1, 4), call(5, 9), call(10, 14), think_answer()))
    config = RolloutConfig(prompt=CONFIG.prompt, max_turns=max_turns)
    traj = single(run([mcq()], engine, videos, cache, config=config))
    assert traj.finish_reason == MAX_TURNS and len(traj.turns) == 3 and len(engine.requests) == 3
    assert [t.tool is not None for t in traj.turns] == [True, True, False]
    assert traj.reward.tool == 1.0 and traj.reward.format == 0.0 and not traj.passed
    assert [m.role for m in to_messages(traj)] == ["assistant", "tool", "assistant", "tool", "assistant"]


def test_per_turn_budget(videos, cache):
    cut = Completion("<think>and so on and so on", "length", prompt_tokens=100, completion_tokens=1024)
    traj = single(run([mcq()], ScriptedEngine(by_turn(cut)), videos, cache))
    assert traj.finish_reason == TOKEN_BUDGET and len(traj.turns) == 1 and traj.completion_tokens == 1024
    assert traj.reward.total == 0.0 and not traj.passed


def test_total_budget_clips_the_next_turn_then_stops(videos, cache):
    engine = ScriptedEngine(by_turn(call(5, 12), call(14, 20), think_answer()))
    config = RolloutConfig(prompt=CONFIG.prompt, max_total_tokens=40)
    traj = single(run([mcq()], engine, videos, cache, config=config))
    assert engine.request("s-mcq/t0").settings.max_new_tokens == 40
    assert engine.request("s-mcq/0/t1").settings.max_new_tokens == 40 - traj.turns[0].completion_tokens
    assert traj.finish_reason == TOKEN_BUDGET and len(traj.turns) == 2 and traj.response_tokens > 40
    assert traj.turns[0].tool.ok and traj.turns[1].tool is None  # no budget left: the second call is not run


def test_no_answer_and_tools_off(videos, cache):
    traj = single(run([mcq()], ScriptedEngine(by_turn("<think>hmm</think>")), videos, cache))
    assert traj.finish_reason == NO_ANSWER and traj.reward.format == 0.0
    engine = ScriptedEngine(by_turn(call(5, 12)))
    config = RolloutConfig(tools=False, prompt=CONFIG.prompt, max_turns=1)
    traj = single(run([mcq()], engine, videos, cache, config=config))
    assert traj.finish_reason == NO_ANSWER and traj.turns[0].tool is None and not traj.tools
    (request,) = engine.requests
    assert request.tools is None and "<tools>" not in request.messages[0]["content"][0]["text"]


def test_image_sample_is_never_offered_tools(videos, cache):
    image = Sample("s-img", "video_r1", "open", "image", "demo/squares_4.png", "How many squares?", answer="4")
    image.answer_type = "number"
    engine = ScriptedEngine(by_turn(think_answer("4")))
    traj = single(run([image], engine, videos, cache))
    assert engine.requests[0].tools is None and not traj.tools
    assert traj.finish_reason == ANSWER and traj.passed and traj.reward.total == 2.0


def test_engine_error_ends_only_its_trajectories(videos, cache):
    def script(sample_id: str, index: int, turn: int) -> Any:
        if sample_id == "s-raise":
            return RuntimeError("server went away")
        if sample_id == "s-err" and index == 0:
            return call() if turn == 0 else Completion("", "error", error="HTTP 500")
        return think_answer()

    engine = ScriptedEngine(script)
    ok, err, raised = run([mcq("s-ok"), mcq("s-err"), mcq("s-raise")], engine, videos, cache, k=2)
    assert [t.finish_reason for t in ok] == [ANSWER, ANSWER] and all(t.passed for t in ok)
    assert [t.finish_reason for t in err] == [ENGINE_ERROR, ANSWER]
    assert err[0].error == "HTTP 500" and len(err[0].turns) == 1 and err[0].reward is None and not err[0].passed
    assert [t.finish_reason for t in raised] == [ENGINE_ERROR, ENGINE_ERROR]
    assert all(t.turns == [] and "server went away" in t.error and t.reward is None for t in raised)


def test_hanging_tool_times_out_only_there(videos, cache, monkeypatch):
    original = BoundTools.execute

    def execute(self: BoundTools, name: Any, arguments: Any):
        if self.ctx.path.endswith("mtvrLong001.mp4"):
            time.sleep(1.5)
        return original(self, name, arguments)

    monkeypatch.setattr(BoundTools, "execute", execute)
    engine = ScriptedEngine(by_turn(call(5, 12), think_answer()))
    config = RolloutConfig(prompt=CONFIG.prompt, tool_timeout_s=0.5)
    started = time.perf_counter()
    short, long = run([mcq(), long_mcq()], engine, videos, cache, config=config)
    assert time.perf_counter() - started < 1.4  # the abandoned thread is not waited for
    assert short[0].finish_reason == ANSWER and short[0].passed
    (traj,) = long
    assert traj.finish_reason == TOOL_TIMEOUT and traj.turns[0].tool.error == TOOL_TIMEOUT and traj.reward is None
    assert to_messages(traj)[-1].role == "assistant"  # the model never saw a tool turn


def test_media_error_sample_does_not_stop_the_others(videos, cache):
    engine = ScriptedEngine(by_turn(think_answer()))
    broken, missing, fine = run(
        [mcq("s-broken", "broken_empty.mp4"), mcq("s-missing", "ZZ9ZZ.mp4"), mcq()], engine, videos, cache, k=2
    )
    assert [t.finish_reason for t in broken + missing] == [MEDIA_ERROR] * 4
    assert broken[0].error.startswith("video_empty") and missing[0].error.startswith("video_missing")
    assert all(t.turns == [] and t.reward is None and not t.passed for t in broken + missing)
    assert [t.finish_reason for t in fine] == [ANSWER, ANSWER]
    assert [r.key for r in engine.requests] == ["s-mcq/t0"]


def test_hint_is_appended_to_the_user_turn_only(videos, cache):
    engine = ScriptedEngine(by_turn(think_answer()))
    run([mcq(), mcq("s-other")], engine, videos, cache, hints={"s-mcq": "HINT: the answer is B."})
    hinted, plain = engine.request("s-mcq/t0"), engine.request("s-other/t0")
    assert hinted.messages[1]["content"][-1]["text"].endswith("\nHINT: the answer is B.")
    assert "HINT" not in plain.messages[1]["content"][-1]["text"]
    assert hinted.messages[0] == plain.messages[0]


def test_perturbations_change_only_their_samples_prompt_frames(videos, cache):
    from mtvr_data.frames import FramePerturbation

    engine = ScriptedEngine(by_turn(think_answer()))
    noise = FramePerturbation("noise", 20.0, seed=1)
    run([mcq(), mcq("s-other")], engine, videos, cache, perturbations={"s-mcq": noise})
    noisy, clean = (engine.request(f"{i}/t0").messages[1]["content"][0]["video"] for i in ("s-mcq", "s-other"))
    assert noisy.times == clean.times and not np.array_equal(noisy.frames, clean.frames)
    # A perturbation in the prompt config applies to every sample; a per-sample one takes its place.
    config = dataclasses.replace(CONFIG, prompt=dataclasses.replace(CONFIG.prompt, perturbation=noise))
    engine = ScriptedEngine(by_turn(think_answer()))
    run([mcq("s-third")], engine, videos, cache, config=config)
    assert np.array_equal(engine.request("s-third/t0").messages[1]["content"][0]["video"].frames, noisy.frames)


def test_finish_reasons_are_a_closed_set(videos, cache):
    engine = ScriptedEngine(lambda s, i, t: [think_answer(), call(), "<think>x</think>"][(i + t) % 3])
    groups = run([mcq(), long_mcq()], engine, videos, cache, k=4)
    assert {t.finish_reason for g in groups for t in g} <= set(FINISH_REASONS)


# --- seeds and the clip budget -------------------------------------------------------------------------------------


def _seeds_by_key(engine: ScriptedEngine) -> dict[str, tuple[int, int | None]]:
    return {r.key: (r.settings.n, r.settings.seed) for r in engine.requests}


def test_build_seed_becomes_a_seed_per_request(videos, cache):
    """Turn 0: one n=K request seeded rollout_seed(b, id, 0); turn t of rollout i: rollout_seed(b, id, i, t)."""

    def script(sample_id: str, index: int, turn: int) -> str:
        """Rollout 0 answers at once, the others call the tool twice. (A hint does not move the seeds.)"""
        return think_answer() if index == 0 or turn == 2 else call(5 + turn, 12 + turn)

    seeded = dataclasses.replace(CONFIG, sampling=SamplingSettings(seed=7))
    engine = ScriptedEngine(script)
    run([mcq("s-a"), mcq("s-b")], engine, videos, cache, k=3, config=seeded, hints={"s-a": "HINT"})
    expected = {}
    for sid in ("s-a", "s-b"):
        expected[f"{sid}/t0"] = (3, rollout_seed(7, sid, 0))
        for i in (1, 2):
            for t in (1, 2):
                expected[f"{sid}/{i}/t{t}"] = (1, rollout_seed(7, sid, i, t))
    assert _seeds_by_key(engine) == expected
    assert len({seed for _, seed in expected.values()}) == len(expected)

    # Another order, one sample at a time, coalesced engine calls: the same seed for the same conversation turn.
    again = ScriptedEngine(script, serial=True)
    config = dataclasses.replace(seeded, max_concurrent_samples=1, max_engine_calls=1, workers=1)
    run([mcq("s-b"), mcq("s-a")], again, videos, cache, k=3, config=config)
    assert _seeds_by_key(again) == expected


def test_no_build_seed_sends_no_seed(videos, cache):
    engine = ScriptedEngine(lambda s, i, t: [call(5, 12), think_answer()][t])
    run([mcq()], engine, videos, cache, k=2)
    assert len(engine.requests) == 3 and all(r.settings.seed is None for r in engine.requests)


def test_clip_budget_comes_from_the_prompt_config(videos, cache):
    """A clip is sampled with `PromptConfig.clip_budget`, and replaying the trajectory re-renders that same clip."""
    from model.prompts import replay_conversation
    from mtvr_data.tools import CLIP_BUDGET

    small = dataclasses.replace(CLIP_BUDGET, max_frames=4)
    config = dataclasses.replace(CONFIG, prompt=dataclasses.replace(CONFIG.prompt, clip_budget=small))
    engine = ScriptedEngine(by_turn(call(5, 12), think_answer()))
    traj = single(run([mcq()], engine, videos, cache, config=config))
    step = traj.turns[0].tool
    assert step.ok and len(step.frame_times) == 4  # 14 with the default budget (2 fps over 7 s)
    clip = engine.request("s-mcq/0/t1").messages[-1]["content"][0]["video"]
    assert len(clip.times) == 4
    replayed = replay_conversation(mcq(), str(videos / "DM0A1.mp4"), to_messages(traj), cache, clip_budget=small)
    assert replayed[1]["content"][0]["video"].times == clip.times
    assert np.array_equal(replayed[1]["content"][0]["video"].frames, clip.frames)


# --- scheduling ----------------------------------------------------------------------------------------------------


def test_tool_work_overlaps_generation(videos, cache, monkeypatch):
    """8 conversations on a serial engine (0.1 s per turn) with a 0.2 s tool: tools run beside generation."""
    original = BoundTools.execute
    lock = threading.Lock()
    state = {"tools": 0, "max_tools": 0, "generate_while_tool": 0}

    def slow_execute(self: BoundTools, name: Any, arguments: Any):
        with lock:
            state["tools"] += 1
            state["max_tools"] = max(state["max_tools"], state["tools"])
        try:
            time.sleep(0.2)
            return original(self, name, arguments)
        finally:
            with lock:
                state["tools"] -= 1

    def on_generate() -> None:
        with lock:
            state["generate_while_tool"] += state["tools"] > 0

    monkeypatch.setattr(BoundTools, "execute", slow_execute)
    engine = ScriptedEngine(by_turn(call(5, 12), think_answer()), delay=0.1, serial=True, on_generate=on_generate)
    samples = [mcq(f"s{i}") for i in range(8)]
    groups = run(samples, engine, videos, cache)
    assert all(g[0].finish_reason == ANSWER and g[0].turns[0].tool.ok for g in groups)
    assert state["max_tools"] > 1  # several tool calls in flight at once
    assert state["generate_while_tool"] >= 4  # generation requests went out while tools were running


def test_coalesced_engine_calls_batch_waiting_requests_and_isolate_failures(videos, cache):
    """max_engine_calls=1: requests queued while a call runs go together; a raising batch is retried one by one."""

    def script(sample_id: str, index: int, turn: int) -> Any:
        if sample_id == "s3" and turn == 1:
            return RuntimeError("this request is poison")
        return [call(5, 12), think_answer()][turn]

    engine = ScriptedEngine(script, delay=0.05, serial=True)
    config = RolloutConfig(prompt=CONFIG.prompt, max_engine_calls=1)
    groups = run([mcq(f"s{i}") for i in range(6)], engine, videos, cache, k=2, config=config)
    assert len(engine.requests) > len(engine.calls) and max(engine.calls) > 1
    for i, group in enumerate(groups):
        expected = [ENGINE_ERROR] * 2 if i == 3 else [ANSWER] * 2
        assert [t.finish_reason for t in group] == expected
    assert "poison" in groups[3][0].error


# --- end to end on the tiny model ----------------------------------------------------------------------------------


class ForcedFirstCall:
    """Wraps a real engine and replaces each first-turn text by a valid tool call (a random model never writes
    one), so the second turn runs through the real engine with the clip in its prompt."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name, self.model = engine, engine.name, engine.model

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        out = await self.engine.generate(requests)
        for request, completions in zip(requests, out, strict=True):
            if request.key.endswith("/t0"):
                for c in completions:
                    c.text, c.finish_reason = call(5, 12), "stop"
        return out

    async def aclose(self) -> None:
        await self.engine.aclose()


def test_end_to_end_on_the_tiny_model(videos, cache, tmp_path):
    pytest.importorskip("torch")
    from model.engines.transformers_engine import TransformersEngine
    from model.tiny_checkpoint import build_tiny_checkpoint

    engine = TransformersEngine(str(build_tiny_checkpoint(tmp_path / "tiny")), device="cpu", batch_size=8)
    sampling = SamplingSettings(max_new_tokens=16, seed=0)
    config = RolloutConfig(
        prompt=PromptConfig(budget=FrameBudget(max_frames=4)), sampling=sampling, max_turns=2, max_engine_calls=1
    )
    (group,) = run([mcq()], engine, videos, cache, k=4, config=config)
    assert [t.index for t in group] == [0, 1, 2, 3]
    for traj in group:
        assert traj.finish_reason in FINISH_REASONS and traj.finish_reason not in (ENGINE_ERROR, MEDIA_ERROR)
        assert traj.prompt_tokens > 0 and traj.completion_tokens > 0 and traj.reward is not None
        assert traj.turns[0].completion_tokens <= 16 and traj.reward.total >= 0.0

    (group,) = run([mcq()], ForcedFirstCall(engine), videos, cache, k=4, config=config)
    for traj in group:
        assert len(traj.turns) == 2 and traj.turns[0].tool.ok and traj.num_successful_tool_calls == 1
        second = traj.turns[1]
        assert second.prompt_tokens > traj.turns[0].prompt_tokens + 14  # the clip's frames are in the prompt
        assert traj.response_tokens > traj.completion_tokens and traj.reward.tool == 0.5
        assert traj.finish_reason in (ANSWER, NO_ANSWER, MAX_TURNS, TOKEN_BUDGET)
