"""Quality at real model sizes: the proxy scale, and the memory a quality evaluation will need.

Latency is always predicted at an architecture's real shape. Quality signals are computed
at a stated *proxy scale*: the same temporal design (the same op and searched parameters at
every slot group) on the space rebuilt with fewer channels, frames or pixels. The memory an
evaluation needs is predicted from the closed-form counts before anything runs
(:func:`evaluation_bytes`), so an evaluation the machine cannot hold is never started.

:func:`choose_scale` walks a ladder of scales from the real shape down (width halved to an
eighth, frames halved to 4, pixels halved while the latent stays at least 8 cells) and
keeps the largest whose predicted memory for supernet training fits the budget and whose
estimated training time (the measured step time of the smallest scale, scaled by FLOPs; an
estimate, labelled as such) fits the time budget.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, SearchSpace, count_spec, get_space

__all__ = ["ProxyScale", "ScaleChoice", "choose_scale", "evaluation_bytes", "ladder", "supernet_bytes"]


@dataclasses.dataclass(frozen=True)
class ProxyScale:
    """A space's size options (pixels, as ``get_space`` takes them); ``None`` keeps the real value."""

    frames: int | None = None
    height: int | None = None
    width: int | None = None
    width_mult: float | None = None

    def space(self, name: str, real: dict[str, Any]) -> SearchSpace:
        """Space ``name`` at this scale; unset sizes come from ``real`` (the campaign's shape)."""
        shape = {k: v for k, v in real.items() if v is not None}
        for key in ("frames", "height", "width"):
            if getattr(self, key) is not None:
                shape[key] = getattr(self, key)
        if self.width_mult is not None:
            shape["width_mult"] = (shape.get("width_mult") or 1.0) * self.width_mult
        return get_space(name, **shape)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evaluation_bytes(spec: ArchSpec, *, clips: int, training: bool, dtype: str = "float32") -> int:
    """Predicted peak bytes of evaluating ``spec`` on ``clips`` clips: weights plus the forward's peak
    activations; for training (a backward pass), every unit's activations kept for the backward
    (the sum of the units' peaks: an upper bound) plus gradients and AdamW's two moments."""
    report = count_spec(spec, batch=clips, dtype=dtype)
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
    weights = report.params * itemsize
    if not training:
        return weights + report.activation_bytes
    kept = sum(u.peak_bytes for u in report.units)
    return 4 * weights + max(kept, report.activation_bytes)


def _largest_path(space: SearchSpace) -> ArchSpec:
    """The architecture of the space taking, at each group, the option with the largest unit peak."""
    from vidnas.search_space import TemporalChoice, build_plan, unit_cost

    best: dict[str, tuple[int, TemporalChoice]] = {}
    for group, _slot, choice, unit in space.slot_units(build_plan(space.base)):
        cost = unit_cost(unit, 1)
        peak = cost.peak if cost is not None else 0
        if group.name not in best or peak > best[group.name][0]:
            best[group.name] = (peak, choice)
    return space.base.replace_choices({s: best[g.name][1] for g in space.groups for s in g.slots})


def _mean_path_flops(space: SearchSpace, paths: int = 8) -> float:
    """Mean FLOPs of a few sampled paths: what a supernet step costs on average (each step trains one
    sampled path), where the largest path is what its memory must hold."""
    from vidnas.search_space import count_spec

    specs = space.random_specs(paths, seed=0)
    return sum(count_spec(x).flops for x in specs) / len(specs)


def supernet_bytes(space: SearchSpace, *, batch_size: int) -> int:
    """Predicted peak bytes of one supernet training step: the backbone, every option's weights with
    their gradients and moments, and the largest path's training activations."""
    from vidnas.search_space import build_plan, unit_cost

    shared = 0
    for _group, _slot, _choice, unit in space.slot_units(build_plan(space.base)):
        cost = unit_cost(unit, 1)
        shared += cost.params if cost is not None else 0
    image = count_spec(space.base.replace_choices({s.name: "none" for s in space.base.slots()}))
    path = _largest_path(space)
    return image.params * 4 + 4 * 4 * shared + evaluation_bytes(path, clips=batch_size, training=True) \
        - 4 * 4 * count_spec(path).temporal_params


def ladder(name: str, real: dict[str, Any]) -> list[ProxyScale]:
    """Scales to try, largest first by FLOPs of the space's base architecture."""
    base = get_space(name, **{k: v for k, v in real.items() if v is not None}).base
    bb = base.backbone
    options: list[ProxyScale] = []
    frames = [f for f in (bb.pixel_frames, bb.pixel_frames // 2, bb.pixel_frames // 4) if f >= 4] or [bb.pixel_frames]
    frames = [bb.resized(frames=f).pixel_frames if _valid(bb, frames=f) else None for f in frames]
    frames = [f for f in frames if f is not None] or [bb.pixel_frames]
    sizes = [(bb.pixel_height, bb.pixel_width)]
    factor = 2
    while min(bb.latent_height, bb.latent_width) // factor >= 8:
        size = _rounded_size(bb, bb.latent_height / factor, bb.latent_width / factor)
        if size is not None and size not in sizes:
            sizes.append(size)
        factor *= 2
    for mult in (1.0, 0.5, 0.25, 0.125):
        for f in dict.fromkeys(frames):
            for h, w in sizes:
                options.append(ProxyScale(frames=f, height=h, width=w, width_mult=mult))
    valid = []
    for scale in options:
        try:
            space = scale.space(name, real)
        except SpecError:  # a size the backbone cannot take (levels, heads): skip it
            continue
        valid.append((count_spec(space.base).flops, scale))
    seen: set = set()
    ordered = []
    for flops, scale in sorted(valid, key=lambda v: -v[0]):
        key = (scale.frames, scale.height, scale.width, scale.width_mult)
        if key not in seen:
            seen.add(key)
            ordered.append((flops, scale))
    return [s for _, s in ordered]


def _valid(bb, **sizes: Any) -> bool:
    try:
        bb.resized(**sizes)
        return True
    except SpecError:
        return False


def _rounded_size(bb, latent_height: float, latent_width: float) -> tuple[int, int] | None:
    """Pixel (height, width) near the given latent size that the backbone accepts (rounded down to the
    coarsest multiple its levels or patches allow)."""
    for multiple in (8, 4, 2, 1):
        h = max(multiple, int(latent_height) // multiple * multiple) * bb.vae_scale_factor
        w = max(multiple, int(latent_width) // multiple * multiple) * bb.vae_scale_factor
        if _valid(bb, height=h, width=w):
            return h, w
    return None


@dataclasses.dataclass(frozen=True)
class ScaleChoice:
    """The chosen scale and why."""

    scale: ProxyScale
    predicted_bytes: int
    estimated_seconds: float  # supernet and backbone training, from a measured step scaled by FLOPs
    memory_budget_bytes: float
    seconds_budget: float
    measured_step_seconds: float
    measured_at: dict[str, Any]
    candidates_tried: int

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "scale": self.scale.to_dict(),
                "estimate": "training time = measured step time of the largest path at the smallest scale x "
                            "(mean FLOPs of sampled paths at this scale over that path's FLOPs)"}


def _measure_step(space: SearchSpace, batch_size: int) -> float:
    """Seconds of one training step of the space's largest path at ``space``'s scale (median of 3)."""
    return training_step_seconds(_largest_path(space), batch_size=batch_size)


def training_step_seconds(spec: ArchSpec, *, batch_size: int, data: str = "shapes", backbone=None,
                          steps: int = 3) -> float:
    """Median seconds of a training step of ``spec`` (after one warm-up step): every weight trained, or,
    with a pretrained ``backbone``, the spec's own slot layers on the frozen backbone."""
    import statistics

    import torch

    from vidnas.proxies._data import iterate_batches
    from vidnas.proxies._denoise import DenoisingTask, candidate_network

    task = DenoisingTask(spec, data=data)
    net, own, shared = candidate_network(spec, backbone, seed=0)
    net.train()
    for p in shared:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(own, lr=1e-4) if own else None
    batches = iterate_batches(task.latent_dataset(max(batch_size, 8), 0), batch_size, seed=0)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = task.loss(net, next(batches), gen)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def choose_scale(name: str, real: dict[str, Any], *, memory_budget_bytes: float, seconds_budget: float,
                 steps: int, batch_size: int) -> ScaleChoice:
    """The largest proxy scale of space ``name`` whose supernet training fits both budgets."""
    scales = ladder(name, real)
    smallest = scales[-1]
    small_space = smallest.space(name, real)
    measured = _measure_step(small_space, batch_size)
    small_flops = count_spec(_largest_path(small_space)).flops
    for tried, scale in enumerate(scales, 1):
        space = scale.space(name, real)
        need = supernet_bytes(space, batch_size=batch_size)
        if need > memory_budget_bytes:
            continue
        seconds = steps * measured * _mean_path_flops(space) / small_flops
        if seconds > seconds_budget:
            if scale is not smallest:
                continue
            fit = int(seconds_budget / (seconds / steps))
            raise SpecError("proxy.seconds_budget", seconds_budget,
                            f"fits no proxy scale of space {name}: even the smallest ({scale.frames} frames, "
                            f"{scale.height}x{scale.width} px, width x{scale.width_mult}) needs about "
                            f"{seconds / 60:.0f} min for {steps} training steps (backbone and supernet; "
                            f"{seconds / steps:.2f} s per step, from a measured step)",
                            f"raise the budget, or train fewer steps: about {fit} fit "
                            "(proxy.pretrain_steps + proxy.supernet.steps)")
        return ScaleChoice(scale, need, seconds, memory_budget_bytes, seconds_budget, measured,
                           smallest.to_dict(), tried)
    need = supernet_bytes(small_space, batch_size=batch_size)
    raise SpecError("proxy.memory_budget_bytes", memory_budget_bytes,
                    f"holds no proxy scale of space {name}: the smallest needs {need / 2**30:.2f} GiB",
                    "raise the budget or lower proxy.supernet.batch_size")


def scale_summary(choice: ScaleChoice) -> str:
    s = choice.scale
    return (f"proxy scale: {s.frames} frames, {s.height}x{s.width} px, width x{s.width_mult}; predicted "
            f"{choice.predicted_bytes / 2**30:.2f} GiB (budget {choice.memory_budget_bytes / 2**30:.1f}), estimated "
            f"{choice.estimated_seconds / 60:.1f} min of supernet training (budget "
            f"{choice.seconds_budget / 60:.0f} min)")

