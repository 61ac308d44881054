"""Reproducible rollouts: per-request seeds derived from the build seed, and engines that honour them per row.

- `rollout_seed` is a pure function of (build seed, sample id, rollout index, turn), and turn 0 follows the engines'
  rule (completion i of an n-request uses seed + i), so it names the seed every rollout turn was sampled with.
- `TransformersEngine` samples row k of a request seeded s with its own generator seeded s + k, so the text of a
  (request, k) is the same whatever the batch size, the order of requests and the other requests in the batch,
  and the same as an n = 1 request seeded s + k. The tiny checkpoint's random weights make every token a draw.
- `OpenAIEngine` sends the request's seed when the server honours n, and seed + i when it splits n.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from model.engine_api import Completion, GenerationRequest, SamplingSettings
from model.rollout import MAX_ROLLOUTS, rollout_seed

# --- rollout_seed --------------------------------------------------------------------------------------------------


def test_rollout_seed_is_stable_and_in_range() -> None:
    # Pinned: a change here changes every seeded build's rollouts (and so its cached results).
    assert rollout_seed(0, "s1", 0) == 583999842
    assert rollout_seed(0, "s1", 3, 2) == 1399524678
    seeds = [rollout_seed(b, f"id-{j}", i, t) for b in (0, 2**40) for j in range(20) for i in (0, 7) for t in (0, 3)]
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert all(rollout_seed(2**40, f"id-{j}", MAX_ROLLOUTS - 1) < 2**31 for j in range(20))


def test_rollout_seed_differs_by_each_part() -> None:
    base = rollout_seed(1, "sample", 2, 1)
    assert rollout_seed(2, "sample", 2, 1) != base
    assert rollout_seed(1, "sample2", 2, 1) != base
    assert rollout_seed(1, "sample", 3, 1) != base
    assert rollout_seed(1, "sample", 2, 2) != base
    assert rollout_seed(1, "sample", 2, 0) != base
    # Turn 0 is one n=K request: rollout i's seed is the request's (rollout 0's) seed + i.
    first = rollout_seed(1, "sample", 0)
    assert [rollout_seed(1, "sample", i) for i in range(8)] == [first + i for i in range(8)]
    # Parts are not concatenated ambiguously.
    assert rollout_seed(1, "a1", 0) != rollout_seed(11, "a", 0)


def test_rollout_seed_refuses_out_of_range_parts() -> None:
    with pytest.raises(ValueError, match="rollout_index"):
        rollout_seed(0, "s", -1)
    with pytest.raises(ValueError, match="rollout_index"):
        rollout_seed(0, "s", MAX_ROLLOUTS)
    with pytest.raises(ValueError, match="turn"):
        rollout_seed(0, "s", 0, -1)


# --- the seeded sampler --------------------------------------------------------------------------------------------


def test_seeded_sampler_draws_from_softmax_with_top_p_and_top_k() -> None:
    torch = pytest.importorskip("torch")
    from model.engines.transformers_engine import SeededSampler

    probs = torch.tensor([0.1, 0.3, 0.6])
    rows = 6000
    scores = probs.log().repeat(rows, 1) * 0.5  # logits at temperature 0.5: softmax(scores / 0.5) == probs
    picks = SeededSampler(range(rows), temperature=0.5)(None, scores).argmax(dim=-1)
    freq = torch.bincount(picks, minlength=3).float() / rows
    assert torch.allclose(freq, probs, atol=0.025), freq
    # Same seeds, same draws; a row's draw does not depend on the other rows.
    again = SeededSampler(range(rows), temperature=0.5)(None, scores).argmax(dim=-1)
    assert torch.equal(picks, again)
    alone = SeededSampler([17], temperature=0.5)(None, scores[:1]).argmax(dim=-1)
    assert alone.item() == picks[17].item()
    # HF's top-p keeps the smallest head holding >= top_p of the mass; top-k the k best.
    logits = probs.log().repeat(rows, 1)
    head = SeededSampler(range(rows), temperature=1.0, top_p=0.7)(None, logits).argmax(dim=-1)
    assert set(head.tolist()) == {1, 2}
    only = SeededSampler(range(rows), temperature=1.0, top_p=0.5)(None, logits).argmax(dim=-1)
    assert set(only.tolist()) == {2}
    top1 = SeededSampler(range(rows), temperature=1.0, top_k=1)(None, logits).argmax(dim=-1)
    assert set(top1.tolist()) == {2}
    assert math.isinf(SeededSampler([0], temperature=1.0, top_p=0.5)(None, logits[:1])[0, 0].item())


# --- TransformersEngine on the tiny checkpoint ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    """Engines over ONE loaded tiny model, differing only in rows per `generate` call."""
    pytest.importorskip("torch")
    from model.engines.transformers_engine import TransformersEngine
    from model.tiny_checkpoint import build_tiny_checkpoint

    path = build_tiny_checkpoint(tmp_path_factory.mktemp("seeds") / "tiny")
    base = TransformersEngine(str(path), device="cpu", batch_size=8)
    built = {8: base}
    for size in (1, 3):
        built[size] = TransformersEngine(
            str(path), device="cpu", batch_size=size, model=base.hf_model, processor=base.processor
        )
    return built


def _frames(count: int, seed: int) -> Any:
    from mtvr_data.frames import Frames

    array = np.random.default_rng(seed).integers(0, 256, size=(count, 56, 56, 3), dtype=np.uint8)
    return Frames(array, [(i + 0.5) / 2.0 for i in range(count)], 2.0, 0.0, count / 2.0, "clip.mp4")


def _request(kind: str, key: str, settings: SamplingSettings, words: str = "What happens?") -> GenerationRequest:
    """Prompts of very different lengths (text only, 4 or 8 video frames), so batches are really left-padded."""
    content: list[dict[str, Any]] = [{"type": "text", "text": words}]
    if kind == "video4":
        content.insert(0, {"type": "video", "video": _frames(4, 1)})
    elif kind == "video8":
        content.insert(0, {"type": "video", "video": _frames(8, 2)})
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": content},
    ]
    return GenerationRequest(messages, settings, key=key)


SAMPLING = SamplingSettings(temperature=1.0, max_new_tokens=12, stop=())


def _requests() -> list[GenerationRequest]:
    kinds = ["text", "video4", "video8", "text", "video4", "text"]
    return [
        _request(kind, f"r{j}", dataclasses.replace(SAMPLING, n=1 + j % 3, seed=1000 + 37 * j), f"Question {j}?")
        for j, kind in enumerate(kinds)
    ]


def _texts(out: list[list[Completion]]) -> list[list[str]]:
    assert all(c.ok for row in out for c in row), [c.error for row in out for c in row]
    return [[c.text for c in row] for row in out]


def _generate(engine: Any, requests: list[GenerationRequest]) -> list[list[str]]:
    return _texts(asyncio.run(engine.generate(requests)))


def test_seeded_text_does_not_depend_on_batching(engines: dict[int, Any]) -> None:
    requests = _requests()
    reference = _generate(engines[1], requests)
    assert _generate(engines[3], requests) == reference
    assert _generate(engines[8], requests) == reference
    assert _generate(engines[8], requests[::-1])[::-1] == reference
    # Mixed with other requests: other seeds, no seed, greedy, other settings (separate groups or shared batches).
    others = [
        _request("video8", "o1", dataclasses.replace(SAMPLING, n=2, seed=5)),
        _request("text", "o2", dataclasses.replace(SAMPLING, n=2)),
        _request("video4", "o3", dataclasses.replace(SAMPLING, temperature=0.0)),
        _request("text", "o4", dataclasses.replace(SAMPLING, seed=77, top_p=0.9)),
    ]
    mixed = [others[0], requests[2], others[1], requests[0], others[2], *requests[3:], requests[1], others[3]]
    out = dict(zip((r.key for r in mixed), _generate(engines[3], mixed), strict=True))
    assert [out[r.key] for r in requests] == reference


def test_completion_k_of_n_is_sampled_with_seed_plus_k(engines: dict[int, Any]) -> None:
    """The engines' rule: an n=3 request seeded s samples what three n=1 requests seeded s, s+1, s+2 do."""
    shared = _request("video4", "shared", dataclasses.replace(SAMPLING, n=3, seed=4242))
    (together,) = _generate(engines[8], [shared])
    split = [
        dataclasses.replace(shared, settings=dataclasses.replace(shared.settings, n=1, seed=4242 + k))
        for k in range(3)
    ]
    assert [row[0] for row in _generate(engines[8], split)] == together
    assert len(set(together)) == 3  # the K completions are not copies


def test_different_seeds_give_different_text(engines: dict[int, Any]) -> None:
    a = _request("text", "a", dataclasses.replace(SAMPLING, seed=1))
    b = _request("text", "b", dataclasses.replace(SAMPLING, seed=2))
    (ta,), (tb,) = _generate(engines[8], [a, b])
    assert ta != tb


def test_seedless_sampling_uses_hf_sampling(engines: dict[int, Any]) -> None:
    engine = engines[8]
    seen: list[dict[str, Any]] = []
    original = engine.hf_model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return original(**kwargs)

    engine.hf_model.generate = spy
    try:
        (row,) = _generate(engine, [_request("text", "free", dataclasses.replace(SAMPLING, n=4))])
    finally:
        del engine.hf_model.generate
    assert len(row) == 4 and len(set(row)) > 1
    (kwargs,) = seen
    assert kwargs["do_sample"] is True and "logits_processor" not in kwargs


# --- OpenAIEngine --------------------------------------------------------------------------------------------------


class _Server:
    """A stand-in `client.chat.completions` that records bodies and honours n or answers one choice."""

    def __init__(self, honours_n: bool) -> None:
        self.honours_n = honours_n
        self.bodies: list[dict[str, Any]] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    async def create(self, **body: Any) -> Any:
        self.bodies.append(body)
        count = body.get("n", 1) if self.honours_n else 1
        choices = [
            SimpleNamespace(message=SimpleNamespace(content=f"seed {body['seed'] + i}"), finish_reason="stop")
            for i in range(count)
        ]
        return SimpleNamespace(choices=choices, usage=SimpleNamespace(prompt_tokens=5, completion_tokens=count))


@pytest.mark.parametrize("honours_n", [True, False])
def test_openai_engine_sends_the_request_seed_and_seed_plus_i_for_split_n(honours_n: bool) -> None:
    pytest.importorskip("openai")
    from model.engines.openai_engine import OpenAIEngine

    server = _Server(honours_n)
    engine = OpenAIEngine("http://fake/v1", "fake", client=server, stop_mode="client", jitter=None)
    settings = dataclasses.replace(SAMPLING, n=3, seed=rollout_seed(0, "s1", 0))
    (row,) = asyncio.run(engine.generate([_request("text", "s1/t0", settings)]))
    assert [c.text for c in row] == [f"seed {rollout_seed(0, 's1', i)}" for i in range(3)]
    if honours_n:  # one call with n=3 and the request's seed: the server samples choice i with seed + i
        assert [(b.get("n", 1), b["seed"]) for b in server.bodies] == [(3, settings.seed)]
    else:  # n ignored: the rest go as n=1 calls seeded seed + i
        assert sorted(b["seed"] for b in server.bodies) == [rollout_seed(0, "s1", i) for i in range(3)]
