"""Roofline *estimates* for devices known only by a datasheet.

Each unit takes ``max(FLOPs / peak FLOP/s, bytes moved / bandwidth) + launch overhead``;
bytes moved are the unit's weights plus its input and output activations (a lower
bound on traffic). The result is always labelled an estimate: real kernels reach a
fraction of the peaks, so measured latency is higher.

:func:`roofline_stream_estimate` does the same for a causal network generating a video chunk
by chunk with its caches (time to the first chunk, steady frames per second).
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
    """Estimated latency of one network call on ``device``, with a per-unit breakdown."""
    dev = device if isinstance(device, DeviceSpec) else get_device(device)
    _check_dtype(dev, dtype)
    units = [_unit_estimate(plan, unit_cost(plan, batch), batch, dev, dtype)
             for plan in build_plan(spec) if not plan.is_identity]
    return {"estimate": True, "model": "roofline", "device": dataclasses.asdict(dev), "dtype": dtype,
            "batch": batch, "arch_id": spec.arch_id, "per_call_ms": sum(u["estimate_ms"] for u in units),
            "units": units}


def _check_dtype(dev: DeviceSpec, dtype: str) -> None:
    if dtype not in dev.peak_flops:
        raise SpecError("dtype", dtype, f"has no peak FLOP/s on device {dev.name}",
                        f"choose one of {list(dev.peak_flops)}")


def _unit_estimate(plan, cost, batch: int, dev: DeviceSpec, dtype: str) -> dict[str, Any]:
    """One unit's roofline time: the larger of its compute and its traffic, plus a launch."""
    if cost is None:
        raise SpecError(f"temporal.{plan.slot}.op", plan.config.get("op"), "has no cost formula to estimate")
    rows = batch * plan.frames
    act = plan.in_elements(batch) + plan.out_elements(batch)
    if plan.aux_shape is not None:
        act += rows * _numel(plan.aux_shape)
    bytes_moved = ITEMSIZE.get(dtype, 4) * (cost.params + act)
    compute_ms = cost.flops / dev.peak_flops[dtype] * 1000
    memory_ms = bytes_moved / dev.memory_bandwidth * 1000
    return {"name": plan.name, "kind": plan.kind, "slot": plan.slot,
            "op": plan.config["op"] if plan.slot is not None else None, "flops": cost.flops, "bytes": bytes_moved,
            "estimate_ms": max(compute_ms, memory_ms) + dev.launch_overhead_us / 1000,
            "bound": "compute" if compute_ms >= memory_ms else "memory"}


def roofline_stream_estimate(spec: ArchSpec, device: str | DeviceSpec, *, chunk_frames: int, steps: int,
                             chunks: int | None = None, batch: int = 1, dtype: str = "float16") -> dict[str, Any]:
    """Estimated time to the first chunk and steady frames per second of a causal network streaming.

    A chunk of ``chunk_frames`` latent frames costs ``steps`` denoising passes that read the
    caches plus one pass at t = 0 that writes them (CausVid, Self Forcing). A pass over chunk
    ``i`` costs, per unit, what the whole clip of ``i + 1`` chunks costs minus the clip of
    ``i`` chunks for the slot units (exact for chunked causal attention with a KV cache and for
    ops that never mix frames; an upper bound for causal ops computed as a masked dense
    product) and the unit at one chunk's shape for the others (patchify, conditioning, head).
    Work that does not grow with the clip (the text's keys and values) is thus paid in the first
    chunk and reused after, as CausVid's cross-attention cache does (the first chunk pays it on
    each of its passes, a slight overestimate). Traffic counts weights and the chunk's
    activations, not the cache read (a lower bound).
    Decoded frames follow the autoencoder's temporal factor: the first chunk of ``c`` latent
    frames decodes to ``(c - 1) * factor + 1`` frames, later ones to ``c * factor``.
    """
    dev = device if isinstance(device, DeviceSpec) else get_device(device)
    _check_dtype(dev, dtype)
    if not spec.is_causal:
        raise SpecError("spec", spec.name or spec.arch_id, "has ops that see future frames and cannot stream",
                        "use causal ops (block-causal or rolling-window attention, causal convolutions) everywhere")
    block = spec.causal_block_frames
    if chunk_frames < 1 or chunk_frames % block:
        raise SpecError("chunk_frames", chunk_frames, f"must be a multiple of the network's causal block ({block})")
    if steps < 1:
        raise SpecError("steps", steps, "must be >= 1")
    total = spec.backbone.frames
    chunks = chunks or max(1, total // chunk_frames)
    if chunks < 1:
        raise SpecError("chunks", chunks, "must be >= 1")

    def slot_flops(frames: int) -> dict[str, tuple[Any, Any]]:
        plans = build_plan(spec.with_shape(frames=frames))
        return {p.name: (p, unit_cost(p, batch)) for p in plans if p.slot is not None and not p.is_identity}

    chunk_plans = [p for p in build_plan(spec.with_shape(frames=chunk_frames)) if not p.is_identity]
    per_chunk_ms: list[float] = []
    previous: dict[str, tuple[Any, Any]] = {}
    for i in range(chunks):
        clip = slot_flops((i + 1) * chunk_frames)
        pass_ms = 0.0
        for plan in chunk_plans:
            cost = unit_cost(plan, batch)
            if plan.slot is not None:
                whole = clip[plan.name][1]
                before = previous[plan.name][1].flops if plan.name in previous else 0
                cost = dataclasses.replace(cost, flops=whole.flops - before)
            pass_ms += _unit_estimate(plan, cost, batch, dev, dtype)["estimate_ms"]
        per_chunk_ms.append((steps + 1) * pass_ms)
        previous = clip
    factor = spec.backbone.vae_temporal_factor
    first_frames = (chunk_frames - 1) * factor + 1
    steady = per_chunk_ms[1:] or per_chunk_ms
    steady_ms = sum(steady) / len(steady)
    return {"estimate": True, "model": "roofline", "device": dataclasses.asdict(dev), "dtype": dtype,
            "batch": batch, "arch_id": spec.arch_id, "chunk_frames": chunk_frames, "steps": steps,
            "passes_per_chunk": steps + 1, "chunks": chunks, "per_chunk_ms": per_chunk_ms,
            "first_chunk_ms": per_chunk_ms[0], "first_chunk_decoded_frames": first_frames,
            "steady_chunk_ms": steady_ms, "decoded_frames_per_chunk": chunk_frames * factor,
            "steady_fps": chunk_frames * factor * 1000 / steady_ms,
            "excludes": "text encoder, autoencoder decoding, sampler arithmetic"}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
