"""Lets accelerate's FSDP2 path run on CPU processes (gloo), for the tests only.

accelerate (1.x) turns FSDP on only for accelerator devices: on CPU processes its state is MULTI_CPU and the FSDP
plugin is dropped, although FSDP2's `fully_shard` itself trains on CPU with gloo. `install()` keeps the plugin when
`accelerate launch --use_fsdp` asked for it, so the trainer runs the same code as on GPUs: accelerate's
`fsdp2_prepare_model` (auto wrap, full state dict), the Trainer's FSDP branches, and DGRPO's lockstep switch.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from accelerate import state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__
    if getattr(original, "_mtvr_fsdp_cpu", False):
        return

    def init(self: Any, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        # Each init copies PartialState's MULTI_CPU back over the shared state: keep re-applying the plugin.
        plugin = fsdp_plugin if fsdp_plugin is not None else getattr(self, "fsdp_plugin", None)
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    init._mtvr_fsdp_cpu = True  # type: ignore[attr-defined]
    state.AcceleratorState.__init__ = init  # type: ignore[method-assign]
