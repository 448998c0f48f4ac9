"""Counting by running under fake tensors: the reference the closed-form costs are tested against.

Each unit is built on the meta device and run once under ``FakeTensorMode`` (no memory
allocated, no arithmetic) with ``torch.utils.flop_counter`` counting FLOPs and
:class:`StorageTracker` following the bytes of every tensor storage created.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vidnas.search_space._family import build_unit, get_family
from vidnas.search_space._plan import UnitPlan
from vidnas.search_space._spec import ArchSpec

__all__ = ["StorageTracker", "count_module_call", "register_cpu_attention_flops", "trace_unit"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@functools.cache
def register_cpu_attention_flops() -> None:
    """Count the CPU flash-attention kernel as ``torch.utils.flop_counter`` counts the CUDA ones."""
    from torch.utils import flop_counter

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in flop_counter.flop_registry or op.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(op)
    def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


class StorageTracker(TorchDispatchMode):
    """Bytes of tensor storages created while active: current and peak.

    Storages that existed before (weights, inputs) are never counted, even when an op
    returns a view of them. Works with real and fake tensors.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._ref = StorageWeakRef
        self._existing = {StorageWeakRef(t.untyped_storage()).cdata for t in existing}
        self._live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

    def _collect(self) -> None:
        for key, (ref, nbytes) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self._collect()
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = self._ref(storage)
                if ref.cdata not in self._existing and ref.cdata not in self._live:
                    self._live[ref.cdata] = (ref, storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def count_module_call(module: torch.nn.Module, args: tuple, existing: Iterable[torch.Tensor] = ()) -> tuple[int, int]:
    """Run ``module(*args)`` counting ``(flops, peak_bytes_allocated)``; use fake tensors for free counting."""
    from torch.utils.flop_counter import FlopCounterMode

    register_cpu_attention_flops()
    existing = list(existing) + list(module.parameters()) + list(module.buffers())
    flop_mode = FlopCounterMode(display=False)
    tracker = StorageTracker(existing)
    with torch.no_grad(), flop_mode, tracker:
        module(*args)
    return flop_mode.get_total_flops(), tracker.peak


_TRACE_CACHE: dict[tuple[str, int, str], tuple[int, int, int]] = {}


def trace_unit(plan: UnitPlan, spec: ArchSpec, batch: int, dtype: str = "float32") -> tuple[int, int, int]:
    """``(params, flops, peak_bytes)`` of one unit by a fake-tensor run, cached by signature."""
    if plan.is_identity:
        return 0, 0, 0
    from vidnas.search_space._modules import UnitHarness

    key = (plan.signature_id, batch, dtype)
    if key not in _TRACE_CACHE:
        with torch.device("meta"):
            module = build_unit(plan).to(_DTYPES[dtype])
        params = sum(p.numel() for p in module.parameters())
        with _fake_mode():
            harness = UnitHarness(plan, module.to_empty(device="cpu"))
            args = get_family(plan.family).unit_inputs(plan, spec.backbone, batch, dtype=_DTYPES[dtype])
            flops, peak = count_module_call(harness, args, args)
        _TRACE_CACHE[key] = (params, flops, peak)
    return _TRACE_CACHE[key]
