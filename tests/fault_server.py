"""A fault bed: a scripted OpenAI-compatible chat server on loopback whose faults each test sets.

It speaks real HTTP on a real socket (asyncio streams, one request per connection), so the client's whole stack
is exercised: 500/503, 429 with Retry-After, stalls past the client's timeout, malformed JSON, fewer choices than
`n`, connection resets, and death followed by a restart on the same port. It is a stand-in for a server's faults
only; what a real server generates is tested against `transformers serve` (tests/test_engines.py).

Faults are chosen per request CONTENT and attempt (`fault(body, attempt)`), not per arrival order, so a test's
outcome does not depend on how concurrent requests interleave. Every body is recorded (`bodies`), with whether it
carried `stop`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

#: The answer every choice gives: a grounding answer that ends at a stop string.
ANSWER = "<think>the moment is early</think><answer>0.5 - 2.5 seconds</answer>"

Fault = str | None
FaultPlan = Callable[[dict[str, Any], int], Fault]


def request_key(body: dict[str, Any]) -> str:
    """What identifies a request across its retries: the body without `stop` and the fields a retry may change."""
    core = {k: v for k, v in body.items() if k not in ("stop",)}
    return hashlib.sha1(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()


class FaultServer:
    """`FaultServer(plan).start()`; `url` is its /v1 base. `stop()` kills it (refusing connections), `start()`
    brings it back on the same port. `plan(body, attempt)` returns the fault for this try of this request
    (`attempt` counts the tries of the same request content, from 0): None, "500", "503", "429", "stall",
    "malformed", "few_choices" or "reset"."""

    def __init__(self, plan: FaultPlan | None = None, *, stall_s: float = 5.0) -> None:
        self.plan = plan or (lambda body, attempt: None)
        self.stall_s = stall_s
        self.port = _free_port()
        self.bodies: list[dict[str, Any]] = []
        self.faults: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def start(self) -> FaultServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()

            async def serve() -> None:
                self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
                ready.set()
                async with self._server:
                    await self._server.serve_forever()

            try:
                self._loop.run_until_complete(serve())
            except asyncio.CancelledError:
                pass
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        """Die: stop listening (new connections are refused) and drop every open connection."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        def close() -> None:
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()

        loop.call_soon_threadsafe(close)
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def restart_after(self, seconds: float) -> None:
        """Die now and come back on the same port after `seconds` (in the background)."""
        self.stop()

        def later() -> None:
            time.sleep(seconds)
            self.start()

        threading.Thread(target=later, daemon=True).start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body_bytes = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if method == "GET" and path.endswith("/health"):
                await self._send(writer, 200, b"{}")
                return
            body = json.loads(body_bytes or b"{}")
            with self._lock:
                key = request_key(body)
                attempt = self.attempts[key]
                self.attempts[key] += 1
                self.bodies.append(body)
                fault = self.plan(body, attempt)
                if fault:
                    self.faults[fault] += 1
            await self._answer(writer, body, fault)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, body: dict[str, Any], fault: Fault) -> None:
        if fault == "reset":
            transport = writer.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:  # RST instead of FIN: a connection reset, as a crashing worker gives
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            transport.abort()
            return
        if fault in ("500", "503"):
            await self._send(writer, int(fault), json.dumps({"error": {"message": "boom"}}).encode())
            return
        if fault == "429":
            await self._send(writer, 429, b'{"error": {"message": "slow down"}}', extra={"Retry-After": "0"})
            return
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
        if fault == "malformed":
            await self._send(writer, 200, b'{"id": "x", "choices": [')
            return
        n = int(body.get("n") or 1)
        count = max(1, n - 1) if fault == "few_choices" else n
        choices = [
            {"index": i, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            for i in range(count)
        ]
        payload = {
            "id": "fault",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fault"),
            "choices": choices,
            "usage": {"prompt_tokens": 10, "completion_tokens": 12 * count, "total_tokens": 10 + 12 * count},
        }
        await self._send(writer, 200, json.dumps(payload).encode())

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, payload: bytes, extra: dict[str, str] | None = None
    ) -> None:
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        head = [f"HTTP/1.1 {status} {reason.get(status, 'Error')}", "Content-Type: application/json"]
        head += [f"Content-Length: {len(payload)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flaky(seed: str = "") -> FaultPlan:
    """The issue's flaky server: about 25% HTTP 500, 10% 429, 5% stalls past the timeout, 3% malformed JSON, and 5%
    fewer choices than asked, on a request's FIRST try only (decided by its content), so every request succeeds on a
    later try whatever the interleaving, and no request ever fails twice carrying `stop`."""

    def plan(body: dict[str, Any], attempt: int) -> Fault:
        if attempt > 0:
            return None
        x = int(hashlib.sha1((seed + request_key(body)).encode()).hexdigest()[:8], 16) / 16**8
        for fault, edge in (("500", 0.25), ("429", 0.35), ("stall", 0.40), ("malformed", 0.43), ("few_choices", 0.48)):
            if x < edge:
                return fault
        return None

    return plan
