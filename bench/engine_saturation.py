"""How busy the model server stays during a grading build: the batch-synchronous handler against streaming.

Run from the repository root: `.venv/bin/python bench/engine_saturation.py` (about 10 minutes on 2 cores; its
`--ms-per-token` makes the simulated server, not these 2 cores, the bottleneck, as a GPU is).

A GPU-shaped test bed without a GPU: `SimServer` is an OpenAI-compatible /v1/chat/completions on loopback that
behaves like a GPU server's scheduler, not like a model: `slots` sequences decode at once (a request with n
choices needs n), each choice takes `tokens x seconds_per_token`, with lengths drawn from a long-tailed (log-normal)
distribution capped at `max_tokens`, and it answers with VITAL-shaped text that ends at a stop string (a tool call
on a first turn with `tool_rate`, else an answer). It is a scripted stand-in, so it measures only scheduling: the
real-engine tests are elsewhere.

Busy fraction = slot-seconds used / slot-seconds available, from the first request to the last answer of the
build's model stage (work was waiting all that time: the build had samples left). 1.0 means no slot was ever idle.

Each figure comes from a real `mtvr build-rl` pipeline (`pipelines.build_rl.build_rl`, DirectRunner) over
`--samples` Charades-STA questions on the demo corpus's videos, K rollouts each, in the same run:
- `batch-sync`: `batching.streaming: false` (RunInference, one event loop per batch of `max_batch_size`);
- `streaming`: the default (`StreamingInference` and the process's `StreamingScheduler`, `in_flight` = the slots
  x `--headroom`, so a request is queued at the server the moment a slot frees);
- `streaming + 200 ms tools`: the same with tools on and every clip-tool call made 200 ms slower;
- `2 servers`: streaming over two SimServers behind one `BalancedEngine` (`in_flight` for both servers):
  each server's busy fraction, the sequences each was sent, and the imbalance of their work (slot-seconds of
  decoding: (most - least) / mean). Balancing is by sequences in flight, so a server that drew long answers is
  sent fewer sequences: the work, not the count, is what should be even.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn  # noqa: E402
import yaml  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


class SimServer:
    """A loopback chat server with `slots` decoding slots and long-tailed answer lengths (module docstring)."""

    def __init__(
        self, *, slots: int, seconds_per_token: float, median_tokens: int, tool_rate: float, seed: int
    ) -> None:
        self.slots, self.spt, self.median, self.tool_rate = slots, seconds_per_token, median_tokens, tool_rate
        self.rng = random.Random(seed)
        self.free: asyncio.Semaphore | None = None
        self.busy_seconds = 0.0
        self.first: float | None = None
        self.last = 0.0
        self.sequences = 0
        self.port = _free_port()
        self._server: uvicorn.Server | None = None

    def reset(self) -> None:
        self.busy_seconds, self.first, self.last, self.sequences = 0.0, None, 0.0, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def busy_fraction(self) -> float:
        if self.first is None or self.last <= self.first:
            return 0.0
        return self.busy_seconds / (self.slots * (self.last - self.first))

    async def _choice(self, first_turn: bool, max_tokens: int) -> tuple[str, int]:
        assert self.free is not None
        tokens = max(4, min(max_tokens, int(self.median * math.exp(self.rng.gauss(0.0, 0.8)))))
        async with self.free:
            start = time.monotonic()
            await asyncio.sleep(tokens * self.spt)
            self.busy_seconds += time.monotonic() - start
        if first_turn and self.rng.random() < self.tool_rate:
            call = {"name": "get_video_clip_frame", "arguments": {"start_time": 0.5, "end_time": 2.5}}
            return f"<think>look closer</think><tool_call>{json.dumps(call)}</tool_call>", tokens
        return "<think>the moment is early</think><answer>0.5 - 2.5 seconds</answer>", tokens

    async def chat(self, request: Request) -> JSONResponse:
        if self.free is None:
            self.free = asyncio.Semaphore(self.slots)
        body = await request.json()
        now = time.monotonic()
        self.first = now if self.first is None else min(self.first, now)
        first_turn = not any(m.get("role") == "tool" for m in body["messages"])
        n = int(body.get("n") or 1)
        self.sequences += n
        answers = await asyncio.gather(
            *(self._choice(first_turn, int(body.get("max_tokens") or 1024)) for _ in range(n))
        )
        self.last = max(self.last, time.monotonic())
        choices = [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i, (text, _) in enumerate(answers)
        ]
        used = sum(t for _, t in answers)
        usage = {"prompt_tokens": 300, "completion_tokens": used, "total_tokens": 300 + used}
        return JSONResponse({"id": "sim", "object": "chat.completion", "model": body["model"], "choices": choices,
                             "usage": usage})  # fmt: skip

    def start(self) -> SimServer:
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
        for _ in range(200):
            if self._server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("SimServer did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_videos() -> tuple[Path, list[tuple[str, float]]]:
    """The demo corpus's Charades-STA videos (built once under bench/.cache) and their durations."""
    from mtvr_data.demo_corpus import build_demo_corpus
    from mtvr_data.video_probe import probe_video

    corpus = CACHE / "demo_corpus"
    if not (corpus / "videos").is_dir():
        build_demo_corpus(corpus, verify=False)
    videos = corpus / "videos"
    found = []
    for path in sorted(videos.glob("DM*.mp4")):  # the Charades-STA-style demo videos
        probe = probe_video(path)
        if probe.ok and probe.info is not None and probe.info.duration > 4:
            found.append((path.stem, float(probe.info.duration)))
    return videos, found


def write_config(folder: Path, videos: Path, found: list[tuple[str, float]], n: int, grade: dict[str, Any]) -> Path:
    lines = []
    for i in range(n):
        stem, duration = found[i % len(found)]
        start = round((i % 5) * 0.3, 1)
        lines.append(f"{stem} {start} {min(duration, start + 2.0):.1f}##event number {i} happens")
    ann = folder / "charades_sta_train.txt"
    ann.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "out": str(folder / "build"),
        "sources": [{"source": "charades_sta", "annotations": str(ann), "videos": str(videos)}],
        "grade": {"keep": "all", **grade},
        "balance": {"mix": "none"},
    }
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_build(config: Path, args: list[str]) -> float:
    from pipelines.build_rl import build_rl

    start = time.monotonic()
    build_rl(config, ["--runner=DirectRunner", *args])
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--cases", default="all", help="comma-separated case numbers (0-4) to run, or all")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--ms-per-token", type=float, default=1.5)
    parser.add_argument("--median-tokens", type=int, default=120)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--headroom", type=float, default=2.0, help="streaming in_flight = slots x this")
    parser.add_argument("--ordering", default="fifo", choices=["fifo", "longest_first"], help="streaming's order")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import model.rollout

    videos, found = demo_videos()
    servers = [
        SimServer(
            slots=args.slots, seconds_per_token=args.ms_per_token / 1000, median_tokens=args.median_tokens,
            tool_rate=0.5, seed=i,
        ).start()
        for i in range(2)
    ]  # fmt: skip
    base = {
        "k": args.k,
        "sampling": {"max_new_tokens": 1024, "seed": 0},
        "frames": {"max_frames": 4},
        "clip": {"max_frames": 4},
    }

    def grade(urls: list[str], *, streaming: bool, tools: bool, in_flight: int) -> dict[str, Any]:
        url: str | list[str] = urls[0] if len(urls) == 1 else urls
        settings = {"base_url": url, "model": "sim", "max_concurrency": 1024, "stop_mode": "client"}
        return {
            **base,
            "engine": {"kind": "openai", "settings": settings},
            "rollout": {"tools": tools},
            "batching": {
                "max_batch_size": args.batch,
                "streaming": streaming,
                "in_flight": in_flight,
                "ordering": args.ordering,
            },
        }

    slow_tool = model.rollout.RolloutRunner._call_tool

    async def tool_200ms(self: Any, bound: Any, text: str) -> Any:
        await asyncio.sleep(0.2)
        return await slow_tool(self, bound, text)

    rows = []
    cases = [
        ("batch-sync", [servers[0]], False, False),
        ("streaming", [servers[0]], True, False),
        ("batch-sync + 200 ms tools", [servers[0]], False, True),
        ("streaming + 200 ms tools", [servers[0]], True, True),
        ("streaming, 2 servers", servers, True, False),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        chosen = range(len(cases)) if args.cases == "all" else [int(c) for c in args.cases.split(",")]
        for i, (name, used, streaming, tools) in enumerate(cases):
            if i not in chosen:
                continue
            for s in servers:
                s.reset()
            model.rollout.RolloutRunner._call_tool = tool_200ms if tools else slow_tool  # type: ignore[method-assign]
            folder = Path(tmp) / f"case{i}"
            folder.mkdir()
            in_flight = int(args.slots * args.headroom) * len(used)
            g = grade([s.url for s in used], streaming=streaming, tools=tools, in_flight=in_flight)
            wall = run_build(write_config(folder, videos, found, args.samples, g), [])
            busy = [s.busy_fraction() for s in used]
            sent = [s.sequences for s in used]
            work = [s.busy_seconds for s in used]  # slot-seconds of decoding each server did
            imbalance = (max(work) - min(work)) / (sum(work) / len(work)) if sum(work) else 0.0
            rows.append((name, busy, sent, imbalance, wall))
            figures = ", ".join(f"{b:.3f}" for b in busy)
            print(
                f"{name:28s} busy fraction {figures}   sequences {sent}   work imbalance {imbalance:.1%}   "
                f"wall {wall:.1f} s",
                flush=True,
            )
        model.rollout.RolloutRunner._call_tool = slow_tool  # type: ignore[method-assign]
    for s in servers:
        s.stop()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{args.samples} samples x K={args.k}, {args.slots} slots/server, {args.ms_per_token} ms/token, "
          f"in_flight {args.headroom:g} x slots, {args.ordering} order, "
          f"median {args.median_tokens} tokens, batches of {args.batch}; load average {' '.join(load)}")  # fmt: skip


if __name__ == "__main__":
    main()
