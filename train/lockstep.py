"""Lockstep rollouts under sharded weights: every rank runs the same number of model forwards while rolling out.

Why: with FSDP (or ZeRO-3) each forward all-gathers the sharded weights, a collective every rank must join. In tool
rollouts ranks make different numbers of forwards (one rank's rollouts call the tool and run a second turn, another's
answer at once; turns stop at different lengths), so the rank with fewer forwards leaves and the others wait forever
in their next all-gather. transformers' `synced_gpus` keeps ranks together inside one `generate` call only.

How: while a rollout phase runs, forward pre-hooks announce every sharded call to the other ranks with an all-reduce
(MAX) of what the rank is about to run: 0 nothing (its rollouts are done), 1 a forward of the policy, 2 a call of
the vision tower. transformers (>= 5) encodes a prompt's media with the vision tower before its decoding loop, outside
the policy's forward, so the tower is a separate FSDP unit and a separate kind of call. Each round, every rank runs
the highest kind announced: a rank about to run a forward while another encodes media first joins it with a dummy
vision call and announces again; a rank that is done (`drain`) runs a dummy of whatever kind was announced (one pad
token; a 2 x 2 patch clip), and stops when every rank announces 0. So every rank makes the same sequence of
all-gathers. The engine's own `synced_gpus` is switched off meanwhile (its extra all-reduce per decoding step would
pair with nothing on an idle rank).

transformers' Trainer registers `generate` as an FSDP2 forward method (`register_fsdp_forward_method`, for LoRA's
mixed-DTensor error): that wrapper all-gathers the root's shards when `generate` is entered, a collective outside any
hooked call, which the other ranks would not join. While lockstep is on, the class's own `generate` runs instead:
each of its forwards gathers the root's shards in its own (paired) pre-forward hook.

Under FSDP wrap the decoder layers and the vision tower as a whole (not its blocks: a call of the tower must be one
unit's all-gather, whatever the clip's size). Under DDP, or when a separate engine (vLLM) generates, forwards make
no collectives and lockstep is off.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch

log = logging.getLogger(__name__)


def needs_lockstep(accelerator: Any) -> bool:
    """True when the policy's weights are sharded across ranks (FSDP 1 or 2, DeepSpeed ZeRO-3)."""
    if accelerator.num_processes < 2:
        return False
    kind = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    if "FSDP" in kind:
        return True
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


IDLE, FORWARD, VISION = 0, 1, 2


def vision_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """The policy's vision tower (`model.model.visual` in Qwen2.5-VL and Qwen3-VL), or None."""
    inner = getattr(model, "model", model)
    return getattr(inner, "visual", None) or getattr(model, "visual", None)


class Lockstep:
    """Keeps the ranks' sharded calls paired during a rollout phase (module docstring). Use as a context: entering
    installs the hooks; leaving normally drains (dummy calls until every rank is done). `forwards` and `dummies`
    count, by kind (1 forward, 2 vision tower), the real and the dummy calls this rank made."""

    def __init__(self, model: torch.nn.Module, pad_id: int, device: torch.device | str) -> None:
        self.model = model
        self.vision = vision_tower(model)
        self.pad_id = pad_id
        self.device = torch.device(device)
        self.forwards: Counter[int] = Counter()
        self.dummies: Counter[int] = Counter()
        self._handles: list[Any] = []
        self._idle = False
        self._generate_wrapper: Any = None

    @property
    def dummy_forwards(self) -> int:
        return sum(self.dummies.values())

    def _announce(self, kind: int) -> int:
        flag = torch.tensor([kind], dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def _sync(self, kind: int) -> None:
        if self._idle:
            return
        self.forwards[kind] += 1
        while (top := self._announce(kind)) != kind:
            self._dummy(top)  # another rank runs a higher kind of call now: join it first

    def _dummy(self, kind: int) -> None:
        self._idle = True
        try:
            with torch.no_grad():  # not inference_mode: FSDP2's gathered buffers are reused by training forwards
                if kind == VISION and self.vision is not None:
                    pixels, grid = self._dummy_clip()
                    self.vision(pixels, grid_thw=grid)
                else:
                    ids = torch.tensor([[self.pad_id]], device=self.device)
                    self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        finally:
            self._idle = False
        self.dummies[kind] += 1

    def _dummy_clip(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest input the vision tower takes: one temporal patch of merge x merge patches."""
        config = self.model.config.vision_config
        merge = int(getattr(config, "spatial_merge_size", 2))
        channels = int(getattr(config, "in_channels", getattr(config, "in_chans", 3)))
        dim = channels * int(getattr(config, "temporal_patch_size", 2)) * int(config.patch_size) ** 2
        pixels = torch.zeros(merge * merge, dim, device=self.device)
        return pixels, torch.tensor([[1, merge, merge]], device=self.device)

    def __enter__(self) -> Lockstep:
        # Every rank enters together. One forward first, so FSDP2 initialises its state from the root module: a
        # rollout's first call is the vision tower's, which would otherwise make the tower a root of its own.
        self._dummy(FORWARD)
        # FSDP2's `generate` wrapper is an instance attribute over the class's method (module docstring): set aside
        self._generate_wrapper = self.model.__dict__.pop("generate", None)
        # prepend: the announcement must come before FSDP's own pre-forward hook starts gathering the shards
        hook = self.model.register_forward_pre_hook(lambda *_: self._sync(FORWARD), prepend=True)
        self._handles = [hook]
        if self.vision is not None:
            hook = self.vision.register_forward_pre_hook(lambda *_: self._sync(VISION), prepend=True)
            self._handles.append(hook)
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            if exc_type is None:
                self.drain()
        finally:
            for handle in self._handles:
                handle.remove()
            if self._generate_wrapper is not None:
                self.model.generate = self._generate_wrapper
                self._generate_wrapper = None

    def drain(self) -> None:
        """Join the other ranks' calls with dummy ones until no rank makes any."""
        while (top := self._announce(IDLE)) != IDLE:
            self._dummy(top)
        log.debug("lockstep: calls %s, dummy calls %s", dict(self.forwards), dict(self.dummies))
