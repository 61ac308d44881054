"""Fixtures of the training tests: the demo's built shards (the real pipelines on the demo corpus) and a scripted
policy engine for the tests of DGRPO's pipeline logic (the real policy engine is exercised in test_dgrpo too)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from model.engine_api import Completion, GenerationRequest, cut_at_stop

GOOD = "<think>The answer is clear.</think><answer>{answer}</answer>"
CALL = (
    '<think>Look closer.</think><tool_call>{{"name": "get_video_clip_frame", "arguments": '
    '{{"start_time": {s}, "end_time": {e}}}}}</tool_call>'
)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mtvr demo` output (corpus, samples, tiny checkpoint, build/ with both configs), built once per session.

    The quick demo (no warm-up SFT of the grader): the trainers' tests need rows of every kind, not a realistic
    difficulty filter, and save about a minute."""
    from pipelines.demo import run_demo

    out = tmp_path_factory.mktemp("train_demo")
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_demo(out, warm_up=False) == 0  # the quick demo: random grader, every row kept
    assert (out / "build" / "cot").is_dir() and (out / "build" / "rl").is_dir()
    return out


def demo_paths(demo_dir: Path) -> dict[str, str]:
    """The config keys that point a training run at the demo build: model, data and video root."""
    return {
        "model": str(demo_dir / "tiny"),
        "data": str(demo_dir / "build"),
        "video_root": str(demo_dir / "corpus" / "videos"),
    }


#: The policy families the trainer tests that say "the trainers go through the family" run on: VITAL's Qwen2.5-VL (the
#: demo's own checkpoint) and Qwen3-VL (the session's tiny one, `tiny_checkpoints`), on the same demo build.
TRAIN_FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


def policy_model(demo_dir: Path, tiny_checkpoints, family: str) -> str:
    """The `model:` of a training run of `family` on the demo build: the demo's checkpoint for the default family."""
    return str(demo_dir / "tiny") if family == TRAIN_FAMILIES[0] else str(tiny_checkpoints(family))


#: Small DGRPO runs for the tests: 1 step, 4 rows of G = 2 per batch, short turns, few frames, no saving.
DGRPO_TEST_ARGS = {
    "max_steps": 1,
    "per_device_train_batch_size": 4,
    "num_generations": 2,
    "report_to": [],
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "logging_steps": 1,
}


def dgrpo_config(demo_dir: Path, out: Path, args: dict | None = None, **over):
    """A DGRPO config on the demo build for tests: `args` update DGRPO_TEST_ARGS, other keys replace the tree's."""
    from train.config import config_from_dict

    tree = {
        "kind": "dgrpo",
        **demo_paths(demo_dir),
        "output_dir": str(out),
        "tools": None,
        "frames": {"max_frames": 4},
        "rollout": {"max_new_tokens": 16, "max_total_tokens": 48},
        "args": {**DGRPO_TEST_ARGS, **(args or {})},
    }
    tree.update(over)
    return config_from_dict(tree)


class TextPolicy:
    """A scripted engine: each try's text is `reply(request, index)`, cut at the request's stop strings as a real
    engine cuts it. Counts its calls."""

    name = model = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, request: GenerationRequest, index: int) -> str:
        raise NotImplementedError

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        out = []
        for request in requests:
            group = []
            for i in range(request.settings.n):
                text, stop = cut_at_stop(self.reply(request, i), request.settings.stop)
                group.append(Completion(text, "stop", 10, len(text.split()), stop_string=stop))
            out.append(group)
        return out

    async def aclose(self) -> None:
        return None


class ScriptedPolicy(TextPolicy):
    """Completions alternating a well-formed answer and an untagged one, so every group has reward spread;
    video rows with tools first call the clip tool on [0, 2] s."""

    def reply(self, request: GenerationRequest, index: int) -> str:
        first_turn = request.messages[-1]["role"] == "user"
        if request.tools and first_turn:
            return CALL.format(s=0.0, e=2.0)
        # Later turns are requested one rollout at a time; their key says which: <id>/<rollout>/t<turn>.
        rollout = index if first_turn else int(request.key.split("/")[-2])
        return GOOD.format(answer="A") if rollout % 2 == 0 else "I am not sure."


@pytest.fixture
def scripted_policy() -> ScriptedPolicy:
    return ScriptedPolicy()
