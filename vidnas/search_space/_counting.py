"""Parameters, FLOPs and peak activation memory per network call, without real compute.

Two methods give the same numbers:

* ``analytic`` (default): each unit's closed-form cost (``_cost``), microseconds per spec;
* ``trace``: each distinct unit is built on the meta device and run once under
  ``FakeTensorMode`` (no memory allocated, no arithmetic) with
  ``torch.utils.flop_counter`` counting FLOPs and a dispatch mode tracking the bytes
  of every tensor storage created. This is the reference the formulas are tested
  against; it costs a few seconds (mostly importing ``torch._dynamo``).

Either way the whole-network peak is assembled from the plan's wiring, walked by the
same :class:`~vidnas.search_space._plan.PlanWalk` the networks run on: the stacked
tensors alive at each unit, plus that unit's own peak. A test checks it against tracing
the whole network at once.

FLOPs are ``torch.utils.flop_counter``'s: 2 per multiply-accumulate in matmuls,
convolutions and attention (normalisations and activations are not counted). CPU
attention kernels are registered here so that attention is counted on any device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._family import build_plan, get_family, unit_cost
from vidnas.search_space._plan import PlanWalk, UnitPlan
from vidnas.search_space._spec import ArchSpec

__all__ = ["COUNT_METHODS", "ITEMSIZE", "CountReport", "UnitCount", "count_spec"]

COUNT_METHODS = ("analytic", "trace")

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclasses.dataclass(frozen=True)
class UnitCount:
    """Cost of one unit per network call."""

    name: str
    kind: str
    slot: str | None
    level: int | None
    op: str | None
    signature_id: str
    params: int
    flops: int
    peak_bytes: int  # bytes allocated inside the unit at its peak (its output included)
    live_bytes: int = 0  # all activation bytes alive at that moment (skips, residuals, conditioning too)


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
        return sum(u.params for u in self.units if u.slot is not None)

    @property
    def temporal_flops(self) -> int:
        return sum(u.flops for u in self.units if u.slot is not None)

    def slot_rows(self) -> list[dict[str, Any]]:
        """One row per temporal slot: slot, op, params, flops."""
        return [
            {"slot": u.slot, "level": u.level, "op": u.op, "params": u.params, "flops": u.flops}
            for u in self.units
            if u.slot is not None
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


def _unit_counts(plan: UnitPlan, spec: ArchSpec, batch: int, dtype: str, method: str) -> tuple[int, int, int]:
    if method == "analytic":
        cost = unit_cost(plan, batch)
        if cost is not None:
            return cost.params, cost.flops, cost.peak * ITEMSIZE[dtype]
    from vidnas.search_space._tracing import trace_unit

    return trace_unit(plan, spec, batch, dtype)


def _unit_count(plan: UnitPlan, params: int, flops: int, peak: int, live: int) -> UnitCount:
    op = plan.config["op"] if plan.slot is not None else None
    return UnitCount(plan.name, plan.kind, plan.slot, plan.level, op, plan.signature_id, params, flops, peak, live)


def count_spec(spec: ArchSpec, *, batch: int = 1, dtype: str = "float32", method: str = "analytic") -> CountReport:
    """Params, FLOPs and peak activation bytes of one UNet call on ``batch`` clips.

    Args:
        spec: The architecture (its backbone fixes frames and resolution).
        batch: Clips per call (2 when classifier-free guidance is batched).
        dtype: ``float32``, ``float16`` or ``bfloat16``; sets activation bytes.
        method: ``analytic`` (closed form) or ``trace`` (fake-tensor run); see the module doc.
    """
    if dtype not in ITEMSIZE:
        raise SpecError("dtype", dtype, "is not supported", f"choose one of {list(ITEMSIZE)}")
    if batch < 1:
        raise SpecError("batch", batch, "must be >= 1")
    if method not in COUNT_METHODS:
        raise SpecError("method", method, "is not a counting method", f"choose one of {list(COUNT_METHODS)}")
    plans = build_plan(spec)
    itemsize = ITEMSIZE[dtype]
    bb = spec.backbone
    cond_bytes = get_family(spec.family).conditioning_elements(bb, batch) * itemsize

    units: list[UnitCount] = []
    # Walk the plan with symbolic tensors (ids -> bytes) to know what is alive at each unit.
    sizes = {-1: 0}  # the network input is not an activation the call created
    walk = PlanWalk()
    peak = 0

    def visit(plan: UnitPlan, h_id: int, aux: int | None) -> int:
        nonlocal peak
        params, flops, unit_peak = _unit_counts(plan, spec, batch, dtype, method)
        if plan.is_identity:  # the output is the input tensor itself
            live, out = 0, h_id
        else:
            alive = {h_id, *walk.alive()} | ({aux} if aux is not None else set())
            live = cond_bytes + sum(sizes[i] for i in alive) + unit_peak
            out = len(sizes)
            sizes[out] = plan.out_elements(batch) * itemsize
        peak = max(peak, live)
        units.append(_unit_count(plan, params, flops, unit_peak, live))
        return out

    for plan in plans:
        if plan.conditioning:  # computed before the stream starts; alone in memory
            params, flops, unit_peak = _unit_counts(plan, spec, batch, dtype, method)
            peak = max(peak, unit_peak)
            units.append(_unit_count(plan, params, flops, unit_peak, unit_peak))
    walk.run([p for p in plans if not p.conditioning], -1, visit)
    order = {p.name: i for i, p in enumerate(plans)}
    units.sort(key=lambda u: order[u.name])
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
