"""Parameters, FLOPs and peak activation memory per UNet call, without real compute.

Two methods give the same numbers:

* ``analytic`` (default): each unit's closed-form cost (``_cost``), microseconds per spec;
* ``trace``: each distinct unit is built on the meta device and run once under
  ``FakeTensorMode`` (no memory allocated, no arithmetic) with
  ``torch.utils.flop_counter`` counting FLOPs and a dispatch mode tracking the bytes
  of every tensor storage created. This is the reference the formulas are tested
  against; it costs a few seconds (mostly importing ``torch._dynamo``).

Either way the whole-network peak is assembled from the plan's wiring: the skip and
residual tensors alive at each unit, plus that unit's own peak. A test checks it
against tracing the whole network at once.

FLOPs are ``torch.utils.flop_counter``'s: 2 per multiply-accumulate in matmuls,
convolutions and attention (normalisations and activations are not counted). CPU
attention kernels are registered here so that attention is counted on any device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vidnas._errors import SpecError
from vidnas.search_space._spec import ArchSpec
from vidnas.search_space._unet import Conditioning, UnitPlan, build_plan, build_unit, unit_cost

__all__ = ["COUNT_METHODS", "CountReport", "UnitCount", "count_module_call", "count_spec",
           "register_cpu_attention_flops", "trace_unit"]

COUNT_METHODS = ("analytic", "trace")

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


@dataclasses.dataclass(frozen=True)
class UnitCount:
    """Cost of one unit per UNet call."""

    name: str
    kind: str
    slot: str | None
    level: int | None
    op: str | None
    signature_id: str
    params: int
    flops: int
    peak_bytes: int  # bytes allocated inside the unit at its peak (its output included)


@dataclasses.dataclass(frozen=True)
class CountReport:
    """Counts for one spec at one batch size and dtype."""

    arch_id: str
    batch: int
    dtype: str
    method: str
    params: int
    flops: int
    activation_bytes: int  # peak bytes of tensors created during the call (weights and inputs excluded)
    units: tuple[UnitCount, ...]

    @property
    def temporal_params(self) -> int:
        return sum(u.params for u in self.units if u.kind == "temporal")

    @property
    def temporal_flops(self) -> int:
        return sum(u.flops for u in self.units if u.kind == "temporal")

    def slot_rows(self) -> list[dict[str, Any]]:
        """One row per temporal slot: slot, op, params, flops."""
        return [
            {"slot": u.slot, "level": u.level, "op": u.op, "params": u.params, "flops": u.flops}
            for u in self.units
            if u.kind == "temporal"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch_id": self.arch_id,
            "batch": self.batch,
            "dtype": self.dtype,
            "method": self.method,
            "params": self.params,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "temporal_params": self.temporal_params,
            "temporal_flops": self.temporal_flops,
            "slots": self.slot_rows(),
        }


def _fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def _cond_tensors(plan: UnitPlan, spec: ArchSpec, batch: int, dtype: torch.dtype) -> Conditioning:
    bb = spec.backbone
    n = batch * plan.frames
    temb = torch.empty(n, bb.temb_channels, dtype=dtype)
    context = torch.empty(n, bb.context_tokens, bb.cross_attention_dim, dtype=dtype) if bb.cross_attention_dim else None
    return Conditioning(plan.frames, temb, context)


def _unit_inputs(plan: UnitPlan, spec: ArchSpec, batch: int, dtype: torch.dtype) -> tuple[Any, ...]:
    """``(args, existing_tensors)`` to call the unit's module with."""
    if plan.kind == "time_embed":
        timestep = torch.empty(batch)
        ids = torch.empty(batch, spec.backbone.num_added_time_ids) if spec.backbone.num_added_time_ids else None
        return (timestep, ids), [timestep] + ([ids] if ids is not None else [])
    n = batch * plan.frames
    h = torch.empty(n, *plan.in_shape, dtype=dtype)
    aux = torch.empty(n, *plan.aux_shape, dtype=dtype) if plan.aux_shape is not None else None
    cond = _cond_tensors(plan, spec, batch, dtype)
    existing = [t for t in (h, aux, cond.temb, cond.context) if t is not None]
    return (h, cond, aux), existing


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
    key = (plan.signature_id, batch, dtype)
    if key not in _TRACE_CACHE:
        with torch.device("meta"):
            module = build_unit(plan).to(_DTYPES[dtype])
        params = sum(p.numel() for p in module.parameters())
        with _fake_mode():
            module = module.to_empty(device="cpu")
            args, existing = _unit_inputs(plan, spec, batch, _DTYPES[dtype])
            flops, peak = count_module_call(module, args, existing)
        _TRACE_CACHE[key] = (params, flops, peak)
    return _TRACE_CACHE[key]


def _unit_counts(plan: UnitPlan, spec: ArchSpec, batch: int, dtype: str, method: str) -> tuple[int, int, int]:
    if method == "analytic":
        cost = unit_cost(plan, batch)
        if cost is not None:
            return cost.params, cost.flops, cost.peak * _DTYPES[dtype].itemsize
    return trace_unit(plan, spec, batch, dtype)


def _bytes(shape: tuple[int, ...], n: int, itemsize: int) -> int:
    size = n * itemsize
    for d in shape:
        size *= d
    return size


def count_spec(spec: ArchSpec, *, batch: int = 1, dtype: str = "float32", method: str = "analytic") -> CountReport:
    """Params, FLOPs and peak activation bytes of one UNet call on ``batch`` clips.

    Args:
        spec: The architecture (its backbone fixes frames and resolution).
        batch: Clips per call (2 when classifier-free guidance is batched).
        dtype: ``float32``, ``float16`` or ``bfloat16``; sets activation bytes.
        method: ``analytic`` (closed form) or ``trace`` (fake-tensor run); see the module doc.
    """
    if dtype not in _DTYPES:
        raise SpecError("dtype", dtype, "is not supported", f"choose one of {list(_DTYPES)}")
    if batch < 1:
        raise SpecError("batch", batch, "must be >= 1")
    if method not in COUNT_METHODS:
        raise SpecError("method", method, "is not a counting method", f"choose one of {list(COUNT_METHODS)}")
    plans = build_plan(spec)
    itemsize = _DTYPES[dtype].itemsize
    bb = spec.backbone
    n = batch * bb.frames
    cond_bytes = _bytes((bb.temb_channels,), n, itemsize)
    if bb.cross_attention_dim:
        cond_bytes += _bytes((bb.context_tokens, bb.cross_attention_dim), n, itemsize)

    units: list[UnitCount] = []
    # Simulate the run: which tensors are alive at each unit (ids -> bytes).
    next_id = 0
    h_id, sizes = -1, {-1: 0}  # the network input is not an activation it created
    skips: list[int] = []
    residuals: list[int] = []
    peak = 0
    for plan in plans:
        params, flops, unit_peak = _unit_counts(plan, spec, batch, dtype, method)
        op = plan.config["op"] if plan.kind == "temporal" else None
        units.append(UnitCount(plan.name, plan.kind, plan.slot, plan.level, op, plan.signature_id, params, flops,
                               unit_peak))
        if plan.kind == "time_embed":
            peak = max(peak, unit_peak)
            continue
        if plan.is_identity:
            continue
        aux = skips.pop() if plan.pop == "skip" else residuals.pop() if plan.pop == "residual" else None
        if plan.push == "residual":
            residuals.append(h_id)
        alive = {h_id, *skips, *residuals} | ({aux} if aux is not None else set())
        peak = max(peak, cond_bytes + sum(sizes[i] for i in alive) + unit_peak)
        next_id += 1
        h_id = next_id
        sizes[h_id] = _bytes(plan.out_shape, n, itemsize)
        if plan.push == "skip":
            skips.append(h_id)
    return CountReport(
        arch_id=spec.arch_id,
        batch=batch,
        dtype=dtype,
        method=method,
        params=sum(u.params for u in units),
        flops=sum(u.flops for u in units),
        activation_bytes=peak,
        units=tuple(units),
    )
