"""The streaming scheduler: slots are held only while a request is generated, weighted by its sequences, handed
on in order the moment they are freed, shared by every batch and thread of a process, and never change an answer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from model.engine_api import Completion, GenerationRequest, SamplingSettings
from model.request_scheduler import BalancedEngine, LengthEstimator, ScheduledEngine, SlotGate, StreamingScheduler


def request(key: str, n: int = 1, max_new: int = 64) -> GenerationRequest:
    return GenerationRequest(messages=[], settings=SamplingSettings(n=n, max_new_tokens=max_new), key=key)


class TimedEngine:
    """A server stand-in: each request takes `seconds[key]`; records what was in flight and in which order."""

    name, model = "timed", "timed-model"

    def __init__(self, seconds: dict[str, float] | None = None, tokens: dict[str, int] | None = None) -> None:
        self.seconds, self.tokens = seconds or {}, tokens or {}
        self.in_flight = self.max_in_flight = 0
        self.started: list[str] = []

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        width = sum(r.settings.n for r in requests)
        self.in_flight += width
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.started += [r.key for r in requests]
        try:
            await asyncio.sleep(max(self.seconds.get(r.key, 0.01) for r in requests))
        finally:
            self.in_flight -= width
        return [
            [Completion(f"{r.key}#{i}", "stop", 5, self.tokens.get(r.key, 3)) for i in range(r.settings.n)]
            for r in requests
        ]

    async def aclose(self) -> None:
        pass


def test_the_gate_caps_sequences_in_flight_and_answers_are_the_engines():
    async def main() -> tuple[TimedEngine, list]:
        engine = TimedEngine()
        gated = ScheduledEngine(engine, SlotGate(4))
        answers = await asyncio.gather(*(gated.generate([request(f"s{i}/t0", n=2)]) for i in range(10)))
        return engine, answers

    engine, answers = asyncio.run(main())
    assert engine.max_in_flight == 4  # two requests of n = 2 at a time, never three
    assert [a[0][0].text for a in answers] == [f"s{i}/t0#0" for i in range(10)]
    assert all(len(a[0]) == 2 for a in answers)


def test_a_freed_slot_goes_to_the_next_waiter_in_order_and_a_large_request_is_not_starved():
    async def main() -> list[str]:
        engine = TimedEngine(seconds={"big/t0": 0.02})
        gate = SlotGate(2)
        gated = ScheduledEngine(engine, gate)
        first = asyncio.create_task(gated.generate([request("a/t0")]))
        await asyncio.sleep(0)
        big = asyncio.create_task(gated.generate([request("big/t0", n=2)]))  # waits for a's slot
        await asyncio.sleep(0)
        small = [asyncio.create_task(gated.generate([request(f"s{i}/t0")])) for i in range(3)]
        await asyncio.gather(first, big, *small)
        return engine.started

    assert asyncio.run(main()) == ["a/t0", "big/t0", "s0/t0", "s1/t0", "s2/t0"]


def test_a_request_larger_than_the_gate_runs_alone_and_a_cancelled_waiter_leaks_no_slot():
    async def main() -> tuple[int, int]:
        engine = TimedEngine(seconds={"slow/t0": 0.05})
        gate = SlotGate(2)
        gated = ScheduledEngine(engine, gate)
        await gated.generate([request("huge/t0", n=5)])  # capped to the capacity, admitted alone
        slow = asyncio.create_task(gated.generate([request("slow/t0", n=2)]))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(gated.generate([request("gone/t0")]))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        await gated.generate([request("after/t0", n=2)])
        return gate.stats.in_use, engine.started.count("gone/t0")

    assert asyncio.run(main()) == (0, 0)


def test_an_engine_error_releases_its_slots():
    class Failing(TimedEngine):
        async def generate(self, requests):
            raise RuntimeError("server gone")

    async def main() -> int:
        gate = SlotGate(1)
        gated = ScheduledEngine(Failing(), gate)
        for _ in range(3):
            with pytest.raises(RuntimeError, match="server gone"):
                await gated.generate([request("x/t0")])
        return gate.stats.in_use

    assert asyncio.run(main()) == 0


def test_longest_first_learns_lengths_by_source_and_turn():
    estimator = LengthEstimator(smoothing=1.0)
    long, short = request("vidchapters-abc/t0", max_new=100), request("charades_sta-x/0/t1", max_new=100)
    assert estimator.expected(long) == estimator.expected(short) == 100  # unseen: its budget
    estimator.observe(long, [Completion("", "stop", 1, 80)])
    estimator.observe(short, [Completion("", "stop", 1, 4), Completion("", "error", 0, 0, error="x")])
    assert (estimator.expected(request("vidchapters-zzz/t0")), estimator.expected(short)) == (80, 4)

    async def main() -> list[str]:
        engine = TimedEngine()
        gated = ScheduledEngine(engine, SlotGate(1), ordering="longest_first", estimator=estimator)
        hold = asyncio.create_task(gated.generate([request("hold-0/t0")]))
        await asyncio.sleep(0)
        waiting = [
            asyncio.create_task(gated.generate([r]))
            for r in (request("charades_sta-1/0/t1"), request("vidchapters-2/t0"))
        ]
        await asyncio.gather(hold, *waiting)
        return engine.started

    assert asyncio.run(main()) == ["hold-0/t0", "vidchapters-2/t0", "charades_sta-1/0/t1"]


def test_batches_of_two_threads_share_one_gate_and_overlap():
    """While one thread's batch drains its slow tail, the other thread's requests use the freed slots."""
    engine = TimedEngine(seconds={"a0/t0": 0.3})
    scheduler = StreamingScheduler(capacity=2)
    try:
        gated = scheduler.engine(engine)
        assert scheduler.engine(engine) is gated  # one wrapper per engine
        done: dict[str, float] = {}

        async def batch(name: str, keys: list[str]) -> None:
            await asyncio.gather(*(gated.generate([request(k)]) for k in keys))
            done[name] = time.monotonic()

        t = threading.Thread(target=scheduler.run, args=(batch("a", ["a0/t0", "a1/t0"]),))
        t.start()
        time.sleep(0.02)
        scheduler.run(batch("b", [f"b{i}/t0" for i in range(6)]))
        t.join()
        assert done["b"] < done["a"]  # b ran entirely in the slot a's fast request freed, during a's tail
        assert engine.max_in_flight == 2
        with pytest.raises(RuntimeError, match="boom"):

            async def fails() -> None:
                raise RuntimeError("boom")

            scheduler.run(fails())
    finally:
        scheduler.close()


def test_one_scheduler_per_server_and_process():
    a = StreamingScheduler.for_server("test-server-1", 3)
    assert StreamingScheduler.for_server("test-server-1", 3) is a
    assert StreamingScheduler.for_server("test-server-2", 3) is not a
    assert StreamingScheduler.for_server("test-server-1", 5).capacity == 3  # the first settings stay
    with pytest.raises(ValueError, match="ordering"):
        StreamingScheduler(2, "shortest_first")  # type: ignore[arg-type]


def test_balanced_engine_sends_each_call_to_the_least_loaded_server():
    async def main() -> tuple[BalancedEngine, list[TimedEngine]]:
        servers = [TimedEngine(seconds={f"s{i}/t0": 0.001 * (i % 7) for i in range(60)}) for _ in range(2)]
        balanced = BalancedEngine(servers)
        gated = ScheduledEngine(balanced, SlotGate(8))
        await asyncio.gather(*(gated.generate([request(f"s{i}/t0", n=1 + i % 3)]) for i in range(60)))
        return balanced, servers

    balanced, servers = asyncio.run(main())
    assert sum(balanced.sent) == sum(1 + i % 3 for i in range(60))
    assert balanced.imbalance() <= 0.05
    assert all(s.max_in_flight <= 8 for s in servers) and all(s.started for s in servers)
    with pytest.raises(ValueError, match="at least one"):
        BalancedEngine([])


def test_beams_retry_tracebacks_are_held_back_unless_the_block_fails(caplog):
    import logging

    from pipelines.model_stage import quiet_retries

    def said() -> list[str]:
        names = ("apache_beam.utils.retry", "pipelines.model_stage")
        return [r.getMessage() for r in caplog.records if r.name in names]

    retry_log = logging.getLogger("apache_beam.utils.retry")
    with caplog.at_level(logging.INFO):
        with quiet_retries("the host"):
            retry_log.warning("Retry with exponential backoff ... Traceback ...")
            retry_log.warning("Retry with exponential backoff ... Traceback ...")
        assert said() == ["connected to the host after 2 retries"]
        caplog.clear()
        with pytest.raises(ConnectionRefusedError), quiet_retries("the host"):
            retry_log.warning("Retry with exponential backoff ... Traceback (most recent call last) ...")
            raise ConnectionRefusedError("gave up")
        assert said() == ["Retry with exponential backoff ... Traceback (most recent call last) ..."]
