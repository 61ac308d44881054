"""vLLM on GPU: one `vllm serve` process per worker, spoken to through `OpenAIEngine` like any other server.

Why a server and not `vllm.LLM` in-process: the client code the tests exercise (retries, `n` and `stop`
accounting, media encoding) is then the code production runs, the server batches concurrent requests from the
rollout loop by itself (continuous batching, prefix caching across the turns of a tool conversation), and a crash
in the engine does not take the Beam worker down with it. This follows Beam's `vllm_inference.py` (a server per
worker, found by `python -m vllm.entrypoints.openai.api_server`, health-polled before use).

The launch flags are derived from the frame budget and the model family, not typed by hand (the multimodal ones are
the family's, `ModelFamily.vllm_serve_args`; the family is read from the checkpoint's config.json, a local folder or
the Hugging Face cache, `model.families.family_for_model`):
- `--limit-mm-per-prompt '{"video": 1 + max_tool_turns, "image": images_per_prompt}'`: the question's video plus
  one clip per tool turn;
- `--media-io-kwargs '{"video": {"num_frames": N}}'`: vLLM keeps only the first `num_frames` of a
  `data:video/jpeg` frame list (default 32), so N is the larger of the video and clip frame budgets;
- Qwen3-VL and Qwen3.5 only: `--mm-processor-kwargs '{"do_sample_frames": false, "do_resize": false}'`, so vLLM's
  HF video processor neither resamples the frames sent nor fits the clip into one pixel budget;
- `--generation-config vllm`: vLLM's default ("auto") would take the checkpoint's generation_config.json as
  default sampling params (Qwen2.5-VL ships top_k=1, i.e. greedy), which would make the K rollouts identical;
- `--enable-prefix-caching`: tool turns resend the whole conversation.

vllm is imported nowhere here: it is found on PATH (or as an importable package) only when a server starts, so
this module loads and its command line is tested on machines without vLLM. The flags are coded against vLLM's
documented CLI (`vllm serve --help`, its engine arguments); vLLM itself cannot run on the CPU machines the tests run
on, so a real launch is tested only where vLLM and a GPU exist.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.engine_api import Engine
from model.engines.openai_engine import OpenAIEngine
from model.families import ModelFamily, family_for_model

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install mtvr[vllm]"


class VLLMNotInstalledError(RuntimeError):
    """Neither a `vllm` executable nor an importable `vllm` package: the vLLM engine cannot start here."""


class VLLMServerError(RuntimeError):
    """The server exited or did not become healthy in time; the message holds the tail of its log."""


@dataclass(frozen=True, slots=True)
class VLLMSettings:
    """How to launch one `vllm serve` process. Frame budgets: RL rollouts 64 frames, SFT 128, clips 64
    (docs/papers.md)."""

    model: str
    served_model_name: str | None = None
    #: The Hub revision (branch, tag or commit) to serve; pin it so cached results name exact weights.
    revision: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    max_frames_per_video: int = 64
    clip_max_frames: int = 64
    max_tool_turns: int = 1
    images_per_prompt: int = 1
    max_model_len: int = 32768
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    #: Which of the worker's GPUs to serve on: "auto" (every visible one), a count (the first N) or a list of
    #: device ids as CUDA_VISIBLE_DEVICES names them. One server per `tensor_parallel_size` GPUs (`gpu_groups`).
    gpus: str | int | tuple[int | str, ...] | list[int | str] = "auto"
    dtype: str = "auto"
    seed: int = 0
    generation_config: str = "vllm"
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 1800.0
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_frames_per_video", "clip_max_frames", "max_model_len", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tool_turns < 0 or self.images_per_prompt < 0:
            raise ValueError("max_tool_turns and images_per_prompt must be >= 0")
        gpus = self.gpus
        if (
            isinstance(gpus, bool)
            or (isinstance(gpus, str) and gpus != "auto")
            or (isinstance(gpus, int) and gpus < 1)
        ):
            raise ValueError(f"gpus must be 'auto', a count >= 1 or a list of device ids, got {gpus!r}")

    @property
    def videos_per_prompt(self) -> int:
        """The question's video plus one clip per tool turn."""
        return 1 + self.max_tool_turns

    @property
    def num_frames(self) -> int:
        """Frames vLLM must keep of one `data:video/jpeg` list: the larger of the video and clip budgets."""
        return max(self.max_frames_per_video, self.clip_max_frames)

    @property
    def name(self) -> str:
        """The model name requests must use."""
        return self.served_model_name or self.model

    def family(self) -> ModelFamily:
        """The model's family, from its config.json (a local checkpoint, or a Hub id's config in the Hugging Face
        cache; the default family with a warning otherwise): the same family `EngineConfig.family` gives the prompt
        builder, so the server is launched for the frames the prompts carry. A method, not a field: it is read from
        the checkpoint, never set in a config."""
        return family_for_model(self.model, self.revision)


def find_vllm(
    which: Callable[[str], str | None] = shutil.which,
    find_spec: Callable[[str], Any] = importlib.util.find_spec,
) -> list[str]:
    """The launcher: `vllm serve` from PATH, else `python -m vllm.entrypoints.openai.api_server`, else an error."""
    executable = which("vllm")
    if executable:
        return [executable, "serve"]
    if find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    raise VLLMNotInstalledError(
        "vLLM is not installed (no `vllm` on PATH and no importable `vllm` package). "
        f"Install it on a CUDA machine with `{INSTALL_HINT}`, or use the 'transformers' or 'openai' engine."
    )


def vllm_command(
    settings: VLLMSettings, port: int, launcher: list[str], family: ModelFamily | None = None
) -> list[str]:
    """The exact argv of the server. `vllm serve` takes the model as a positional; the module form as --model.
    The multimodal flags are `family`'s (None: `settings.family()`, from the checkpoint's config.json)."""
    head = [*launcher, settings.model] if launcher[-1] == "serve" else [*launcher, "--model", settings.model]
    family = family if family is not None else settings.family()
    multimodal = family.vllm_serve_args(
        frames_per_video=settings.num_frames,
        videos=settings.videos_per_prompt,
        images=settings.images_per_prompt,
    )
    command = [
        *head,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--served-model-name",
        settings.name,
        "--enable-prefix-caching",
        *multimodal,
        "--max-model-len",
        str(settings.max_model_len),
        "--generation-config",
        settings.generation_config,
        "--tensor-parallel-size",
        str(settings.tensor_parallel_size),
        "--dtype",
        settings.dtype,
        "--seed",
        str(settings.seed),
    ]
    if settings.revision is not None:
        command += ["--revision", settings.revision]
    if settings.gpu_memory_utilization is not None:
        command += ["--gpu-memory-utilization", str(settings.gpu_memory_utilization)]
    return command + list(settings.extra_args)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET `url` answers 200; any connection error is just "not yet"."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback URL we built)
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def visible_gpus(env: dict[str, str] | None = None, device_count: Callable[[], int] | None = None) -> list[str]:
    """The worker's GPUs as CUDA_VISIBLE_DEVICES names them: that variable's list when it is set (ids or UUIDs), else
    0 .. n-1 for the n devices torch sees (none when torch has no CUDA). An empty list means no GPU is visible."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if device_count is None:

        def device_count() -> int:
            try:
                import torch

                return int(torch.cuda.device_count())
            except Exception:  # no torch, or a torch without CUDA: no GPU to place servers on
                return 0

    return [str(i) for i in range(device_count())]


def gpu_groups(gpus: Any, tensor_parallel_size: int, visible: list[str]) -> list[list[str]]:
    """The GPU groups, one per server: `gpus` ("auto", a count, or device ids) chosen among `visible`, cut into groups
    of `tensor_parallel_size`. GPUs that do not fill a last group are left idle (logged). No visible GPU: one group
    with no pinning (`[[]]`), so the server sees what the process sees, as before."""
    if not visible:
        if gpus != "auto":
            raise ValueError(f"gpus: {gpus!r} asked for, but no GPU is visible (CUDA_VISIBLE_DEVICES, torch)")
        return [[]]
    if gpus == "auto":
        chosen = list(visible)
    elif isinstance(gpus, int):
        if gpus > len(visible):
            raise ValueError(f"gpus: {gpus} asked for, but only {len(visible)} are visible ({','.join(visible)})")
        chosen = visible[:gpus]
    else:
        chosen = [str(g) for g in gpus]
        missing = [g for g in chosen if g not in visible]
        if missing or len(set(chosen)) != len(chosen):
            raise ValueError(f"gpus: {list(gpus)} must be distinct visible devices ({','.join(visible)})")
    if len(chosen) < tensor_parallel_size:
        raise ValueError(f"tensor_parallel_size {tensor_parallel_size} needs {tensor_parallel_size} GPUs; {chosen}")
    n = len(chosen) // tensor_parallel_size
    if n * tensor_parallel_size < len(chosen):
        logger.warning(
            "GPUs %s fill no group of %d; they stay idle",
            ",".join(chosen[n * tensor_parallel_size :]),
            tensor_parallel_size,
        )
    return [chosen[i * tensor_parallel_size : (i + 1) * tensor_parallel_size] for i in range(n)]


#: How an `OpenAIEngine` talks to a vLLM server (this module's, or `trl vllm-serve`'s in `train.vllm_rollouts`):
#: real videos as `video_url`, vLLM's extra request fields, its exact token counts, stop strings cut by the server.
VLLM_CLIENT_OPTIONS: dict[str, Any] = {
    "video_mode": "video_url",
    "vllm_extensions": True,
    "exact_token_counts": True,
    "stop_mode": "server",
}


class VLLMServer:
    """One `vllm serve` subprocess: `start()` launches it and waits for /health, `engine()` gives the client,
    `close()` stops it (its own process group, so vLLM's engine-core children go too).

    `launcher`, `popen`, `health`, `clock` and `sleep` are injectable so the lifecycle is tested on CPU.
    """

    def __init__(
        self,
        settings: VLLMSettings,
        *,
        launcher: list[str] | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
        health: Callable[[str], bool] = http_ok,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self._launcher = launcher
        self._popen = popen
        self._health = health
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.command: list[str] | None = None
        self.log_path: Path | None = None
        self.startup_s: float | None = None
        self._started = 0.0

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self.settings.host}:{self.port}/v1"

    def start(self) -> VLLMServer:
        """Launch the server (once) and block until /health answers 200."""
        return self.launch().wait()

    def launch(self) -> VLLMServer:
        """Start the process (once) without waiting for it: a pool launches every server, then waits for all."""
        if self.process is not None and self.process.poll() is None:
            return self
        launcher = self._launcher or find_vllm()
        self.port = self.settings.port or free_port(self.settings.host)
        self.command = vllm_command(self.settings, self.port, launcher)
        handle, name = tempfile.mkstemp(prefix="vllm-", suffix=".log")
        self.log_path = Path(name)
        logger.info("starting vLLM: %s (log %s)", " ".join(self.command), self.log_path)
        self._started = self._clock()
        with os.fdopen(handle, "wb") as log:
            self.process = self._popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.settings.env},
            )
        return self

    def wait(self) -> VLLMServer:
        """Block until the launched server answers /health (raises `VLLMServerError` if it dies or times out)."""
        if self.startup_s is not None:
            return self
        self._wait_healthy(self._started)
        self.startup_s = self._clock() - self._started
        logger.info("vLLM healthy on port %d after %.1f s", self.port, self.startup_s)
        return self

    def _wait_healthy(self, started: float) -> None:
        assert self.process is not None
        url = f"http://{self.settings.host}:{self.port}/health"
        while True:
            code = self.process.poll()
            if code is not None:
                raise VLLMServerError(f"vLLM exited with code {code} before it was healthy.\n{self.log_tail()}")
            if self._health(url):
                return
            if self._clock() - started > self.settings.startup_timeout_s:
                tail = self.log_tail()
                self.close()
                raise VLLMServerError(f"vLLM not healthy after {self.settings.startup_timeout_s:.0f} s.\n{tail}")
            self._sleep(self._poll_s)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def engine(self, **client_settings: Any) -> OpenAIEngine:
        """An `OpenAIEngine` on this server: real videos (`video_url`), vLLM's extra fields, exact token counts.

        Closing the engine stops the server.
        """
        self.start()
        options: dict[str, Any] = {"name": "vllm", **VLLM_CLIENT_OPTIONS, "on_close": self.close}
        options.update(client_settings)
        return OpenAIEngine(self.base_url, self.settings.name, **options)

    def close(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it is still there after `timeout_s`."""
        process, self.process = self.process, None
        self.startup_s = None
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("vLLM did not stop within %.0f s; killing it", timeout_s)
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout_s)

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class VLLMServerPool:
    """Every GPU of a worker: one `vllm serve` per group of `tensor_parallel_size` GPUs (`gpu_groups`), each pinned
    with CUDA_VISIBLE_DEVICES and on its own port, and one client that balances requests across them.

    Why separate servers and not vLLM's `--data-parallel-size`: for a dense model (Qwen-VL) vLLM's data-parallel
    ranks are independent replicas (its "Data Parallel Deployment" page), and the same page's external mode treats
    each rank as its own deployment behind a router. Our client is that router (`BalancedEngine`: least sequences in
    flight), so one server per group gives the same layout with per-server health, logs and restarts, explicit
    pinning that a test can check, and no dependence on a vLLM version's internal balancer.

    Servers start together (all launched, then each waited for), so startup costs one server's time, not N.
    `visible` and the `VLLMServer` keywords (launcher, popen, health, clock, sleep) are injectable for tests.
    """

    def __init__(self, settings: VLLMSettings, *, visible: list[str] | None = None, **server_options: Any) -> None:
        self.settings = settings
        groups = gpu_groups(
            settings.gpus, settings.tensor_parallel_size, visible_gpus() if visible is None else visible
        )
        self.groups = groups
        self.servers = [
            VLLMServer(settings if not group else _pinned(settings, group, several=len(groups) > 1), **server_options)
            for group in groups
        ]

    @property
    def base_urls(self) -> list[str]:
        return [server.base_url for server in self.servers]

    def start(self) -> VLLMServerPool:
        try:
            for server in self.servers:
                server.launch()
            for server in self.servers:
                server.wait()
        except BaseException:
            self.close()
            raise
        return self

    def engine(self, **client_settings: Any) -> Engine:
        """One `OpenAIEngine` per server (as `VLLMServer.engine` makes it) behind a `BalancedEngine`; a single server
        gives its engine alone. Closing the engine stops every server."""
        self.start()
        if len(self.servers) == 1:
            return self.servers[0].engine(**client_settings)
        from model.request_scheduler import BalancedEngine

        clients = [server.engine(**{**client_settings, "on_close": None}) for server in self.servers]
        balanced = BalancedEngine(list(clients))
        balanced_close = balanced.aclose

        async def aclose() -> None:
            await balanced_close()
            self.close()

        balanced.aclose = aclose  # type: ignore[method-assign]
        return balanced

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> VLLMServerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pinned(settings: VLLMSettings, group: list[str], *, several: bool) -> VLLMSettings:
    """`settings` for the server on `group`: CUDA_VISIBLE_DEVICES set to it, and its own port when there are several
    servers (a fixed `port` would collide: the pool's servers take free ports)."""
    import dataclasses

    env = {**settings.env, "CUDA_VISIBLE_DEVICES": ",".join(group)}
    return dataclasses.replace(settings, env=env, port=None if several else settings.port)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the group the server leads (started with start_new_session), falling back to the process alone."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
