"""Generation engines behind the one `Engine` interface (model.engine_api).

- "transformers": local generate on CPU or GPU (the demo and the tests; `TransformersEngine`).
- "openai": any OpenAI-compatible server (`OpenAIEngine`), e.g. `transformers serve` or a hosted API.
- "vllm": `vllm serve` processes on the worker's GPUs, one per GPU group, reached through `OpenAIEngine`s balanced
  by `BalancedEngine` (`VLLMServerPool`).
- "oracle": a deterministic DEMO/TEST teacher that writes its chain from the answer hint in the prompt
  (`OracleEngine`); it lets `make demo` build MTVR-CoT without a real teacher model. Never for real builds.

Each back-end is imported only when asked for, so choosing one never imports (or requires) another.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from model.engine_api import Engine

EngineKind = Literal["transformers", "openai", "vllm", "oracle"]

__all__ = ["EngineKind", "make_engine"]


def make_engine(kind: EngineKind, **settings: Any) -> Engine:
    """Build an engine by name.

    - transformers: `model` (or `model_path_or_id`: a path or Hub id) plus TransformersEngine's keywords
      (device, dtype, batch_size, ...).
    - openai: `base_url`, `model` plus OpenAIEngine's keywords. A list of base URLs (one server per GPU group, or
      several hosts) gives one client per server behind a `BalancedEngine` (least sequences in flight first).
    - vllm: VLLMSettings fields (`model`, frame budgets, max_model_len, ...) start the server; any other keyword
      goes to its OpenAIEngine (max_concurrency, timeout_s, ...). Closing the engine stops the server.
    - oracle: optional `model` / `name` (labels only); the demo/test teacher (see `model.engines.oracle_engine`).
    """
    if kind == "transformers":
        from model.engines.transformers_engine import TransformersEngine

        settings = dict(settings)
        path = settings.pop("model", None) or settings.pop("model_path_or_id", None)
        if path is None:
            raise ValueError("the transformers engine needs `model` (a checkpoint path or Hub id)")
        return TransformersEngine(path, **settings)
    if kind == "openai":
        from model.engines.openai_engine import OpenAIEngine

        urls = settings.get("base_url")
        if isinstance(urls, list | tuple):
            from model.request_scheduler import BalancedEngine

            if not urls:
                raise ValueError("base_url: an empty list names no server")
            return BalancedEngine([OpenAIEngine(**{**settings, "base_url": str(u)}) for u in urls])
        return OpenAIEngine(**settings)
    if kind == "vllm":
        from model.engines.vllm_engine import VLLMServerPool, VLLMSettings

        names = {f.name for f in dataclasses.fields(VLLMSettings)}
        server_settings = VLLMSettings(**{k: v for k, v in settings.items() if k in names})
        client_settings = {k: v for k, v in settings.items() if k not in names}
        return VLLMServerPool(server_settings).engine(**client_settings)
    if kind == "oracle":
        from model.engines.oracle_engine import OracleEngine

        return OracleEngine(**settings)
    raise ValueError(f"unknown engine kind {kind!r}; expected 'transformers', 'openai', 'vllm' or 'oracle'")
