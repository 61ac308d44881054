"""The generation engines keep the `Engine` contract (model.engine_api) whatever the back-end does.

- TransformersEngine on the tiny Qwen2.5-VL checkpoint (built once per module, ~1 s).
- OpenAIEngine against a REAL `transformers serve` on loopback (one subprocess per module, killed at the end):
  its measured quirks (n ignored, `stop` -> HTTP 500, `video_url` -> HTTP 500, unknown fields -> 422) are what the
  client's fallbacks are for.
- OpenAIEngine with a fake transport (httpx MockTransport) and injected sleep/clock: retries, timeouts,
  concurrency, vLLM's response fields.
- VLLMServer: the exact command line, the missing-vllm error, and the start/health/close lifecycle against a
  stand-in server script; a real vLLM run only where vLLM and a GPU exist (`require_vllm`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
httpx2 = pytest.importorskip("httpx2")

from model.engine_api import DEFAULT_STOP, Completion, GenerationRequest, SamplingSettings  # noqa: E402
from model.engines import make_engine  # noqa: E402
from model.engines.openai_engine import OpenAIEngine  # noqa: E402
from model.engines.transformers_engine import TransformersEngine  # noqa: E402
from model.engines.vllm_engine import (  # noqa: E402
    INSTALL_HINT,
    VLLMNotInstalledError,
    VLLMServer,
    VLLMServerError,
    VLLMSettings,
    find_vllm,
    free_port,
    http_ok,
    vllm_command,
)
from model.tiny_checkpoint import build_tiny_checkpoint  # noqa: E402

try:
    from mtvr_data.frames import Frames
except ImportError:  # the frame sampler is optional here: the engines only read these three fields

    @dataclass
    class Frames:  # type: ignore[no-redef]
        frames: np.ndarray
        times: list[float]
        sample_fps: float
        start: float
        end: float
        path: str


def _has_vllm() -> bool:
    import importlib.util

    return shutil.which("vllm") is not None or importlib.util.find_spec("vllm") is not None


require_vllm = pytest.mark.skipif(
    not (_has_vllm() and torch.cuda.is_available()), reason="needs vLLM and a CUDA GPU (pip install mtvr[vllm])"
)


# --- shared inputs ----------------------------------------------------------------------------------------------


def video(frames: int = 4, side: int = 56, fps: float = 2.0, seed: int = 0) -> Frames:
    array = np.random.default_rng(seed).integers(0, 256, size=(frames, side, side, 3), dtype=np.uint8)
    times = [(i + 0.5) / fps for i in range(frames)]
    return Frames(array, times, fps, 0.0, frames / fps, "clip.mp4")


def image(seed: int = 1) -> Frames:
    array = np.random.default_rng(seed).integers(0, 256, size=(1, 56, 84, 3), dtype=np.uint8)
    return Frames(array, [0.0], 1.0, 0.0, 0.0, "photo.jpg")


def video_request(settings: SamplingSettings, key: str = "video") -> GenerationRequest:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [{"type": "video", "video": video()}, {"type": "text", "text": "What happens?"}]},
    ]
    return GenerationRequest(messages, settings, key=key)


def image_request(settings: SamplingSettings, key: str = "image") -> GenerationRequest:
    content = [{"type": "image", "image": image()}, {"type": "text", "text": "Describe."}]
    return GenerationRequest([{"role": "user", "content": content}], settings, key=key)


def text_request(settings: SamplingSettings, text: str = "Hello there.", key: str = "text") -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": [{"type": "text", "text": text}]}], settings, key=key)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("engines") / "qwen2_5_vl_tiny")


@pytest.fixture(scope="module")
def engine(ckpt: Path) -> TransformersEngine:
    built = make_engine("transformers", model=str(ckpt), device="cpu", batch_size=8)
    assert isinstance(built, TransformersEngine)
    return built


# --- TransformersEngine -----------------------------------------------------------------------------------------


def _prompt_tokens(engine: TransformersEngine, request: GenerationRequest) -> int:
    """The processor's own count for one request, computed independently of the engine."""
    from model.engines.media import template_messages

    text = engine.processor.apply_chat_template(
        template_messages(request.messages), add_generation_prompt=True, tokenize=False
    )
    kwargs: dict[str, Any] = {}
    for message in request.messages:
        for part in message["content"]:
            if part["type"] == "video":
                frames = part["video"]
                kwargs = {
                    "videos": [frames.frames],
                    "video_metadata": [{"fps": frames.sample_fps, "total_num_frames": len(frames.frames)}],
                    "do_sample_frames": False,
                }
    return int(engine.processor(text=[text], return_tensors="pt", **kwargs)["input_ids"].shape[1])


def test_transformers_n_completions_for_a_mixed_batch(engine: TransformersEngine) -> None:
    settings = SamplingSettings(n=3, temperature=1.0, max_new_tokens=6, seed=0)
    requests = [video_request(settings), text_request(settings)]
    out = run(engine.generate(requests))
    assert [len(row) for row in out] == [3, 3]
    for request, row in zip(requests, out, strict=True):
        for completion in row:
            assert completion.ok, completion.error
            assert completion.prompt_tokens == _prompt_tokens(engine, request)
            assert 1 <= completion.completion_tokens <= 6
            assert completion.finish_reason in ("stop", "length")
    # 4 frames of 56x56 at 2 fps -> 8 video tokens on top of the text prompt.
    assert out[0][0].prompt_tokens > out[1][0].prompt_tokens


def test_transformers_video_fps_sets_the_temporal_positions(engine: TransformersEngine) -> None:
    """Qwen2.5-VL's time axis is 2 frames / fps per grid step: the sampler's fps must reach the model."""
    seen: list[Any] = []
    original = engine.hf_model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs["second_per_grid_ts"].tolist())
        return original(**kwargs)

    settings = SamplingSettings(temperature=0.0, max_new_tokens=2)
    slow, fast = video_request(settings, "slow"), video_request(settings, "fast")
    fast.messages[1]["content"][0]["video"] = video(fps=4.0)
    engine.hf_model.generate = spy
    try:
        out = run(engine.generate([slow, fast]))
    finally:
        del engine.hf_model.generate
    assert all(row[0].ok for row in out)
    assert seen == [[1.0, 0.5]]


def test_transformers_greedy_and_seeded_sampling_are_deterministic(engine: TransformersEngine) -> None:
    greedy = SamplingSettings(n=2, temperature=0.0, max_new_tokens=8)
    first = run(engine.generate([video_request(greedy), text_request(greedy)]))
    second = run(engine.generate([video_request(greedy), text_request(greedy)]))
    assert [[c.text for c in row] for row in first] == [[c.text for c in row] for row in second]
    assert first[0][0].text == first[0][1].text  # greedy: every sample is the same

    seeded = SamplingSettings(n=2, temperature=1.0, max_new_tokens=8, seed=123)
    a = run(engine.generate([text_request(seeded)]))
    b = run(engine.generate([text_request(seeded)]))
    assert [c.text for c in a[0]] == [c.text for c in b[0]]


class _ForceTokens(transformers.LogitsProcessor):
    """Makes the random model write a fixed token sequence (the tiny model never writes a stop string by itself)."""

    def __init__(self, prompt_width: int, forced: list[int]) -> None:
        self.prompt_width = prompt_width
        self.forced = forced

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        step = min(input_ids.shape[1] - self.prompt_width, len(self.forced) - 1)
        forced = torch.full_like(scores, -1e9)
        forced[:, self.forced[step]] = 0.0
        return forced


@contextlib.contextmanager
def forcing(engine: TransformersEngine, text: str | None = None, ids: list[int] | None = None) -> Iterator[list[int]]:
    """Patch the engine's model so `generate` writes `text` (or `ids`), through the real stop-string criteria."""
    forced = ids if ids is not None else engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    original = engine.hf_model.generate

    def generate(**kwargs: Any) -> Any:
        processor = _ForceTokens(kwargs["input_ids"].shape[1], forced)
        return original(**kwargs, logits_processor=transformers.LogitsProcessorList([processor]))

    engine.hf_model.generate = generate
    try:
        yield forced
    finally:
        del engine.hf_model.generate


def test_transformers_stop_string_is_cut_and_kept(engine: TransformersEngine) -> None:
    settings = SamplingSettings(n=2, temperature=0.0, max_new_tokens=20, stop=DEFAULT_STOP)
    with forcing(engine, "<think>A</think><answer>B</answer> and more text") as forced:
        out = run(engine.generate([text_request(settings), video_request(settings)]))
    expected = "<think>A</think><answer>B</answer>"
    used = next(k for k in range(1, len(forced) + 1) if engine.tokenizer.decode(forced[:k]).endswith(expected))
    for row in out:
        for completion in row:
            assert completion.text == expected
            assert completion.stop_string == "</answer>"
            assert completion.finish_reason == "stop"
            assert completion.completion_tokens == used  # the tokens up to the one that completed the stop string


def test_transformers_first_of_several_stop_strings_wins(engine: TransformersEngine) -> None:
    settings = SamplingSettings(temperature=0.0, max_new_tokens=30, stop=DEFAULT_STOP)
    with forcing(engine, '<tool_call>{"name": "get_video_clip_frame"}</tool_call><answer>B</answer>'):
        (row,) = run(engine.generate([text_request(settings)]))
    assert row[0].text == '<tool_call>{"name": "get_video_clip_frame"}</tool_call>'
    assert row[0].stop_string == "</tool_call>"


def test_transformers_length_and_eos_finish_reasons(engine: TransformersEngine) -> None:
    limit = SamplingSettings(temperature=0.0, max_new_tokens=4)
    with forcing(engine, "no stop string anywhere in this text"):
        (row,) = run(engine.generate([text_request(limit)]))
    assert row[0].finish_reason == "length"
    assert row[0].completion_tokens == 4
    assert row[0].stop_string is None

    eos = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    words = engine.tokenizer("Done.", add_special_tokens=False)["input_ids"]
    with forcing(engine, ids=[*words, eos]):
        (row,) = run(engine.generate([text_request(SamplingSettings(temperature=0.0, max_new_tokens=10))]))
    assert row[0].finish_reason == "stop"
    assert row[0].text == "Done."  # EOS ends the turn and is not part of the text
    assert row[0].completion_tokens == len(words) + 1  # EOS counts as a generated token, as in vLLM's usage


def test_transformers_bad_request_fails_alone(engine: TransformersEngine) -> None:
    settings = SamplingSettings(n=2, temperature=0.0, max_new_tokens=3)
    broken = video_request(settings, key="broken")
    broken.messages[1]["content"][0]["video"] = Frames(np.zeros((4, 56, 56), np.float32), [0.0], 2.0, 0, 2, "x")
    out = run(engine.generate([text_request(settings), broken, image_request(settings)]))
    assert [c.ok for c in out[0]] == [True, True]
    assert [c.finish_reason for c in out[1]] == ["error", "error"]
    assert "frames must be" in (out[1][0].error or "")
    assert [c.ok for c in out[2]] == [True, True]


def test_transformers_generate_leaves_the_event_loop_free(engine: TransformersEngine) -> None:
    async def main() -> int:
        ticks = 0
        task = asyncio.create_task(engine.generate([video_request(SamplingSettings(n=4, max_new_tokens=16))]))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.001)
        await task
        return ticks

    assert run(main()) > 1


# --- OpenAIEngine against a real `transformers serve` -------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    model: str
    startup_s: float


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process dies, so it can never outlive the suite."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def server(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    executable = Path(sys.executable).parent / "transformers"
    if not executable.exists():
        pytest.skip("transformers CLI not installed (pip install 'transformers[serving]')")
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(executable), "serve", str(ckpt), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
    try:
        while not http_ok(f"http://127.0.0.1:{port}/health", timeout_s=1.0):
            if process.poll() is not None or time.monotonic() - started > 120:
                pytest.fail(f"transformers serve did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        startup_s = time.monotonic() - started
        print(f"\ntransformers serve healthy after {startup_s:.1f} s")
        yield Server(f"http://127.0.0.1:{port}/v1", str(ckpt), startup_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        assert process.poll() is not None


def client_for(server: Server, **options: Any) -> OpenAIEngine:
    options.setdefault("max_retries", 3)  # transformers serve drops its keep-alive connection after a 500
    options.setdefault("backoff_s", 0.01)
    return OpenAIEngine(server.base_url, server.model, **options)


def test_server_takes_an_image_and_a_multi_frame_video(server: Server, engine: TransformersEngine) -> None:
    client = client_for(server)
    settings = SamplingSettings(temperature=0.0, max_new_tokens=5, stop=())
    out = run(client.generate([image_request(settings), video_request(settings), text_request(settings)]))
    for row in out:
        assert row[0].ok, row[0].error
        assert row[0].prompt_tokens > 0 and row[0].completion_tokens > 0
    # The image reached the model: the server's prompt count is the local processor's count for the same messages.
    (local,) = run(engine.generate([image_request(settings)]))
    assert out[0][0].prompt_tokens == local[0].prompt_tokens
    # Four frames as four labelled images: far more prompt tokens than the text alone.
    assert out[1][0].prompt_tokens > out[2][0].prompt_tokens + 4
    assert client.stats.calls == 3


def test_server_ignores_n_so_the_client_asks_again(server: Server) -> None:
    client = client_for(server)
    settings = SamplingSettings(n=3, temperature=1.0, max_new_tokens=4, stop=(), seed=5)
    (row,) = run(client.generate([text_request(settings)]))
    assert len(row) == 3 and all(c.ok for c in row)
    assert client.server_honours_n is False
    assert client.stats.calls == 3  # one call with n=3 (one choice back), then two n=1 calls
    assert client.stats.reasks == 1
    (row,) = run(client.generate([text_request(settings)]))  # now known: three n=1 calls straight away
    assert len(row) == 3 and client.stats.calls == 6


def test_server_rejects_stop_so_the_client_cuts(server: Server) -> None:
    client = client_for(server)
    plain = SamplingSettings(temperature=0.0, max_new_tokens=12, stop=())
    (row,) = run(client.generate([text_request(plain)]))
    full = row[0].text
    stop = next(full[i : i + 3] for i in range(2, len(full) - 3) if full[i : i + 3].isprintable())
    cut_at = full.index(stop) + len(stop)

    with_stop = SamplingSettings(temperature=0.0, max_new_tokens=12, stop=(stop, "</never>"))
    for request in (1, 2):  # transformers serve answers 500 to `stop`: each request fails twice carrying it, then
        (row,) = run(client.generate([text_request(with_stop)]))  # works without it; two in a row conclude
        assert row[0].text == full[:cut_at] and row[0].text.endswith(stop)
        assert row[0].finish_reason == "stop" and row[0].stop_string == stop
        assert 1 <= row[0].completion_tokens <= 12
        assert client.server_honours_stop is (None if request == 1 else False)
        assert client.stats.stop_fallbacks == request
    calls = client.stats.calls

    (row,) = run(client.generate([text_request(with_stop)]))  # remembered: no `stop` is sent any more
    assert row[0].text == full[:cut_at]
    assert (client.stats.stop_fallbacks, client.stats.calls) == (2, calls + 1)


def test_server_rejections_become_error_completions(server: Server) -> None:
    settings = SamplingSettings(temperature=0.0, max_new_tokens=4, stop=())
    # `video_url` fails inside transformers serve (HTTP 500: it tries to load the video's audio track).
    client = client_for(server, video_mode="video_url", max_retries=0)
    out = run(client.generate([video_request(settings), text_request(settings)]))
    assert out[0][0].finish_reason == "error" and "HTTP 500 after 0 retries" in (out[0][0].error or "")
    assert out[1][0].ok
    # vLLM's extra fields are refused (HTTP 422, unknown fields): not retried.
    client = client_for(server, vllm_extensions=True)
    (row,) = run(client.generate([text_request(settings)]))
    assert row[0].finish_reason == "error" and "HTTP 422" in (row[0].error or "")
    assert client.stats.calls == 1


def test_k4_two_turn_rollout_through_the_server(server: Server, demo_corpus: Path) -> None:
    """The rollout loop end to end through the OpenAI client against a real server: K = 4, a clip turn, rewards.

    The random model never writes a valid call, so the first turn is replaced by one (`ForcedFirstCall`) and the
    second turn carries the clip's frames to the server as images.
    """
    from model.prompts import PromptConfig
    from model.rollout import RolloutConfig, rollout
    from model.trajectory import MODEL_OUTCOMES
    from mtvr_data.frames import FrameBudget, FrameCache
    from tests.test_rollout import ForcedFirstCall, mcq

    client = client_for(server, video_mode="frames_as_images")
    config = RolloutConfig(
        prompt=PromptConfig(budget=FrameBudget(max_frames=4)),
        sampling=SamplingSettings(max_new_tokens=8, seed=0),
        max_turns=2,
    )
    (group,) = run(
        rollout(
            [mcq()], ForcedFirstCall(client), k=4, config=config, video_root=demo_corpus / "videos", cache=FrameCache()
        )
    )
    assert [t.index for t in group] == [0, 1, 2, 3]
    for traj in group:
        assert traj.finish_reason in MODEL_OUTCOMES, (traj.finish_reason, traj.error)
        assert len(traj.turns) == 2 and traj.turns[0].tool.ok and len(traj.turns[0].tool.frame_times) > 0
        assert traj.turns[1].prompt_tokens > traj.turns[0].prompt_tokens  # the clip went to the server
        assert traj.reward is not None and traj.reward.tool == 0.5
    assert client.stats.reasks > 0  # the server answered n = 4 with one choice; the client asked again


def test_mtvr_eval_through_the_server(server: Server, demo_corpus: Path, tmp_path: Path) -> None:
    """`mtvr eval` with the OpenAI-compatible engine against the real server: both settings are answered and scored
    and the table is written, streamed through the scheduler (one client per process, one request at a time here)
    and batch by batch (one client per thread), with the same greedy answers."""
    from model.trajectory import MODEL_OUTCOMES
    from mtvr_data.eval_metrics import read_results
    from pipelines.evaluate import EvalConfig, evaluate, results_name

    bench = {
        "name": "charades-sta",
        "annotations": str(demo_corpus / "annotations" / "charades_sta" / "charades_sta_train.txt"),
        "videos": str(demo_corpus / "videos"),
        "cap": 2,
    }
    # retries: transformers serve drops its keep-alive connection after each 500 it answers to `stop`
    engine = {"kind": "openai", "settings": {"base_url": server.base_url, "model": server.model, "max_retries": 3}}
    answers = {}
    for streaming in (True, False):  # streamed (the default) and batch by batch: the same greedy answers
        out = tmp_path / f"eval-{streaming}"
        config = EvalConfig.read(
            {
                "benchmarks": [bench],
                "out": str(out),
                "engine": engine,
                "tools": "both",
                "frames": {"max_frames": 4},
                "sampling": {"max_new_tokens": 8},
                "batching": {"streaming": streaming, "in_flight": 1},
            }
        )
        table = evaluate(config, ["--runner=DirectRunner"])
        assert table["run"]["engine"] == "openai" and table["run"]["model"] == server.model  # the served model
        for setting in ("tool_off", "tool_on"):
            rows = read_results(out / results_name("charades-sta", setting))
            assert len(rows) == 2
            assert all(r.status in ("ok", "no_answer") and r.finish_reason in MODEL_OUTCOMES for r in rows), rows
            answers.setdefault(setting, []).append([(r.id, r.prediction, r.finish_reason) for r in rows])
        assert (out / "table.md").read_text().count("| tool o") >= 2
    assert all(streamed == batched for streamed, batched in answers.values())


# --- OpenAIEngine with a fake transport ---------------------------------------------------------------------------


def chat_response(body: dict[str, Any], texts: list[str], **choice_fields: Any) -> dict[str, Any]:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop", **choice_fields}
        for i, t in enumerate(texts)
    ]
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": choices,
        "usage": {"prompt_tokens": 10, "completion_tokens": 7 * len(texts), "total_tokens": 10 + 7 * len(texts)},
    }


class FakeServer:
    """A scripted /v1/chat/completions: `script(body, call_index)` returns (status, json) or raises."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload = await self.script(body, len(self.bodies) - 1)
        finally:
            self.in_flight -= 1
        return httpx2.Response(status, json=payload)

    def engine(self, **options: Any) -> OpenAIEngine:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))
        options.setdefault("sleep", self.record_sleep)
        options.setdefault("jitter", None)
        self.sleeps: list[float] = []
        return OpenAIEngine("http://fake/v1", "fake-model", http_client=client, **options)

    async def record_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_fake_retries_5xx_with_backoff_then_succeeds() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        if i < 2:
            return 503, {"error": {"message": "busy"}}
        return 200, chat_response(body, ["fine"])

    fake = FakeServer(script)
    clock = FakeClock()
    client = fake.engine(max_retries=3, backoff_s=0.5, clock=clock)
    (row,) = run(client.generate([text_request(SamplingSettings(stop=()))]))
    assert row[0].ok and row[0].text == "fine"
    assert fake.sleeps == [0.5, 1.0]  # exponential backoff, no real waiting
    assert client.stats.retries == 2 and client.stats.calls == 3
    assert client.stats.call_seconds == 3.0  # the injected clock advances 1 s per reading


def test_fake_timeout_fails_one_request_and_not_the_batch() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        if "slow" in json.dumps(body["messages"]):
            await asyncio.sleep(5)
        return 200, chat_response(body, ["ok"])

    fake = FakeServer(script)
    client = fake.engine(max_retries=2, timeout_s=0.05)
    settings = SamplingSettings(n=2, stop=())
    out = run(
        client.generate([text_request(settings, "fast"), text_request(settings, "slow"), text_request(settings)])
    )
    assert [c.ok for c in out[0]] == [True, True] and [c.ok for c in out[2]] == [True, True]
    assert [c.finish_reason for c in out[1]] == ["error", "error"]
    assert "TimeoutError after 2 retries" in (out[1][0].error or "")
    assert len(fake.sleeps) == 2 and client.stats.failed_requests == 1


def test_fake_concurrency_limit_is_honoured() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        await asyncio.sleep(0.01)
        return 200, chat_response(body, ["ok"])

    fake = FakeServer(script)
    client = fake.engine(max_concurrency=3)
    out = run(client.generate([text_request(SamplingSettings(stop=()), f"q{i}") for i in range(10)]))
    assert all(row[0].ok for row in out)
    assert fake.max_in_flight == 3 == client.stats.max_in_flight


def test_fake_client_errors_are_not_retried_and_stop_is_dropped_on_evidence_only() -> None:
    """A server that answers 500 to every `stop` (transformers serve): each request fails carrying it twice (one
    backoff), works without it, and after two such requests in a row the engine concludes, once."""

    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        if "stop" in body:
            return 500, {"error": "stop criteria need a tokenizer"}
        if "bad" in json.dumps(body["messages"]):
            return 400, {"error": {"message": "bad request"}}
        return 200, chat_response(body, ["x</answer> tail"])

    fake = FakeServer(script)
    client = fake.engine(max_retries=3)
    settings = SamplingSettings(stop=DEFAULT_STOP)
    out = run(client.generate([text_request(settings, "bad")]))
    assert out[0][0].finish_reason == "error" and "HTTP 400" in (out[0][0].error or "")
    assert client.server_honours_stop is None  # failing without `stop` too is no evidence against it
    out = run(client.generate([text_request(settings, "good")]))
    assert out[0][0].text == "x</answer>" and out[0][0].stop_string == "</answer>"
    assert out[0][0].completion_tokens == 5  # ceil(7 usage tokens * 10 of the 15 characters kept)
    assert client.server_honours_stop is None  # one request is not yet a fact about the server
    run(client.generate([text_request(settings, "good2")]))
    assert client.server_honours_stop is False
    carried = sum(1 for b in fake.bodies if "stop" in b)
    run(client.generate([text_request(settings, "after")]))
    assert sum(1 for b in fake.bodies if "stop" in b) == carried == 6  # two tries each, none after the conclusion
    assert len(fake.sleeps) == 3  # one backoff per request before its try without `stop`


def test_fake_transient_500s_never_cost_a_server_its_stop_strings() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        if i % 3 == 0:  # every third call fails, whatever it carries
            return 500, {"error": "boom"}
        return 200, chat_response(body, ["x</answer>"])

    fake = FakeServer(script)
    client = fake.engine(max_retries=3)
    settings = SamplingSettings(stop=DEFAULT_STOP)
    for i in range(12):
        out = run(client.generate([text_request(settings, f"q{i}")]))
        assert out[0][0].ok
    assert all("stop" in body for body in fake.bodies) and len(fake.bodies) > 12
    assert client.server_honours_stop is True and client.stats.stop_fallbacks == 0


def test_fake_a_400_naming_stop_concludes_at_once_and_server_mode_never_falls_back() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        if "stop" in body:
            return 400, {"error": {"message": "Unsupported parameter: 'stop'"}}
        return 200, chat_response(body, ["x</answer>"])

    fake = FakeServer(script)
    client = fake.engine(max_retries=3)
    out = run(client.generate([text_request(SamplingSettings(stop=DEFAULT_STOP), "q")]))
    assert out[0][0].ok and client.server_honours_stop is False and fake.sleeps == []
    strict = FakeServer(script)
    pinned = strict.engine(max_retries=2, stop_mode="server")
    out = run(pinned.generate([text_request(SamplingSettings(stop=DEFAULT_STOP), "q")]))
    assert out[0][0].finish_reason == "error" and all("stop" in b for b in strict.bodies)


def test_fake_retry_after_is_honoured() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        return (429, {"error": "slow down"}) if i == 0 else (200, chat_response(body, ["ok"]))

    fake = FakeServer(script)
    original = fake.handle

    async def handle(request: Any) -> Any:
        response = await original(request)
        if response.status_code == 429:
            return httpx2.Response(429, json={"error": "slow down"}, headers={"Retry-After": "7"})
        return response

    fake.handle = handle  # type: ignore[method-assign]
    client = fake.engine(max_retries=2)
    assert run(client.generate([text_request(SamplingSettings(stop=()), "q")]))[0][0].ok
    assert fake.sleeps == [7.0]


def test_fake_circuit_breaker_holds_requests_while_the_server_is_down_and_gives_up_at_its_deadline() -> None:
    state = {"up": False, "health_checks": 0}

    async def handle(request: Any) -> Any:
        if not state["up"]:
            raise httpx2.ConnectError("connection refused")
        return httpx2.Response(200, json=chat_response(json.loads(request.content), ["x</answer>"]))

    async def health(url: str) -> bool:
        state["health_checks"] += 1
        if state["health_checks"] == 3:
            state["up"] = True  # the server comes back while requests wait
        return bool(state["up"])

    clock = FakeClock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    client = OpenAIEngine(
        "http://fake/v1", "fake-model", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle)),
        max_retries=3, breaker_failures=2, breaker_deadline_s=100.0, health_check=health, clock=clock, sleep=sleep,
        jitter=None,
    )  # fmt: skip
    assert client.health_url == "http://fake/health"
    out = run(client.generate([text_request(SamplingSettings(stop=()), f"q{i}") for i in range(4)]))
    assert all(row[0].ok for row in out)  # nobody gave up: they waited for the server
    assert state["health_checks"] >= 3 and client.stats.failed_requests == 0  # late failures may probe once more

    state.update(up=False, health_checks=-100)  # down for good this time
    out = run(client.generate([text_request(SamplingSettings(stop=()), f"r{i}") for i in range(3)]))
    assert all(row[0].finish_reason == "error" for row in out)
    assert any("unreachable for more than 100 s" in (row[0].error or "") for row in out)
    assert clock.now >= 100.0  # the probe kept trying until the deadline
    before = len(sleeps)
    out = run(client.generate([text_request(SamplingSettings(stop=()), "later")]))
    assert "unreachable" in (out[0][0].error or "") and len(sleeps) == before  # fails at once from then on


def test_fake_vllm_fields_counts_and_video_url() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        n = body.get("n", 1)
        response = chat_response(body, ["<think>a</think><tool_call>{}"] * n, stop_reason="</tool_call>")
        for choice in response["choices"]:  # per-token logprobs, as vLLM returns them with logprobs=true
            tokens = ["<think>", "a", "</think>", "<tool_call>", "{}", "</tool_call>"]
            choice["logprobs"] = {"content": [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]}
        return 200, response

    fake = FakeServer(script)
    client = fake.engine(video_mode="video_url", vllm_extensions=True, exact_token_counts=True, stop_mode="server")
    settings = SamplingSettings(n=2, temperature=0.7, max_new_tokens=64, seed=9, repetition_penalty=1.05)
    request = video_request(settings)
    request.messages.append({"role": "assistant", "content": [{"type": "text", "text": "<tool_call>{}</tool_call>"}]})
    clip = video(frames=6, fps=2.0, seed=3)
    request.messages.append(
        {"role": "tool", "content": [{"type": "video", "video": clip}, {"type": "text", "text": "Clip."}]}
    )
    (row,) = run(client.generate([request]))
    assert [c.text for c in row] == ["<think>a</think><tool_call>{}</tool_call>"] * 2  # vLLM stop_reason restored
    assert all(c.stop_string == "</tool_call>" and c.completion_tokens == 6 for c in row)
    (body,) = fake.bodies
    assert body["n"] == 2 and body["seed"] == 9 and body["stop"] == list(DEFAULT_STOP) and body["logprobs"] is True
    assert body["repetition_penalty"] == 1.05 and body["include_stop_str_in_output"] is True
    assert body["media_io_kwargs"] == {"video": {"fps": 2.0, "num_frames": 6}}
    user, assistant, tool = body["messages"][1:]
    url = user["content"][0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,") and len(url.split(",")) == 1 + 4
    assert base64.b64decode(url.split(",")[1])[:2] == b"\xff\xd8"  # each frame a JPEG
    assert assistant == {"role": "assistant", "content": "<tool_call>{}</tool_call>"}
    assert tool["role"] == "tool" and len(tool["content"][0]["video_url"]["url"].split(",")) == 1 + 6


def test_fake_frames_as_images_and_reask_seeds() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        return 200, chat_response(body, [f"answer {i}"])  # always one choice, whatever n says

    fake = FakeServer(script)
    client = fake.engine()
    settings = SamplingSettings(n=3, seed=100, stop=())
    request = video_request(settings)
    (row,) = run(client.generate([request]))
    assert sorted(c.text for c in row) == ["answer 0", "answer 1", "answer 2"]
    assert [b.get("n", 1) for b in fake.bodies] == [3, 1, 1]
    assert sorted(b["seed"] for b in fake.bodies) == [100, 101, 102]  # re-asks are not copies of the first
    parts = fake.bodies[0]["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"] * 4 + ["text"]
    assert parts[0]["text"] == "<0.2 seconds>" and parts[2]["text"] == "<0.8 seconds>"
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_fake_bad_media_fails_alone() -> None:
    async def script(body: dict[str, Any], i: int) -> tuple[int, Any]:
        return 200, chat_response(body, ["ok"])

    fake = FakeServer(script)
    client = fake.engine()
    broken = image_request(SamplingSettings(n=2))
    broken.messages[0]["content"][0]["image"] = Frames(np.zeros((2, 2)), [0.0], 1.0, 0, 0, "x")
    out = run(client.generate([broken, text_request(SamplingSettings())]))
    assert [c.finish_reason for c in out[0]] == ["error", "error"]
    assert out[1][0].ok and len(fake.bodies) == 1


# --- vLLM ---------------------------------------------------------------------------------------------------------


def test_vllm_command_line_is_exact() -> None:
    settings = VLLMSettings(
        model="Qwen/Qwen2.5-VL-7B-Instruct",
        max_frames_per_video=128,
        clip_max_frames=64,
        max_tool_turns=2,
        max_model_len=32768,
        gpu_memory_utilization=0.85,
        extra_args=("--max-num-seqs", "64"),
    )
    assert (settings.videos_per_prompt, settings.num_frames) == (3, 128)
    assert vllm_command(settings, 8123, ["/usr/bin/vllm", "serve"]) == [
        "/usr/bin/vllm",
        "serve",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--served-model-name",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "--enable-prefix-caching",
        "--limit-mm-per-prompt",
        '{"video": 3, "image": 1}',
        "--media-io-kwargs",
        '{"video": {"num_frames": 128}}',
        "--max-model-len",
        "32768",
        "--generation-config",
        "vllm",
        "--tensor-parallel-size",
        "1",
        "--dtype",
        "auto",
        "--seed",
        "0",
        "--gpu-memory-utilization",
        "0.85",
        "--max-num-seqs",
        "64",
    ]
    module = vllm_command(VLLMSettings(model="m"), 9, ["python", "-m", "vllm.entrypoints.openai.api_server"])
    assert module[:5] == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"]
    assert module[module.index("--limit-mm-per-prompt") + 1] == '{"video": 2, "image": 1}'
    assert module[module.index("--media-io-kwargs") + 1] == '{"video": {"num_frames": 64}}'


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_vllm_server_launches_with_the_checkpoints_family_arguments(tiny_checkpoints, family: str) -> None:
    """The family comes from the checkpoint's config.json: a Qwen3-VL folder gets `--mm-processor-kwargs` (no
    resampling or resizing of the frames sent), a Qwen2.5-VL one does not; both keep every frame and every video.
    (vLLM cannot run here: the command is recorded by a stand-in `popen`, the flags are vLLM's documented CLI.)"""
    ckpt = tiny_checkpoints(family)
    launched: list[list[str]] = []

    class Running:  # a server process that is up at once and never exits
        pid = -1

        def poll(self) -> None:
            return None

    def popen(command: list[str], **_: Any) -> Running:
        launched.append(command)
        return Running()

    settings = VLLMSettings(model=str(ckpt), port=8123, max_frames_per_video=32, clip_max_frames=16)
    server = VLLMServer(settings, launcher=["/usr/bin/vllm", "serve"], popen=popen, health=lambda url: True)
    try:
        server.start()
    finally:
        server.process = None  # nothing real to stop (close() would signal the stand-in's pid)
    (command,) = launched
    assert command[:3] == ["/usr/bin/vllm", "serve", str(ckpt)] and command == server.command
    assert settings.family().name == family

    def value(flag: str) -> Any:
        return json.loads(command[command.index(flag) + 1])

    assert value("--limit-mm-per-prompt") == {"video": 2, "image": 1}
    assert value("--media-io-kwargs") == {"video": {"num_frames": 32}}
    if family == "qwen3_vl":
        assert value("--mm-processor-kwargs") == {"do_sample_frames": False, "do_resize": False}
    else:
        assert "--mm-processor-kwargs" not in command


def test_vllm_launcher_lookup_and_missing_vllm_message() -> None:
    assert find_vllm(which=lambda name: "/opt/bin/vllm", find_spec=lambda name: None) == ["/opt/bin/vllm", "serve"]
    assert find_vllm(which=lambda name: None, find_spec=lambda name: object()) == [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]
    with pytest.raises(VLLMNotInstalledError, match=r"pip install mtvr\[vllm\]"):
        find_vllm(which=lambda name: None, find_spec=lambda name: None)
    assert INSTALL_HINT == "pip install mtvr[vllm]"
    if not _has_vllm():
        with pytest.raises(VLLMNotInstalledError):
            make_engine("vllm", model="Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(ValueError, match="unknown engine kind"):
        make_engine("tgi", model="x")  # type: ignore[arg-type]


FAKE_VLLM = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    argv = sys.argv[1:]
    open(argv[argv.index("--record") + 1], "w").write(json.dumps(argv))
    if "--die" in argv:
        print("boom: CUDA out of memory", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = "<answer>A"
            reply = {
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                             "stop_reason": "</answer>"} for i in range(body.get("n", 1))],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4 * body.get("n", 1), "total_tokens": 0},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    HTTPServer((argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])), Handler).serve_forever()
    """
)


def test_vllm_server_lifecycle_with_a_stand_in(tmp_path: Path) -> None:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    record = tmp_path / "argv.json"
    settings = VLLMSettings(model="tiny", extra_args=("--record", str(record)), startup_timeout_s=60)
    server = VLLMServer(settings, launcher=[sys.executable, str(script), "serve"], poll_s=0.05)
    client = server.engine(max_retries=0)
    try:
        assert server.process is not None and server.process.poll() is None
        assert json.loads(record.read_text()) == server.command[2:]
        (row,) = run(client.generate([text_request(SamplingSettings(n=2))]))
        assert [c.text for c in row] == ["<answer>A</answer>"] * 2  # vLLM's stop_reason restores the stop string
        assert client.name == "vllm" and client.video_mode == "video_url"
    finally:
        process = server.process
        run(client.aclose())  # closing the engine stops the server
    assert server.process is None and process is not None and process.poll() is not None


def test_vllm_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    settings = VLLMSettings(model="tiny", extra_args=("--record", str(tmp_path / "argv.json"), "--die"))
    server = VLLMServer(settings, launcher=[sys.executable, str(script), "serve"], poll_s=0.05)
    with pytest.raises(VLLMServerError, match="(?s)exited with code 3.*CUDA out of memory"):
        server.start()


@require_vllm
def test_vllm_real_server_on_the_tiny_checkpoint(ckpt: Path) -> None:
    """GPU machines only: a real `vllm serve` on the tiny checkpoint takes video_url frames, n, stop and seeds."""
    settings = VLLMSettings(model=str(ckpt), max_model_len=4096, gpu_memory_utilization=0.3, startup_timeout_s=900)
    client = VLLMServer(settings).engine()
    try:
        sampling = SamplingSettings(n=3, temperature=1.0, max_new_tokens=16, seed=1, stop=("a", "e"))
        out: list[list[Completion]] = run(client.generate([video_request(sampling), image_request(sampling)]))
        for row in out:
            assert len(row) == 3 and all(c.ok for c in row), [c.error for c in row]
            for c in row:
                assert c.stop_string is None or c.text.endswith(c.stop_string)
        assert client.stats.calls == 2 and client.server_honours_n is not False
    finally:
        run(client.aclose())


# --- every GPU of a worker: one vLLM server per GPU group ----------------------------------------------------------


def test_visible_gpus_and_their_groups() -> None:
    from model.engines.vllm_engine import gpu_groups, visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "3,1, GPU-ab12"}) == ["3", "1", "GPU-ab12"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == [] and visible_gpus({}, lambda: 2) == ["0", "1"]
    eight = [str(i) for i in range(8)]
    assert gpu_groups("auto", 1, eight) == [[g] for g in eight]
    assert gpu_groups("auto", 4, eight) == [eight[:4], eight[4:]]
    assert gpu_groups("auto", 3, eight) == [eight[:3], eight[3:6]]  # 6 and 7 fill no group of 3: idle
    assert gpu_groups(2, 1, eight) == [["0"], ["1"]] and gpu_groups([5, "2"], 2, eight) == [["5", "2"]]
    assert gpu_groups("auto", 1, []) == [[]]  # no GPU seen: one server, unpinned, as before
    for gpus, tp, message in ((9, 1, "only 8"), ([1, 1], 1, "distinct"), (["9"], 1, "distinct"), (2, 4, "needs 4")):
        with pytest.raises(ValueError, match=message):
            gpu_groups(gpus, tp, eight)
    with pytest.raises(ValueError, match="no GPU is visible"):
        gpu_groups(2, 1, [])
    with pytest.raises(ValueError, match="gpus must be"):
        VLLMSettings(model="m", gpus="all")


def test_a_server_per_gpu_group_pinned_and_balanced(ckpt: Path) -> None:
    """A fake launcher records each server's command and environment; the pool's client balances across them."""
    from model.engines.vllm_engine import VLLMServerPool
    from model.request_scheduler import BalancedEngine

    launched: list[tuple[list[str], dict[str, str]]] = []

    class Running:
        pid = -1

        def poll(self) -> None:
            return None

    def popen(command: list[str], env: dict[str, str], **_: Any) -> Running:
        launched.append((command, env))
        return Running()

    settings = VLLMSettings(model=str(ckpt), port=8123, tensor_parallel_size=2)
    pool = VLLMServerPool(
        settings, visible=["0", "1", "2", "3", "4"], launcher=["vllm", "serve"], popen=popen, health=lambda url: True
    )
    engine = pool.engine(max_concurrency=4)
    try:
        assert [env["CUDA_VISIBLE_DEVICES"] for _, env in launched] == ["0,1", "2,3"]  # GPU 4 fills no group of 2
        ports = [command[command.index("--port") + 1] for command, _ in launched]
        assert len(set(ports)) == 2 and "8123" not in ports  # several servers: each its own free port
        assert all(command[command.index("--tensor-parallel-size") + 1] == "2" for command, _ in launched)
        assert isinstance(engine, BalancedEngine)
        assert [e.base_url for e in engine.engines] == pool.base_urls and len(set(pool.base_urls)) == 2
    finally:
        for server in pool.servers:
            server.process = None  # nothing real to stop

    launched.clear()
    options: dict[str, Any] = {"launcher": ["vllm", "serve"], "popen": popen, "health": lambda url: True}
    single = VLLMServerPool(settings, visible=["6", "7"], **options)
    client = single.engine()
    single.servers[0].process = None
    ((command, env),) = launched
    assert env["CUDA_VISIBLE_DEVICES"] == "6,7" and command[command.index("--port") + 1] == "8123"
    assert isinstance(client, OpenAIEngine)
