"""An `Engine` that speaks to any OpenAI-compatible chat server: `vllm serve`, `transformers serve`, a hosted API.

The client does not trust the server (docs/design.md, "What the servers actually accept"):
- `n`: the choices are counted and the rest are asked for again. Once a server is seen to ignore `n`, the rest
  go out as concurrent `n=1` calls, each with its own seed (`seed + index`) so they are not copies.
- Seeds follow the engines' rule (model/engine_api.py): completion i of a request is sampled with `seed + i`. A
  call for completions i.. i+m-1 sends `seed + i` with n = m; a server that honours n (vLLM V1) seeds its choice j
  with that + j, so whether n is honoured or split, completion i gets `seed + i`.
- `stop`: sent. Whether a server cannot take it is concluded only from an answer that says so: a 400/422 whose
  message names `stop`, or two requests in a row that each failed carrying `stop` (twice, or with no retries left)
  and then worked without it (transformers serve answers HTTP 500). A 5xx is otherwise retried as a 5xx, one reply
  with `stop` that works settles that the server takes it, and the conclusion is logged once with its evidence;
  `stop_mode: server` never falls back. The text is always cut at the first stop string on the client side and the
  stop string is kept, so every engine returns the same text.
- A dead server: after `breaker_failures` refused or reset connections in a row, no request is sent; one probe
  polls the server's `/health` with backoff and every request waits for it (without spending retries). The server
  answers: work resumes. No answer for `breaker_deadline_s`: every request fails at once (`ServerDownError`), and the
  model stage's failure budget stops the build.
- Failures: connection errors, timeouts, 408/409/429 and 5xx are retried with exponential backoff (the `sleep`
  and `clock` are injected so tests check it without waiting); after `max_retries` that request's completions
  are `finish_reason="error"` with the reason. One failed request never fails the batch.
- Load: at most `max_concurrency` HTTP calls are in flight (an asyncio.Semaphore); each call has its own timeout.

Media: images go as `image_url` data URLs. Videos go either as vLLM's `video_url` with
`data:video/jpeg;base64,<f1>,<f2>,...` (the already-sampled frames; with `vllm_extensions` the per-request
`media_io_kwargs` carries their fps, so Qwen2.5-VL's temporal positions are right, and their count, since vLLM
keeps only the first `num_frames`), or, for servers that cannot take video, as a sequence of image parts, each
after a short time label ("frames_as_images"; the tokens and positions then differ from a real video input).

Token counts come from `usage`. `usage.completion_tokens` is the sum over the choices of one response, so with
several choices each gets an even share (an approximation) unless `exact_token_counts` asks for logprobs and the
server returns them (vLLM does; transformers serve ignores the flag). When the text is cut on the client side,
the count is scaled to the kept characters (approximate) unless per-token logprobs are there to count exactly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import openai

from model.engine_api import Completion, GenerationRequest, SamplingSettings, cut_at_stop
from model.engines.media import frame_array, image_data_url, sample_fps, video_data_url

logger = logging.getLogger(__name__)

VideoMode = Literal["frames_as_images", "video_url"]
StopMode = Literal["auto", "server", "client"]

#: Worth asking again: the request may well succeed later.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: What a server that cannot handle `stop` answers (transformers serve: 500; stricter servers: 400 / 422).
STOP_REJECTED_STATUS = frozenset({400, 422, 500})


@dataclass(slots=True)
class EngineStats:
    """Counters for the metrics collector: calls, retries, re-asks, fallbacks, concurrency, time in calls."""

    requests: int = 0
    calls: int = 0
    retries: int = 0
    failed_requests: int = 0
    reasks: int = 0
    stop_fallbacks: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    call_seconds: float = 0.0


@dataclass(slots=True)
class _Failure:
    message: str


@dataclass(slots=True)
class _Prepared:
    messages: list[dict[str, Any]]
    video_fps: list[float]
    video_frames: list[int]


class OpenAIEngine:
    """`Engine` over an OpenAI-compatible `/v1/chat/completions` endpoint (see the module docstring for why)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        name: str = "openai",
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        video_mode: VideoMode = "frames_as_images",
        frame_labels: bool = True,
        image_format: str = "JPEG",
        jpeg_quality: int = 90,
        stop_mode: StopMode = "auto",
        vllm_extensions: bool = False,
        exact_token_counts: bool = False,
        tool_role: str = "tool",
        extra_body: dict[str, Any] | None = None,
        http_client: Any | None = None,
        client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        jitter: Callable[[], float] | None = random.random,
        on_close: Callable[[], Any] | None = None,
        breaker_failures: int = 5,
        breaker_deadline_s: float = 600.0,
        health_url: str | None = None,
        health_check: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if video_mode not in ("frames_as_images", "video_url"):
            raise ValueError(f"video_mode must be 'frames_as_images' or 'video_url', got {video_mode!r}")
        if stop_mode not in ("auto", "server", "client"):
            raise ValueError(f"stop_mode must be 'auto', 'server' or 'client', got {stop_mode!r}")
        self.name = name
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.video_mode = video_mode
        self.frame_labels = frame_labels
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.stop_mode = stop_mode
        self.vllm_extensions = vllm_extensions
        self.exact_token_counts = exact_token_counts
        self.tool_role = tool_role
        self.extra_body = dict(extra_body or {})
        self.stats = EngineStats()
        #: What this server was seen to do: None until known.
        self.server_honours_stop: bool | None = False if stop_mode == "client" else None
        self.server_honours_n: bool | None = None
        self._http_client = http_client
        self._fixed_client = client
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._on_close = on_close
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._active = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._warned: set[str] = set()
        #: Stop-string evidence: consecutive requests that failed with `stop` and then worked without it.
        self._stop_evidence = 0
        #: The circuit breaker (see `_post`): consecutive connection-level failures, and the probe while open.
        self.breaker_failures = breaker_failures
        self.breaker_deadline_s = breaker_deadline_s
        self.health_url = health_url or _health_url(base_url)
        self._health_check = health_check or _server_answers
        self._consecutive_down = 0
        self._probe: asyncio.Task[bool] | None = None
        self._dead_since: float | None = None
        if video_mode == "video_url" and not vllm_extensions:
            self._warn_once(
                "video_url_fps",
                "video_url without vllm_extensions: the server is not told the frames' fps, so temporal "
                "positions follow its default",
            )

    # --- public API -------------------------------------------------------------------------------------------

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        """`settings.n` completions per request, in request order; failures become error completions."""
        self._open()
        try:
            return list(await asyncio.gather(*(self._complete(request) for request in requests)))
        finally:
            await self._release()

    async def aclose(self) -> None:
        """Close the HTTP client this engine made (an injected one is left to its owner) and run `on_close`."""
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._client = None
        if self._on_close is not None:
            self._on_close()

    @property
    def _owns_client(self) -> bool:
        return self._fixed_client is None and self._http_client is None

    def _open(self) -> None:
        """Client and semaphore for the running event loop, shared by the `generate` calls running in it.

        The client made here is closed when the last of those calls ends, so no connection outlives its loop
        (a Beam DoFn may run each bundle in a fresh loop); on loopback a new connection costs nothing.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._client is None or self._semaphore is None:
            self._loop = loop
            self._active = 0
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._client = self._fixed_client or self._new_client()
        self._active += 1

    async def _release(self) -> None:
        self._active -= 1
        if self._active == 0 and self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # --- one request ------------------------------------------------------------------------------------------

    async def _complete(self, request: GenerationRequest) -> list[Completion]:
        settings = request.settings
        self.stats.requests += 1
        try:
            # JPEG-encoding a few dozen frames is CPU work: off the event loop, so other requests keep flowing.
            prepared = await asyncio.to_thread(self._prepare, request.messages)
        except Exception as exc:  # bad media fails this request alone
            return self._fail(request, settings.n, f"prepare: {type(exc).__name__}: {exc}")
        completions: list[Completion] = []
        empty_rounds = 0
        while len(completions) < settings.n:
            need = settings.n - len(completions)
            if need > 1 and self.server_honours_n is False:
                calls = [self._call(prepared, settings, 1, len(completions) + j) for j in range(need)]
            else:
                calls = [self._call(prepared, settings, need, len(completions))]
            failure: _Failure | None = None
            got = 0
            for result in await asyncio.gather(*calls):
                if isinstance(result, _Failure):
                    failure = result
                    continue
                if need > 1 and len(calls) == 1 and len(result) < need:
                    self._note_n_ignored(need, len(result))
                taken = result[: settings.n - len(completions)]
                completions.extend(taken)
                got += len(taken)
            if failure is not None:
                return completions + self._fail(request, settings.n - len(completions), failure.message)
            if got == 0:
                empty_rounds += 1
                if empty_rounds > self.max_retries:
                    return completions + self._fail(request, need, "server returned no choices")
            if len(completions) < settings.n:
                self.stats.reasks += 1
        return completions

    def _note_n_ignored(self, asked: int, got: int) -> None:
        if self.server_honours_n is not False:
            logger.warning("server returned %d of n=%d choices; asking for the rest separately", got, asked)
        self.server_honours_n = False

    def _fail(self, request: GenerationRequest, count: int, message: str) -> list[Completion]:
        self.stats.failed_requests += 1
        logger.warning("request %r failed: %s", request.key, message)
        return [Completion(text="", finish_reason="error", error=message) for _ in range(count)]

    # --- one HTTP call, with retries and the stop fallback ----------------------------------------------------

    async def _call(
        self, prepared: _Prepared, settings: SamplingSettings, n: int, offset: int
    ) -> list[Completion] | _Failure:
        """One HTTP call, retried on transient failures, with the stop-string rule (module docstring): a call that
        failed twice carrying `stop` (or once, with no retries left) is tried once without it; that working is one
        piece of evidence, and two requests in a row make the conclusion. A 400/422 naming `stop` concludes at once."""
        send_stop = bool(settings.stop) and self.server_honours_stop is not False
        probing = False
        stop_failures = 0
        last_stop_failure: BaseException | None = None
        attempt = 0
        while True:
            try:
                response = await self._post(self._body(prepared, settings, n, offset, send_stop))
            except Exception as exc:
                if send_stop and self._stop_unknown() and _names_stop(exc):
                    self._conclude_no_stop(f"the server answered {_describe(exc, attempt)}")
                    send_stop = False
                    self.stats.stop_fallbacks += 1
                    continue
                if send_stop and self._stop_unknown() and _status(exc) in STOP_REJECTED_STATUS:
                    stop_failures += 1
                    if stop_failures >= 2 or attempt >= self.max_retries or not _retryable(exc):
                        send_stop, probing = False, True  # once without `stop`, not counted as a retry
                        self.stats.stop_fallbacks += 1
                        last_stop_failure = exc
                        continue
                elif probing and _status(exc) is not None:  # an error answer without `stop` too: not the cause
                    probing = False
                    send_stop = bool(settings.stop) and self.server_honours_stop is not False
                if not _retryable(exc) or attempt >= self.max_retries:
                    return _Failure(_describe(exc, attempt))
                logger.info(
                    "retrying after %s (attempt %d of %d)", _describe(exc, attempt), attempt + 1, self.max_retries
                )
                await self._sleep(self._retry_delay(exc, attempt))
                attempt += 1
                self.stats.retries += 1
                continue
            if probing:
                self._stop_evidence += 1
                if self._stop_evidence >= 2:
                    self._conclude_no_stop(
                        f"{self._stop_evidence} requests in a row failed carrying it (last: "
                        f"{_describe(last_stop_failure, 0) if last_stop_failure else '?'}) and worked without it"
                    )
            elif send_stop:
                self.server_honours_stop, self._stop_evidence = True, 0
            return self._parse(response, settings, sent_stop=send_stop)

    def _stop_unknown(self) -> bool:
        """Whether whether this server takes `stop` is still open (and may be concluded: `stop_mode` auto)."""
        return self.stop_mode == "auto" and self.server_honours_stop is None

    def _conclude_no_stop(self, evidence: str) -> None:
        if self.server_honours_stop is None:
            logger.warning("this server cannot take `stop`: %s; cutting on the client from now on", evidence)
        self.server_honours_stop = False

    def _retry_delay(self, exc: BaseException, attempt: int) -> float:
        """The server's Retry-After (seconds, capped at `backoff_max_s`) when it sent one, else the backoff."""
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        try:
            after = float(headers.get("retry-after"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return self._backoff(attempt)
        return min(self.backoff_max_s, max(0.0, after))

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * 2**attempt)
        if self._jitter is not None:  # spread retries of many workers over [delay/2, delay]
            delay *= 0.5 + 0.5 * self._jitter()
        return delay

    async def _post(self, body: dict[str, Any]) -> Any:
        assert self._client is not None and self._semaphore is not None, "called outside generate()"
        await self._breaker()
        async with self._semaphore:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            start = self._clock()
            try:
                response = await asyncio.wait_for(self._client.chat.completions.create(**body), self.timeout_s)
            except Exception as exc:
                if _connection_lost(exc):
                    self._consecutive_down += 1
                raise
            else:
                self._consecutive_down = 0
                return response
            finally:
                self.stats.in_flight -= 1
                self.stats.calls += 1
                self.stats.call_seconds += self._clock() - start

    # --- the circuit breaker ----------------------------------------------------------------------------------

    async def _breaker(self) -> None:
        """Closed: return at once. Open (`breaker_failures` connection failures in a row): no request is sent; one
        probe polls the server's health URL with backoff, and every caller waits for it. The server answers: the
        breaker closes and the requests go on (none of them spent a retry meanwhile). No answer by
        `breaker_deadline_s`: `ServerDownError` for every request, now and later, so the stage's failure budget
        stops the build instead of grading the rest against a dead server."""
        if self._dead_since is not None:
            raise ServerDownError(f"{self.base_url} unreachable for more than {self.breaker_deadline_s:g} s")
        if self.breaker_failures < 1 or self._consecutive_down < self.breaker_failures:
            return
        if self._probe is None or self._probe.done():
            logger.warning(
                "%d connection failures in a row to %s: holding requests and probing %s for up to %g s",
                self._consecutive_down,
                self.base_url,
                self.health_url,
                self.breaker_deadline_s,
            )
            self._probe = asyncio.ensure_future(self._wait_for_server())
        if not await asyncio.shield(self._probe):
            raise ServerDownError(f"{self.base_url} unreachable for more than {self.breaker_deadline_s:g} s")

    async def _wait_for_server(self) -> bool:
        start = self._clock()
        attempt = 0
        while True:
            if await self._health_check(self.health_url):
                logger.warning("%s answers again after %.1f s; resuming", self.base_url, self._clock() - start)
                self._consecutive_down = 0
                return True
            if self._clock() - start >= self.breaker_deadline_s:
                self._dead_since = self._clock()
                logger.error(
                    "%s did not answer for %g s: failing its requests", self.base_url, self.breaker_deadline_s
                )
                return False
            await self._sleep(self._backoff(attempt))
            attempt += 1

    def _new_client(self) -> Any:
        # Retries and timeouts are ours (injected clock/sleep, per-request accounting), not the SDK's.
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=self._http_client,
        )

    # --- request body and response ----------------------------------------------------------------------------

    def _body(
        self, prepared: _Prepared, settings: SamplingSettings, n: int, offset: int, send_stop: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prepared.messages,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if n > 1:
            body["n"] = n
        if settings.seed is not None:  # the seed of this call's first completion; the server adds j for choice j
            body["seed"] = settings.seed + offset
        if send_stop:
            body["stop"] = list(settings.stop)
        if self.exact_token_counts:
            body["logprobs"] = True
        extra = dict(self.extra_body)
        if self.vllm_extensions:
            extra["repetition_penalty"] = settings.repetition_penalty
            extra["include_stop_str_in_output"] = True
            if prepared.video_fps:
                extra["media_io_kwargs"] = {
                    "video": {"fps": prepared.video_fps[0], "num_frames": max(prepared.video_frames)}
                }
        elif settings.repetition_penalty != 1.0:
            self._warn_once("repetition_penalty", "repetition_penalty is not part of the OpenAI API; not sent")
        if extra:
            body["extra_body"] = extra
        return body

    def _parse(self, response: Any, settings: SamplingSettings, *, sent_stop: bool) -> list[Completion]:
        choices = list(getattr(response, "choices", None) or [])
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        shares = _shares(total, len(choices))
        out: list[Completion] = []
        for choice, share in zip(choices, shares, strict=True):
            message = getattr(choice, "message", None)
            text = (getattr(message, "content", None) or "") if message is not None else ""
            reason = getattr(choice, "finish_reason", None)
            stop_reason = getattr(choice, "stop_reason", None)  # vLLM: the stop string that ended the choice
            if (
                sent_stop
                and isinstance(stop_reason, str)
                and stop_reason in settings.stop
                and not text.endswith(stop_reason)
            ):  # a server that strips the stop string (vLLM without include_stop_str_in_output) still names it
                text += stop_reason
            if reason == "content_filter":
                out.append(Completion("", "error", prompt_tokens, share, error="content_filter"))
                continue
            cut, stop = cut_at_stop(text, settings.stop)
            finish = "stop" if stop is not None or reason != "length" else "length"
            tokens = _count_tokens(choice, cut, text, share)
            out.append(
                Completion(
                    cut, finish, prompt_tokens, tokens, stop_string=stop, token_ids=_sampled_ids(choice, cut, text)
                )
            )
        return out

    # --- messages ---------------------------------------------------------------------------------------------

    def _prepare(self, messages: list[dict[str, Any]]) -> _Prepared:
        """Qwen-format messages to OpenAI content parts; text-only turns become plain strings (widest support)."""
        out: list[dict[str, Any]] = []
        video_fps: list[float] = []
        video_frames: list[int] = []
        for message in messages:
            role = self.tool_role if message["role"] == "tool" else message["role"]
            content = message.get("content")
            if not isinstance(content, list):
                out.append({"role": role, "content": content or ""})
                continue
            parts: list[dict[str, Any]] = []
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif kind == "image":
                    parts.append(self._image_part(frame_array(part["image"])[0]))
                elif kind == "video":
                    frames = part["video"]
                    array = frame_array(frames)
                    if self.video_mode == "video_url":
                        url = video_data_url(frames, self.jpeg_quality)
                        parts.append({"type": "video_url", "video_url": {"url": url}})
                        video_fps.append(sample_fps(frames))
                        video_frames.append(int(array.shape[0]))
                    else:
                        parts.extend(self._frame_parts(frames, array))
                else:  # already in OpenAI form (image_url, ...): passed through
                    parts.append(part)
            if all(p["type"] == "text" for p in parts):
                out.append({"role": role, "content": "".join(p["text"] for p in parts)})
            else:
                out.append({"role": role, "content": parts})
        if len(set(video_fps)) > 1:
            self._warn_once(
                "mixed_fps",
                f"videos of one request have different fps {sorted(set(video_fps))}; vLLM takes one per request, "
                f"so {video_fps[0]} (the first video's) is sent and later clips' temporal positions are approximate",
            )
        return _Prepared(out, video_fps, video_frames)

    def _image_part(self, frame: Any) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": image_data_url(frame, self.image_format, self.jpeg_quality)}}

    def _frame_parts(self, frames: Any, array: Any) -> list[dict[str, Any]]:
        times = list(getattr(frames, "times", []) or [])
        labelled = self.frame_labels and len(times) == array.shape[0]
        parts: list[dict[str, Any]] = []
        for i, frame in enumerate(array):
            if labelled:
                parts.append({"type": "text", "text": f"<{times[i]:.1f} seconds>"})
            parts.append(self._image_part(frame))
        return parts

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class ServerDownError(ConnectionError):
    """The server stayed unreachable past the circuit breaker's deadline: requests fail at once, not retried."""


async def _server_answers(url: str) -> bool:
    """Whether anything answers HTTP at `url` below 500 (a 404 still proves the server is up), within 5 s."""

    def probe() -> bool:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=5.0) as reply:  # noqa: S310 (the configured server's URL)
                return int(reply.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except Exception as exc:  # refused, reset, timed out: down
            logger.debug("health probe of %s: %s", url, exc)
            return False

    return await asyncio.to_thread(probe)


def _health_url(base_url: str) -> str:
    """The server's health endpoint: `/health` at its root (vLLM, transformers serve), next to `/v1`."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/health"


def _connection_lost(exc: BaseException) -> bool:
    """Refused or reset connections, not timeouts: a stalled server is slow, a dead one refuses."""
    if isinstance(exc, ServerDownError | TimeoutError | openai.APITimeoutError):
        return False
    return isinstance(exc, ConnectionError | openai.APIConnectionError)


def _names_stop(exc: BaseException) -> bool:
    """A 400/422 whose message names `stop`: the server says it cannot take the parameter."""
    return _status(exc) in (400, 422) and "stop" in str(exc).lower()


def _retryable(exc: BaseException) -> bool:
    """Timeouts, lost connections, garbled answers and 408/409/425/429/5xx: worth another try. Other 4xx: the
    request is wrong."""
    if isinstance(exc, ServerDownError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError | openai.APIConnectionError):  # incl. APITimeoutError
        return True
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):  # a garbled answer: ask again
        return True
    status = _status(exc)
    return status is not None and status in RETRYABLE_STATUS


def _describe(exc: BaseException, retries: int) -> str:
    status = _status(exc)
    what = f"HTTP {status}" if status is not None else type(exc).__name__
    detail = str(exc) or type(exc).__name__
    return f"{what} after {retries} retries: {detail}"[:500]


def _shares(total: int, count: int) -> list[int]:
    """`total` split evenly over `count` choices (remainder to the first ones): usage is per response, not choice."""
    if count == 0:
        return []
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _count_tokens(choice: Any, cut: str, text: str, share: int) -> int:
    """Completion tokens of the kept text: exact from logprobs when present, else the usage share (scaled if cut)."""
    logprobs = getattr(choice, "logprobs", None)
    tokens = getattr(logprobs, "content", None) if logprobs is not None else None
    if tokens:
        if len(cut) >= len(text):
            return len(tokens)
        covered = 0
        for i, token in enumerate(tokens):
            covered += len(getattr(token, "token", "") or "")
            if covered >= len(cut):
                return i + 1
        return len(tokens)
    if text and len(cut) < len(text):
        return max(1, math.ceil(share * len(cut) / len(text)))
    return share


def _sampled_ids(choice: Any, cut: str, text: str) -> list[int] | None:
    """The sampled ids when the server sent them for exactly this text, else None (the trainer re-encodes).

    The OpenAI API returns text only. vLLM's server can add ids: a `token_ids` list on each choice when the request
    sets `return_token_ids` (recent vLLM, through `extra_body`), or logprob tokens spelled `token_id:N` when it runs
    with `--return-tokens-as-token-ids` and the request asks for `logprobs`. Only the first shape is read here, and
    only when the text was not cut on this side (a client-side cut leaves ids that no longer match the text).
    """
    ids = getattr(choice, "token_ids", None)
    if not isinstance(ids, list) or cut != text or not all(isinstance(i, int) for i in ids):
        return None
    return list(ids)
