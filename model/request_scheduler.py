"""Streaming requests to a model server: a target number of sequences in flight, across batches and threads.

Why: RunInference hands a handler one batch at a time, and a batch's rollouts have a long tail (up to 7168 tokens,
tool calls, clip decodes). When every batch runs in its own event loop (`asyncio.run` per `run_inference`), the
server's slots drain at the end of each batch and the next batch starts only after its slowest rollout. Here every
batch of a worker process, from every Beam thread, runs on ONE event loop (`StreamingScheduler`, a background
thread), and each generation request takes slots from one `SlotGate` per server:

- A request holds `settings.n` slots (the sequences it asks the server for: vLLM's capacity is `max_num_seqs`
  sequences) while, and only while, the engine generates it. A tool call, a clip decode or a prompt's frame decode
  happens between requests, so it never holds a slot.
- A finished request's slots go to the next waiting request at once, whichever batch or thread it came from, so
  while one batch drains, the others' requests fill the server.
- Waiting requests are served first in first out, or longest expected first (`ordering="longest_first"`): long
  requests started early finish with the rest instead of forming the tail. The expected length is learned online
  (`LengthEstimator`: a moving average of tokens per sequence by source and turn, from what the server returned).

Results still come back per batch, per sample, to the model stage, which keeps its per-sample retry, cache writes
and accounting unchanged: only WHEN requests reach the server changes, never what they are.

The gate bounds one worker process. Beam runs one to a few SDK processes per VM; with P processes sharing one server,
set `batching.in_flight` to the server's capacity divided by P.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from model.engine_api import Completion, Engine, GenerationRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
Ordering = Literal["fifo", "longest_first"]
ORDERINGS: tuple[str, ...] = ("fifo", "longest_first")


@dataclass(slots=True)
class GateStats:
    """What the gate saw: requests admitted, how many had to wait and for how long, the peak of slots in use."""

    admitted: int = 0
    waited: int = 0
    wait_seconds: float = 0.0
    in_use: int = 0
    max_in_use: int = 0


class SlotGate:
    """Weighted slots with an ordered waiting line, used from one event loop.

    `acquire(weight, priority)` waits until `weight` slots are free and every request ahead of it (lower
    `priority`, then earlier) has been admitted: strict order, so a large request is never starved by small ones.
    A request larger than the whole capacity is admitted alone when nothing else is in use, never deadlocked.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.stats = GateStats()
        self._order = itertools.count()
        self._waiting: list[tuple[float, int, int, asyncio.Future[None]]] = []

    def _fits(self, weight: int) -> bool:
        return self.stats.in_use == 0 or self.stats.in_use + weight <= self.capacity

    def _take(self, weight: int) -> None:
        self.stats.in_use += weight
        self.stats.admitted += 1
        self.stats.max_in_use = max(self.stats.max_in_use, self.stats.in_use)

    async def acquire(self, weight: int = 1, priority: float = 0.0) -> None:
        if not self._waiting and self._fits(weight):
            self._take(weight)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), weight, future))
        self.stats.waited += 1
        start = time.monotonic()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(weight)  # admitted just as the waiter was cancelled: hand the slots on
            else:
                future.cancel()
                self._wake()  # it may have been the head of the line
            raise
        finally:
            self.stats.wait_seconds += time.monotonic() - start

    def release(self, weight: int = 1) -> None:
        self.stats.in_use -= weight
        if self.stats.in_use < 0:
            raise RuntimeError("SlotGate released more slots than were acquired")
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            _, _, weight, future = self._waiting[0]
            if future.cancelled():
                heapq.heappop(self._waiting)
                continue
            if not self._fits(weight):
                return
            heapq.heappop(self._waiting)
            self._take(weight)
            future.set_result(None)


class LengthEstimator:
    """Expected tokens per sequence of a request, learned from the server's answers, for longest-first ordering.

    Requests are grouped by the source of their sample (the id's prefix before the first "-") and their turn
    (the key's last part, "t0", "t1", ...): a grounding answer is short, a first turn that thinks is long. A group
    never seen is assumed as long as its budget (`max_new_tokens`), so it is tried early and learned quickly.
    """

    def __init__(self, smoothing: float = 0.2) -> None:
        self.smoothing = smoothing
        self._mean: dict[tuple[str, str], float] = {}

    @staticmethod
    def group(request: GenerationRequest) -> tuple[str, str]:
        key = request.key or ""
        return key.split("-", 1)[0], key.rsplit("/", 1)[-1]

    def expected(self, request: GenerationRequest) -> float:
        mean = self._mean.get(self.group(request))
        return float(request.settings.max_new_tokens) if mean is None else mean

    def observe(self, request: GenerationRequest, completions: list[Completion]) -> None:
        counted = [c.completion_tokens for c in completions if c.ok and c.completion_tokens > 0]
        if not counted:
            return
        value = sum(counted) / len(counted)
        group = self.group(request)
        old = self._mean.get(group)
        self._mean[group] = value if old is None else old + self.smoothing * (value - old)


class ScheduledEngine:
    """An `Engine` whose requests pass through a `SlotGate`: the same answers, sent when slots are free.

    A call with several requests (an in-process engine's coalesced batch) holds the sum of their sequences, capped
    at the capacity. Everything else, the answers included, is the wrapped engine's.
    """

    def __init__(
        self, engine: Engine, gate: SlotGate, *, ordering: Ordering = "fifo", estimator: LengthEstimator | None = None
    ) -> None:
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        self.engine, self.gate, self.ordering = engine, gate, ordering
        self.estimator = estimator or LengthEstimator()
        self.name = engine.name
        self.model = engine.model

    def __getattr__(self, name: str) -> Any:  # tokenizer, stats, ... of the wrapped engine
        return getattr(self.engine, name)

    def _priority(self, requests: list[GenerationRequest]) -> float:
        if self.ordering == "fifo":
            return 0.0
        return -max(self.estimator.expected(r) * r.settings.n for r in requests)

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        weight = min(self.gate.capacity, sum(r.settings.n for r in requests))
        await self.gate.acquire(weight, self._priority(requests))
        try:
            answers = await self.engine.generate(requests)
        finally:
            self.gate.release(weight)
        for request, completions in zip(requests, answers, strict=False):
            self.estimator.observe(request, completions)
        return answers

    async def aclose(self) -> None:
        await self.engine.aclose()


class BalancedEngine:
    """Several engines (one server per GPU group) as one: each call goes to the engine with the fewest sequences in
    flight, ties to the one that was sent the fewest so far, so long and short requests spread evenly.

    `sent[i]` counts the sequences engine i was given (a request with n = K counts K), for the balance figure.
    """

    def __init__(self, engines: list[Engine]) -> None:
        if not engines:
            raise ValueError("BalancedEngine needs at least one engine")
        self.engines = list(engines)
        self.name, self.model = engines[0].name, engines[0].model
        self.in_flight = [0] * len(engines)
        self.sent = [0] * len(engines)

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        width = sum(r.settings.n for r in requests)
        i = min(range(len(self.engines)), key=lambda j: (self.in_flight[j], self.sent[j]))
        self.in_flight[i] += width
        self.sent[i] += width
        try:
            return await self.engines[i].generate(requests)
        finally:
            self.in_flight[i] -= width

    def imbalance(self) -> float:
        """(most - fewest) sequences sent, over the mean: 0 is perfectly even."""
        mean = sum(self.sent) / len(self.sent)
        return 0.0 if mean == 0 else (max(self.sent) - min(self.sent)) / mean

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()


class StreamingScheduler:
    """One worker process's event loop for one server: every batch's coroutine runs on it, every request through
    its gate. `run(coro)` blocks the calling (Beam) thread until its coroutine is done; many threads may call it
    at once. Build with `for_server`, which keeps one scheduler per server and process."""

    def __init__(self, capacity: int, ordering: Ordering = "fifo") -> None:
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        self.capacity, self.ordering = capacity, ordering
        self.estimator = LengthEstimator()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mtvr-stream", daemon=True)
        self._thread.start()
        self.gate = SlotGate(capacity)  # its futures are made in the loop, when a request waits
        self._engines: dict[int, tuple[Engine, ScheduledEngine]] = {}
        self._shared: dict[str, Any] = {}
        self._lock = threading.Lock()

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """One object per scheduler under `name`, made on first use (e.g. a server's HTTP client, whose
        connections belong to this scheduler's loop and must not be used from another loop)."""
        with self._lock:
            if name not in self._shared:
                self._shared[name] = make()
            return self._shared[name]

    def engine(self, engine: Engine) -> ScheduledEngine:
        """`engine` behind this scheduler's gate (one wrapper per engine object)."""
        with self._lock:
            found = self._engines.get(id(engine))
            if found is None or found[0] is not engine:
                found = (engine, ScheduledEngine(engine, self.gate, ordering=self.ordering, estimator=self.estimator))
                self._engines[id(engine)] = found
            return found[1]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the scheduler's loop and wait for it; its exception is raised here."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("StreamingScheduler.run called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start `coro` on the scheduler's loop without waiting; a `concurrent.futures.Future` of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    _registry: dict[str, StreamingScheduler] = {}
    _registry_lock = threading.Lock()

    @classmethod
    def for_server(cls, key: str, capacity: int, ordering: Ordering = "fifo") -> StreamingScheduler:
        """The process's scheduler for server `key` (an engine tag): made on first use, shared by every stage and
        thread that names that server. A second call with other settings keeps the first one's (logged)."""
        with cls._registry_lock:
            found = cls._registry.get(key)
            if found is None:
                found = cls._registry[key] = cls(capacity, ordering)
                log.info("streaming scheduler for %s: %d sequences in flight, %s order", key, capacity, ordering)
            elif (found.capacity, found.ordering) != (capacity, ordering):
                log.warning(
                    "streaming scheduler for %s already runs with %d in flight, %s order; keeping it",
                    key,
                    found.capacity,
                    found.ordering,
                )
            return found


__all__ = [
    "ORDERINGS",
    "BalancedEngine",
    "GateStats",
    "LengthEstimator",
    "ScheduledEngine",
    "SlotGate",
    "StreamingScheduler",
]
