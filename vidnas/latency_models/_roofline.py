"""Roofline *estimates* for devices known only by a datasheet.

Each unit takes ``max(FLOPs / peak FLOP/s, bytes moved / bandwidth) + launch overhead``;
bytes moved are the unit's weights plus its input and output activations (a lower
bound on traffic). The result is always labelled an estimate: real kernels reach a
fraction of the peaks, so measured latency is higher.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ITEMSIZE, ArchSpec, build_plan, unit_cost


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    summary: str
    peak_flops: dict[str, float]
    memory_bandwidth: float
    launch_overhead_us: float
    source: str


def load_devices() -> dict[str, DeviceSpec]:
    import yaml

    text = resources.files("vidnas.latency_models").joinpath("devices.yaml").read_text()
    devices = {}
    for d in yaml.safe_load(text):
        # YAML 1.1 reads 17.5e12 (no sign in the exponent) as a string: convert explicitly.
        d = {**d, "peak_flops": {k: float(v) for k, v in d["peak_flops"].items()},
             "memory_bandwidth": float(d["memory_bandwidth"]), "launch_overhead_us": float(d["launch_overhead_us"])}
        devices[d["name"]] = DeviceSpec(**d)
    return devices


def get_device(name: str) -> DeviceSpec:
    devices = load_devices()
    if name not in devices:
        raise SpecError("device", name, "is not a known datasheet device", f"choose one of {list(devices)}")
    return devices[name]


def roofline_estimate(spec: ArchSpec, device: str | DeviceSpec, *, batch: int = 1,
                      dtype: str = "float16") -> dict[str, Any]:
    """Estimated latency of one UNet call on ``device``, with a per-unit breakdown."""
    dev = device if isinstance(device, DeviceSpec) else get_device(device)
    if dtype not in dev.peak_flops:
        raise SpecError("dtype", dtype, f"has no peak FLOP/s on device {dev.name}",
                        f"choose one of {list(dev.peak_flops)}")
    peak = dev.peak_flops[dtype]
    itemsize = ITEMSIZE.get(dtype, 4)
    units = []
    for plan in build_plan(spec):
        if plan.is_identity:
            continue
        cost = unit_cost(plan, batch)
        if cost is None:
            raise SpecError(f"temporal.{plan.slot}.op", plan.config.get("op"), "has no cost formula to estimate")
        rows = batch * plan.frames
        act = rows * _numel(plan.in_shape) + rows * _numel(plan.out_shape)
        if plan.aux_shape is not None:
            act += rows * _numel(plan.aux_shape)
        bytes_moved = itemsize * (cost.params + act)
        compute_ms = cost.flops / peak * 1000
        memory_ms = bytes_moved / dev.memory_bandwidth * 1000
        ms = max(compute_ms, memory_ms) + dev.launch_overhead_us / 1000
        units.append({"name": plan.name, "kind": plan.kind, "slot": plan.slot,
                      "op": plan.config["op"] if plan.slot is not None else None, "flops": cost.flops,
                      "bytes": bytes_moved, "estimate_ms": ms, "bound": "compute" if compute_ms >= memory_ms
                      else "memory"})
    return {"estimate": True, "model": "roofline", "device": dataclasses.asdict(dev), "dtype": dtype,
            "batch": batch, "arch_id": spec.arch_id, "per_call_ms": sum(u["estimate_ms"] for u in units),
            "units": units}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
