"""The latent video UNet as PyTorch modules, built from its plan (see ``families/unet/plan``)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from vidnas.search_space._family import module_key
from vidnas.search_space._layers import Attention, FeedForward, GroupNorm, TimestepMLP, sinusoidal_embedding
from vidnas.search_space._plan import PlanWalk, UnitPlan, slot_shape
from vidnas.search_space._slot import TemporalSlot
from vidnas.search_space._spec import ArchSpec
from vidnas.search_space.families.unet.plan import unet_plan
from vidnas.search_space.families.unet.spec import BackboneSpec

__all__ = ["Conditioning", "VideoUNet", "build_unet_unit", "call_unet_unit", "unet_unit_inputs"]


@dataclasses.dataclass
class Conditioning:
    """What every unit may read besides its main input."""

    num_frames: int
    temb: torch.Tensor | None = None  # (B*T, temb_channels)
    context: torch.Tensor | None = None  # (B*T, L, context_dim)


# Units ------------------------------------------------------------------------------------


class TimeEmbedUnit(nn.Module):
    """Diffusion-time embedding plus SVD's extra conditioning scalars (fps, motion, noise aug)."""

    def __init__(self, channels: int, temb_channels: int, addition_time_embed_dim: int,
                 num_added_time_ids: int) -> None:
        super().__init__()
        self.channels = channels
        self.add_dim = addition_time_embed_dim
        self.time_embedding = TimestepMLP(channels, temb_channels)
        self.add_embedding = (
            TimestepMLP(addition_time_embed_dim * num_added_time_ids, temb_channels) if num_added_time_ids else None
        )

    def forward(self, timestep: torch.Tensor, added_time_ids: torch.Tensor | None = None) -> torch.Tensor:
        dtype = self.time_embedding.linear_1.weight.dtype
        emb = self.time_embedding(sinusoidal_embedding(timestep, self.channels).to(dtype))
        if self.add_embedding is not None:
            if added_time_ids is None:
                raise ValueError("this backbone needs `added_time_ids` of shape (B, num_added_time_ids)")
            ids = sinusoidal_embedding(added_time_ids.flatten(), self.add_dim).reshape(timestep.shape[0], -1)
            emb = emb + self.add_embedding(ids.to(dtype))
        return emb


class ConvInUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(h)


class ResBlockUnit(nn.Module):
    """2-D residual block with time-embedding injection (SVD's ``ResnetBlock2D``).

    On the up path ``aux`` is the skip tensor, concatenated to the input first.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, norm_groups: int,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = GroupNorm(norm_groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = GroupNorm(norm_groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        if aux is not None:
            h = torch.cat([h, aux], dim=1)
        x = self.conv1(F.silu(self.norm1(h)))
        if cond.temb is not None:
            x = x + self.time_emb_proj(F.silu(cond.temb))[:, :, None, None]
        x = self.conv2(F.silu(self.norm2(x)))
        return x + (self.conv_shortcut(h) if self.conv_shortcut is not None else h)


class SpatialBlock(nn.Module):
    """Per-frame transformer block: self-attention, cross-attention, GEGLU feed-forward."""

    def __init__(self, channels: int, heads: int, context_dim: int | None) -> None:
        super().__init__()
        head_dim = channels // heads
        self.norm1 = nn.LayerNorm(channels)
        self.attn1 = Attention(channels, heads, head_dim)
        self.norm2 = nn.LayerNorm(channels) if context_dim else None
        self.attn2 = Attention(channels, heads, head_dim, context_dim) if context_dim else None
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, 4 * channels)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        tokens = tokens + self.attn1(self.norm1(tokens))
        if self.attn2 is not None:
            tokens = tokens + self.attn2(self.norm2(tokens), context)
        return tokens + self.ff(self.norm3(tokens))


def _frames_to_hw_tokens(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _hw_tokens_to_frames(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    n, _, c = tokens.shape
    return tokens.reshape(n, height, width, c).permute(0, 3, 1, 2)


class AttnInUnit(nn.Module):
    """First half of a spatial transformer: norm, input projection, spatial block.

    Returns the transformer's hidden state in frame layout so the ``attn`` slot's
    temporal op can act on it; the wiring saves the input as the residual.
    """

    def __init__(self, channels: int, heads: int, context_dim: int | None, context_tokens: int | None,
                 norm_groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.block = SpatialBlock(channels, heads, context_dim)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        _, _, height, width = h.shape
        tokens = self.proj_in(_frames_to_hw_tokens(self.norm(h)))
        tokens = self.block(tokens, cond.context)
        return _hw_tokens_to_frames(tokens, height, width)


class AttnOutUnit(nn.Module):
    """Second half of a spatial transformer: output projection and the residual (``aux``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        _, _, height, width = h.shape
        return _hw_tokens_to_frames(self.proj_out(_frames_to_hw_tokens(h)), height, width) + aux


class TemporalUnit(nn.Module):
    """A temporal slot as a unit."""

    def __init__(self, slot: TemporalSlot) -> None:
        super().__init__()
        self.slot = slot

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.slot(h, cond.num_frames, cond.temb, cond.context)


class DownsampleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(h)


class UpsampleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class ConvOutUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm(norm_groups, in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, h: torch.Tensor, cond: Conditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.silu(self.norm(h)))


def build_unet_unit(plan: UnitPlan) -> nn.Module:
    """The module of one UNet unit, freshly initialised."""
    c = plan.config
    if plan.kind == "temporal":
        return TemporalUnit(TemporalSlot(c["op"], c["params"], slot_shape(plan)))
    builders = {
        "time_embed": TimeEmbedUnit,
        "conv_in": ConvInUnit,
        "resblock": ResBlockUnit,
        "attn_in": AttnInUnit,
        "attn_out": AttnOutUnit,
        "downsample": DownsampleUnit,
        "upsample": UpsampleUnit,
        "conv_out": ConvOutUnit,
    }
    return builders[plan.kind](**c)


def channels_last_input(plan: UnitPlan) -> bool:
    """Whether the main input arrives as a channels-last view: inside a spatial transformer
    (the ``attn`` slot and the transformer's second half)."""
    return plan.kind == "attn_out" or (plan.kind == "temporal" and plan.config.get("channels_last", False))


def needs_temb(plan: UnitPlan) -> bool:
    """Whether the unit reads the time embedding."""
    if plan.kind == "temporal":
        from vidnas.search_space._registry import get_temporal_op

        return get_temporal_op(plan.config["op"]).uses_temb(plan.config["params"])
    return plan.kind == "resblock"


def needs_context(plan: UnitPlan) -> bool:
    """Whether the unit reads the conditioning tokens."""
    if plan.kind == "temporal":
        from vidnas.search_space._registry import get_temporal_op

        return get_temporal_op(plan.config["op"]).uses_context
    return plan.kind == "attn_in" and bool(plan.config.get("context_dim"))


def call_unet_unit(module: nn.Module, plan: UnitPlan, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run a UNet unit on plain tensors: ``(timestep[, added_time_ids])`` for the time embedding,
    else ``(h[, temb][, context][, aux])``."""
    if plan.kind == "time_embed":
        return module(*tensors)
    it = iter(tensors)
    h = next(it)
    temb = next(it) if needs_temb(plan) else None
    context = next(it) if needs_context(plan) else None
    aux = next(it) if plan.pop is not None else None
    return module(h, Conditioning(plan.frames, temb, context), aux)


def unet_unit_inputs(plan: UnitPlan, backbone: BackboneSpec, batch: int = 1, *, seed: int = 0,
                     dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs for :func:`call_unet_unit` of ``plan`` on ``batch`` clips of ``backbone``."""
    dtype = dtype or torch.float32
    gen = torch.Generator().manual_seed(seed)
    cfg = plan.config
    if plan.kind == "time_embed":
        timestep = torch.rand(batch, generator=gen) * 1000
        n_ids = cfg["num_added_time_ids"]
        ids = (torch.rand(batch, n_ids, generator=gen) * 10,) if n_ids else ()
        return (timestep, *ids)
    n = batch * plan.frames
    h = torch.randn(n, *plan.in_shape, generator=gen, dtype=dtype)
    if channels_last_input(plan):
        h = h.contiguous(memory_format=torch.channels_last)  # as the spatial transformer hands it over
    out = [h]
    if needs_temb(plan):
        width = cfg.get("temb_channels") or backbone.temb_channels
        out.append(torch.randn(n, width, generator=gen, dtype=dtype))
    if needs_context(plan):
        tokens, width = ((cfg["context_tokens"], cfg["context_dim"]) if cfg.get("context_dim")
                         else (backbone.context_tokens, backbone.cross_attention_dim))
        out.append(torch.randn(n, tokens, width, generator=gen, dtype=dtype))
    if plan.pop is not None:
        out.append(torch.randn(n, *plan.aux_shape, generator=gen, dtype=dtype))
    return tuple(out)


class VideoUNet(nn.Module):
    """The network an :class:`ArchSpec` describes.

    ``forward(sample, timestep, context=None, added_time_ids=None)`` takes
    ``sample`` ``(B, T, in_channels, H, W)``, ``timestep`` ``(B,)`` or a scalar,
    ``context`` ``(B, L, cross_attention_dim)`` and, for backbones with extra
    conditioning scalars (SVD), ``added_time_ids`` ``(B, num_added_time_ids)``; it returns
    ``(B, T, out_channels, H, W)``.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.plan = unet_plan(spec)
        self.units = nn.ModuleDict({module_key(p.name): build_unet_unit(p) for p in self.plan})

    @property
    def backbone(self) -> BackboneSpec:
        return self.spec.backbone

    def unit(self, name: str) -> nn.Module:
        return self.units[module_key(name)]

    def conditioning(
        self,
        batch: int,
        num_frames: int,
        timestep: torch.Tensor,
        context: torch.Tensor | None,
        added_time_ids: torch.Tensor | None,
    ) -> Conditioning:
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch)
        emb = self.units["time_embed"](timestep, added_time_ids)
        if self.backbone.cross_attention_dim and context is None:
            raise ValueError(
                f"this backbone cross-attends to conditioning: pass `context` of shape "
                f"(B, {self.backbone.context_tokens}, {self.backbone.cross_attention_dim})"
            )
        ctx = context.repeat_interleave(num_frames, dim=0) if context is not None else None
        return Conditioning(num_frames, emb.repeat_interleave(num_frames, dim=0), ctx)

    def run_units(self, h: torch.Tensor, cond: Conditioning, *, streams: dict | None = None,
                  commit: bool = False) -> torch.Tensor:
        """Run every unit after the time embedding on ``h`` ``(B*T, C, H, W)``."""

        def apply(plan: UnitPlan, h: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
            module = self.units[module_key(plan.name)]
            if streams is not None and plan.kind == "temporal":
                return module.slot.stream(h, cond.num_frames, streams.setdefault(plan.name, {}), commit=commit,
                                          temb=cond.temb, context=cond.context)
            return module(h, cond, aux)

        return PlanWalk().run([p for p in self.plan if not p.conditioning], h, apply)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        context: torch.Tensor | None = None,
        added_time_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, frames = sample.shape[:2]
        cond = self.conditioning(batch, frames, timestep, context, added_time_ids)
        out = self.run_units(sample.flatten(0, 1), cond)
        return out.reshape(batch, frames, *out.shape[1:])

    def stream(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        state: dict,
        *,
        commit: bool,
        context: torch.Tensor | None = None,
        added_time_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoise the next chunk ``(B, t, C, H, W)`` of a causal stream, reusing cached past frames.

        ``state`` is owned by the caller (start with ``{}``); ``commit=True`` appends this
        chunk to the caches. Every temporal op must be causal (:attr:`ArchSpec.is_causal`).
        """
        if not self.spec.is_causal:
            raise ValueError("streaming needs every temporal op to be causal; this spec has non-causal ops")
        batch, frames = sample.shape[:2]
        cond = self.conditioning(batch, frames, timestep, context, added_time_ids)
        out = self.run_units(sample.flatten(0, 1), cond, streams=state, commit=commit)
        return out.reshape(batch, frames, *out.shape[1:])

    def example_inputs(self, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor | None, ...]:
        """Random inputs of the right shapes: ``(sample, timestep, context, added_time_ids)``."""
        bb = self.backbone
        gen = torch.Generator().manual_seed(seed)
        sample = torch.randn(batch, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
        timestep = torch.full((batch,), 500.0)
        context = None
        if bb.cross_attention_dim:
            context = torch.randn(batch, bb.context_tokens, bb.cross_attention_dim, generator=gen)
        ids = torch.rand(batch, bb.num_added_time_ids, generator=gen) * 10 if bb.num_added_time_ids else None
        return sample, timestep, context, ids
