"""DGRPO's vLLM rollouts (issue 18, item 3), checked as a protocol against fakes that record every call.

vLLM cannot be installed here, so `vllm.LLM`, TRL's `VLLMClient` and vLLM's `SamplingParams` are replaced by fakes
where TRL's `VLLMGeneration` looks them up; everything else is real: TRL's trainer builds its `VLLMGeneration`,
whose own `sync_weights` walks the tiny policy's parameters after real optimizer steps on CPU. What these tests do
not show: that a real vLLM accepts the requests, loads the weights or samples (docs text in the issue's report).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import train.vllm_rollouts as vllm_rollouts
from model.engine_api import Completion, GenerationRequest, SamplingSettings
from model.engines.vllm_engine import VLLMNotInstalledError
from model.families import get_family
from tests.train.conftest import CALL, GOOD, ScriptedPolicy, dgrpo_config
from train.dgrpo import build_dgrpo_trainer

ROOT = Path(__file__).resolve().parents[2]
VLLM_ARGS = {"use_vllm": True, "vllm_importance_sampling_correction": False, "max_steps": 2, "learning_rate": 1e-3}


def char_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids spelling `text` one character per token: decodes to the text, but re-encoding never gives them."""
    return [i for ch in text for i in tokenizer.encode(ch, add_special_tokens=False)]


@dataclass
class FakeSamplingParams:
    n: int
    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int
    seed: int | None
    stop: list[str]
    include_stop_str_in_output: bool


class FakeLLM:
    """`vllm.LLM` as TRL's VLLMGeneration and our ColocateEngine drive it. `events` is the call order; `loads`
    holds one {name: tensor} per weight push (copied, as vLLM copies into its own buffers); each generate event
    carries how many pushes it had seen (its weights' version)."""

    tokenizer: Any = None
    instances: list[FakeLLM] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.events: list[tuple[Any, ...]] = []
        self.loads: list[dict[str, torch.Tensor]] = []
        self.prompts: list[dict[str, Any]] = []
        self.sampled: list[list[int]] = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner))
        )
        FakeLLM.instances.append(self)

    def _load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        if not self.events or self.events[-1][0] != "load":
            self.events.append(("load",))
            self.loads.append({})
        for name, tensor in weights:
            self.loads[-1][name] = tensor.detach().clone()

    def sleep(self, level: int) -> None:
        self.events.append(("sleep", level))

    def wake_up(self, tags: list[str] | None = None) -> None:
        self.events.append(("wake", tuple(tags or ())))

    def reset_prefix_cache(self) -> None:
        self.events.append(("reset",))

    def generate(self, prompts: list[dict[str, Any]], sampling_params: list[Any], use_tqdm: bool) -> list[Any]:
        self.events.append(("generate", len(self.loads)))
        outputs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            self.prompts.append(prompt)
            seqs = []
            for j in range(params.n):
                text = scripted_reply(prompt["prompt"], j, params.n)
                ids = char_ids(self.tokenizer, text)
                self.sampled.append(ids)
                seqs.append(SimpleNamespace(text=text, token_ids=ids, finish_reason="stop"))
            outputs.append(SimpleNamespace(prompt_token_ids=[0] * 10, outputs=seqs))
        return outputs


def scripted_reply(prompt: str, j: int, n: int) -> str:
    """First turn of a tool prompt: a clip call; otherwise a good answer, or for n > 1 alternately an untagged one
    (reward spread in every group, so the optimizer step moves the weights)."""
    first_turn = prompt.count("<|im_start|>assistant") == 1
    if first_turn and "<tools>" in prompt:
        return CALL.format(s=0.0, e=2.0)
    return GOOD.format(answer="A") if j % 2 == 0 or n == 1 else "I am not sure."


class FakeClient:
    """TRL's `VLLMClient` as VLLMGeneration drives it in server mode (weights only; generation is ours)."""

    instances: list[FakeClient] = []

    def __init__(self, base_url: str, group_port: int, connection_timeout: float) -> None:
        self.base_url = base_url
        self.model = "tiny-served"
        self.events: list[tuple[Any, ...]] = []
        self.loads: list[dict[str, torch.Tensor]] = []
        self.metadata: list[Any] = []
        FakeClient.instances.append(self)

    def init_communicator(self, device: Any) -> None:
        self.events.append(("init_communicator",))

    def update_named_params(self, metadata: list[Any], params: Any) -> None:
        self.events.append(("update",))
        self.metadata.append(metadata)
        self.loads.append({name: tensor.detach().clone() for name, tensor in params})

    def reset_prefix_cache(self) -> None:
        self.events.append(("reset",))


class FakeServerEngine(ScriptedPolicy):
    """Stands in for the OpenAI engine on the server: scripted replies with char ids, each call logged with the
    number of weight pushes the server had received."""

    def __init__(self, client: FakeClient, tokenizer: Any) -> None:
        super().__init__()
        self.client = client
        self.tokenizer = tokenizer

    async def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.client.events.append(("generate", len(self.client.loads)))
        out = await super().generate(requests)
        for group in out:
            for completion in group:
                completion.token_ids = char_ids(self.tokenizer, completion.text)
        return out


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM "installed" as fakes, where TRL and this project look it up; the env TRL writes is restored after."""
    import trl.generation.vllm_generation as trl_vllm

    monkeypatch.setattr(trl_vllm, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(trl_vllm, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(trl_vllm, "VLLMClient", FakeClient)
    monkeypatch.setattr(vllm_rollouts, "vllm_available", lambda: True)
    monkeypatch.setattr(vllm_rollouts, "_sampling_params_class", lambda: FakeSamplingParams)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(var, "0")
        monkeypatch.delenv(var)
    FakeLLM.instances.clear()
    FakeClient.instances.clear()


def _params(trainer: Any) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _snapshot_each_step(trainer: Any) -> list[dict[str, torch.Tensor]]:
    from transformers import TrainerCallback

    snapshots: list[dict[str, torch.Tensor]] = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            snapshots.append(_params(trainer))

    trainer.add_callback(Snapshot())
    return snapshots


def _assert_same(sent: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> None:
    assert sent.keys() == params.keys()  # every parameter, under the model's own names (no DDP/FSDP prefixes)
    assert not any(n.startswith("module.") or "_fsdp_wrapped_module" in n for n in sent)
    for name, tensor in params.items():
        assert torch.equal(sent[name], tensor), name


def test_colocate_pushes_the_stepped_weights_and_sleeps_between_rollouts(demo_dir, tmp_path, fake_vllm):
    args = {**VLLM_ARGS, "vllm_mode": "colocate", "vllm_enable_sleep_mode": True}
    trainer = build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "colocate", args))
    (llm,) = FakeLLM.instances
    FakeLLM.tokenizer = trainer.processing_class.tokenizer
    assert llm.kwargs["enable_sleep_mode"] is True and llm.kwargs["model"] == str(demo_dir / "tiny")
    assert llm.events == [("sleep", 2)]  # TRL creates it asleep
    initial = _params(trainer)
    snapshots = _snapshot_each_step(trainer)
    trainer.train()

    assert trainer.state.global_step == 2 and len(snapshots) == 2
    # Two rollout phases (before step 1's and step 2's updates), each: wake the weights, push, reset the prefix cache,
    # wake the KV cache, generate (tool turns: several calls) with that push's weights, sleep level 2.
    phases: list[list[tuple[Any, ...]]] = []
    for event in llm.events[1:]:
        if event == ("wake", ("weights",)):
            phases.append([])
        phases[-1].append(event)
    assert len(phases) == 2
    for k, phase in enumerate(phases, start=1):
        generates = [e for e in phase if e[0] == "generate"]
        assert phase[:4] == [("wake", ("weights",)), ("load",), ("reset",), ("wake", ("kv_cache",))]
        assert generates and all(e == ("generate", k) for e in generates)
        assert phase[4 : 4 + len(generates)] == generates and phase[-1] == ("sleep", 2)
    # The tensors pushed are the policy's: the initial weights, then exactly the weights after step 1's update.
    assert len(llm.loads) == 2
    _assert_same(llm.loads[0], initial)
    _assert_same(llm.loads[1], snapshots[0])
    assert any(not torch.equal(initial[n], snapshots[0][n]) for n in initial)  # the step did move the weights
    engine = trainer._engine
    assert set(engine.calls_by_version) == {0, 1} and engine.weights_version == 1 and engine.syncs == 2
    # The completions trained on carried the fake's sampled ids, never a re-encoding.
    assert trainer.rollouts.id_sources["reencoded"] == 0 and trainer.rollouts.id_sources["sampled"] > 0
    assert any("video" in p.get("multi_modal_data", {}) for p in llm.prompts)  # video prompts reached vLLM
    assert trainer.model.training

    # Sleep level 2 drops the weights: a phase at an unchanged step pushes them again (TRL's generate does too).
    for _ in range(2):
        with engine.rollout_phase(trainer):
            pass
    assert len(llm.loads) == 4 and llm.events[-1] == ("sleep", 2)
    _assert_same(llm.loads[3], _params(trainer))


def test_server_pushes_through_the_client_after_every_step_and_never_sleeps(
    demo_dir, tmp_path, fake_vllm, monkeypatch
):
    engines: list[FakeServerEngine] = []

    def server_engine(trainer: Any) -> FakeServerEngine:
        engines.append(FakeServerEngine(trainer.vllm_generation.vllm_client, trainer.processing_class.tokenizer))
        return engines[-1]

    monkeypatch.setattr(vllm_rollouts, "server_engine", server_engine)
    args = {**VLLM_ARGS, "vllm_mode": "server", "vllm_server_port": 8123}
    trainer = build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "server", args))
    assert FakeLLM.instances == []
    (client,) = FakeClient.instances
    assert client.base_url == "http://0.0.0.0:8123" and client.events == [("init_communicator",)]
    initial = _params(trainer)
    snapshots = _snapshot_each_step(trainer)
    trainer.train()

    assert len(engines) == 1  # built once, kept for the run
    updates = [i for i, e in enumerate(client.events) if e == ("update",)]
    assert len(updates) == 2 and all(client.events[i + 1] == ("reset",) for i in updates)
    generates = [e for e in client.events if e[0] == "generate"]
    assert {e[1] for e in generates} == {1, 2}  # step 1's rollouts on push 1, step 2's on push 2 (step 1's weights)
    assert all(e[1] == 1 for e in client.events[updates[0] : updates[1]] if e[0] == "generate")
    _assert_same(client.loads[0], initial)
    _assert_same(client.loads[1], snapshots[0])
    assert [m[0] for m in client.metadata[1]] == list(initial)  # names announced before the tensors stream
    assert not any(e[0] in ("sleep", "wake") for e in client.events)

    # TRL's rule: no push while the step has not moved; one when it has.
    rollouts = trainer._engine
    rollouts.before_rollouts(trainer)  # step 2 now: the weights after the last update go out
    _assert_same(client.loads[2], _params(trainer))
    rollouts.before_rollouts(trainer)
    assert len(client.loads) == 3 and rollouts.weights_version == 2


def test_the_trainer_trains_on_the_ids_vllm_sampled_across_tool_turns(demo_dir, tmp_path, fake_vllm):
    args = {**VLLM_ARGS, "vllm_mode": "colocate", "vllm_enable_sleep_mode": True, "beta": 0.01}
    # Room for the char-level ids (one token per character) of both turns.
    rollout = {"max_new_tokens": 256, "max_total_tokens": 2048}
    trainer = build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "ids", args, rollout=rollout))
    (llm,) = FakeLLM.instances
    tok = FakeLLM.tokenizer = trainer.processing_class.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows = [dict(trainer.train_dataset[i]) for i in range(len(trainer.train_dataset))]
    tool_row = {**next(r for r in rows if r["modality"] == "video"), "tools": True}
    out = trainer._generate_and_score_completions([tool_row, tool_row])

    # Turn 1 (one request, n = 2): the clip call with the question's video; turn 2 (one per rollout): the answer,
    # with the question's video and the clip.
    assert [len(p["multi_modal_data"]["video"]) for p in llm.prompts] == [1, 2, 2]
    call, answer = char_ids(tok, CALL.format(s=0.0, e=2.0)), char_ids(tok, GOOD.format(answer="A"))
    assert call != tok.encode(CALL.format(s=0.0, e=2.0), add_special_tokens=False)
    keep = out["completion_mask"] * out["tool_mask"]
    for r in range(2):
        assert out["completion_ids"][r][keep[r].bool()].tolist() == [*call, end, *answer, end]
    assert llm.events[-1] == ("sleep", 2)


def test_the_colocate_request_carries_the_frames_their_metadata_and_the_sampling(demo_dir, monkeypatch):
    from train.modeling import load_processor

    processor = load_processor(str(demo_dir / "tiny"))
    family = get_family("qwen2_5_vl")
    frames = SimpleNamespace(
        frames=np.zeros((4, 56, 84, 3), dtype=np.uint8), times=[0.0, 0.5, 1.0, 1.5], sample_fps=2.0
    )
    settings = SamplingSettings(n=3, temperature=0.9, top_p=0.95, max_new_tokens=64, repetition_penalty=1.05, seed=7)
    messages = [
        {"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "When?"}]},
    ]
    engine = vllm_rollouts.ColocateEngine(llm=None, processor=processor, family=family)
    prompt = engine.build_prompt(GenerationRequest(messages, settings))
    assert prompt["prompt"].count("<|vision_start|><|video_pad|><|vision_end|>") == 1
    assert prompt["prompt"].endswith("<|im_start|>assistant\n")
    ((array, metadata),) = prompt["multi_modal_data"]["video"]
    assert array.shape == (4, 56, 84, 3) and array.dtype == np.uint8
    # The facts the pipelines' vLLM path sends (fps in media_io_kwargs, the frame count), per video here.
    assert metadata == {"fps": 2.0, "total_num_frames": 4, "do_sample_frames": False}
    assert prompt["mm_processor_kwargs"] == {"do_sample_frames": False}

    qwen3 = vllm_rollouts.ColocateEngine(llm=None, processor=processor, family=get_family("qwen3_vl"))
    ((_, metadata),) = qwen3.build_prompt(GenerationRequest(messages, settings))["multi_modal_data"]["video"]
    assert metadata["frames_indices"] == [0.0, 0.5, 1.0, 1.5] and metadata["fps"] == 1.0

    monkeypatch.setattr(vllm_rollouts, "_sampling_params_class", lambda: FakeSamplingParams)
    params = vllm_rollouts.sampling_params(settings)
    assert params == FakeSamplingParams(
        n=3, temperature=0.9, top_p=0.95, repetition_penalty=1.05, max_tokens=64, seed=7,
        stop=["</tool_call>", "</answer>"], include_stop_str_in_output=True,
    )  # fmt: skip


def test_importing_the_trainer_needs_no_vllm_and_selecting_it_without_vllm_names_the_extra(demo_dir, tmp_path):
    code = "import sys, train.dgrpo, train.vllm_rollouts; assert not {'vllm', 'trl'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT), timeout=120)

    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), use_vllm=True, bf16=False, report_to=[])
    with pytest.raises(VLLMNotInstalledError, match=r"mtvr\[vllm\]"):
        vllm_rollouts.check_vllm_args(args)
    # The trainer itself (TRL's __init__ builds the vLLM engine) refuses too, naming a `vllm` extra.
    with pytest.raises((ImportError, VLLMNotInstalledError), match=r"\[vllm\]"):
        build_dgrpo_trainer(dgrpo_config(demo_dir, tmp_path / "none", {"use_vllm": True}))


def test_settings_the_rollout_loop_cannot_honour_are_refused_with_what_to_set():
    base = {"use_vllm": True, "vllm_mode": "colocate", "vllm_tensor_parallel_size": 1}
    with pytest.raises(ValueError, match="vllm_importance_sampling_correction: false"):
        vllm_rollouts.check_rollout_args(SimpleNamespace(**base, vllm_importance_sampling_correction=True))
    tp = {**base, "vllm_tensor_parallel_size": 2, "vllm_importance_sampling_correction": False}
    with pytest.raises(ValueError, match="vllm_mode: server"):
        vllm_rollouts.check_rollout_args(SimpleNamespace(**tp))
    vllm_rollouts.check_rollout_args(SimpleNamespace(**{**tp, "vllm_mode": "server"}))
