"""The ``demo-conv`` family's modules (torch), built from its plan (see ``vidnas_demo_plugin.family``).

Every stream unit is called ``unit(h, cond, aux)`` with ``h`` ``(B*T, C, H, W)``, ``cond`` a
:class:`Conditioning` and ``aux`` the tensor popped from the unit's stack (the head's skip).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from vidnas.search_space import PlanWalk, TemporalSlot, UnitPlan, get_temporal_op, module_key, slot_shape
from vidnas_demo_plugin.family import demo_plan


@dataclasses.dataclass
class Conditioning:
    """What stream units read besides their input: frames per clip and the per-frame time embedding."""

    num_frames: int
    temb: torch.Tensor | None = None  # (B*T, temb_dim)


def sinusoid(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features ``(N, dim)`` of ``N`` timesteps."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=timestep.device) * (-math.log(1e4) / half))
    angles = timestep.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class TimeEmbed(nn.Module):
    """Timestep -> ``(B, temb_dim)``: sinusoid, linear, SiLU, linear."""

    def __init__(self, temb_dim: int) -> None:
        super().__init__()
        self.temb_dim = temb_dim
        self.linear_1 = nn.Linear(temb_dim, temb_dim)
        self.linear_2 = nn.Linear(temb_dim, temb_dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        features = sinusoid(timestep, self.temb_dim).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(features)))


class Conv(nn.Module):
    """A plain convolution unit (the stem: 3x3; a level's projection: 1x1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(h)


class Block(nn.Module):
    """Residual per-frame block: norm, SiLU, 3x3 conv, + time embedding, norm, SiLU, 1x1 conv."""

    def __init__(self, channels: int, temb_dim: int, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, channels)
        self.norm2 = nn.GroupNorm(norm_groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv1(F.silu(self.norm1(h)))
        if cond.temb is not None:
            x = x + self.temb_proj(F.silu(cond.temb))[:, :, None, None]
        x = self.conv2(F.silu(self.norm2(x)))
        return h + x


class Head(nn.Module):
    """The output: the stem's output (``aux``) concatenated, norm, SiLU, 3x3 conv to the latent channels."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.silu(self.norm(torch.cat([h, aux], dim=1))))


class Mix(nn.Module):
    """A temporal slot as a unit (the op chosen there, any op of the ``frames`` layout)."""

    def __init__(self, slot: TemporalSlot) -> None:
        super().__init__()
        self.slot = slot

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.slot(h, cond.num_frames, cond.temb, None)


def build_demo_unit(plan: UnitPlan) -> nn.Module:
    """The module of one unit, freshly initialised."""
    c = plan.config
    if plan.kind == "temporal":
        return Mix(TemporalSlot(c["op"], c["params"], slot_shape(plan)))
    if plan.kind == "time_embed":
        return TimeEmbed(c["temb_dim"])
    if plan.kind in ("stem", "proj"):
        return Conv(c["in_channels"], c["out_channels"], 3 if plan.kind == "stem" else 1)
    return {"block": Block, "head": Head}[plan.kind](**c)


def needs_temb(plan: UnitPlan) -> bool:
    """Whether a stream unit reads the time embedding."""
    if plan.kind == "temporal":
        return get_temporal_op(plan.config["op"]).uses_temb(plan.config["params"])
    return plan.kind == "block"


def demo_unit_inputs(plan: UnitPlan, backbone, batch: int = 1, *, seed: int = 0,
                     dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs of one unit: ``(timestep,)`` for the time embedding, else ``(h[, temb][, aux])``."""
    dtype = dtype or torch.float32
    gen = torch.Generator().manual_seed(seed)
    if plan.kind == "time_embed":
        return (torch.rand(batch, generator=gen) * 1000,)
    n = batch * plan.frames
    out = [torch.randn(n, *plan.in_shape, generator=gen, dtype=dtype)]
    if needs_temb(plan):
        out.append(torch.randn(n, backbone.temb_dim, generator=gen, dtype=dtype))
    if plan.pop is not None:
        out.append(torch.randn(n, *plan.aux_shape, generator=gen, dtype=dtype))
    return tuple(out)


def call_demo_unit(module: nn.Module, plan: UnitPlan, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run one unit on the tensors of :func:`demo_unit_inputs`."""
    if plan.kind == "time_embed":
        return module(*tensors)
    it = iter(tensors)
    h = next(it)
    temb = next(it) if needs_temb(plan) else None
    aux = next(it) if plan.pop is not None else None
    return module(h, Conditioning(plan.frames, temb), aux)


class DemoConvNet(nn.Module):
    """The network a ``demo-conv`` spec describes.

    ``forward(sample, timestep, context=None, added_time_ids=None)`` takes ``sample``
    ``(B, T, latent_dim, H, W)`` and ``timestep`` ``(B,)`` or a scalar, and returns
    ``(B, T, latent_dim, H, W)``; the backbone has no context and no added time ids, so
    those arguments are ignored.
    """

    def __init__(self, spec) -> None:
        super().__init__()
        self.spec = spec
        self.plan = demo_plan(spec)
        self.units = nn.ModuleDict({module_key(p.name): build_demo_unit(p) for p in self.plan})

    @property
    def backbone(self):
        return self.spec.backbone

    def unit(self, name: str) -> nn.Module:
        return self.units[module_key(name)]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, context: torch.Tensor | None = None,
                added_time_ids: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames = sample.shape[:2]
        timestep = torch.as_tensor(timestep, dtype=torch.float32, device=sample.device).reshape(-1).expand(batch)
        temb = self.units["time_embed"](timestep).repeat_interleave(frames, dim=0)
        cond = Conditioning(frames, temb)

        def apply(plan: UnitPlan, h: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
            return self.units[module_key(plan.name)](h, cond, aux)

        out = PlanWalk().run([p for p in self.plan if not p.conditioning], sample.flatten(0, 1), apply)
        return out.reshape(batch, frames, *out.shape[1:])

    def example_inputs(self, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor | None, ...]:
        """Random inputs of the right shapes: ``(sample, timestep, None, None)``."""
        bb = self.backbone
        gen = torch.Generator().manual_seed(seed)
        sample = torch.randn(batch, bb.frames, bb.latent_dim, bb.latent_height, bb.latent_width, generator=gen)
        return sample, torch.full((batch,), 500.0), None, None
