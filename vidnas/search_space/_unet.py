"""The latent video UNet, built as a flat plan of *units*.

A unit is the smallest piece whose cost is measured on its own: the time embedding,
``conv_in``, a residual block, the two halves of a spatial transformer, a temporal
slot, a down/upsampler, ``conv_out``. :func:`build_plan` lists the units of an
:class:`ArchSpec` in execution order with their shapes and a *signature* (everything
their latency depends on); :class:`VideoUNet` runs the same plan, so the network a
latency table predicts and the network that is built cannot drift apart.

Wiring between units is explicit in each :class:`UnitPlan`: a unit may push its
output on the skip stack (down path), pop a skip to concatenate (up path), or push
and pop the residual of a spatial transformer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidnas.search_space._cost import (
    Cost,
    attention_params,
    conv_flops,
    conv_params,
    feedforward_flops,
    feedforward_params,
    feedforward_peak,
    linear_flops,
    linear_params,
    mlp_params,
    sdpa_flops,
)
from vidnas.search_space._layers import Attention, FeedForward, GroupNorm, TimestepMLP, sinusoidal_embedding
from vidnas.search_space._registry import get_temporal_op
from vidnas.search_space._slot import TemporalSlot, slot_cost
from vidnas.search_space._spec import ArchSpec, BackboneSpec

__all__ = ["Conditioning", "UnitPlan", "VideoUNet", "build_plan", "build_unit", "signature_id", "unit_cost"]


@dataclasses.dataclass
class Conditioning:
    """What every unit may read besides its main input."""

    num_frames: int
    temb: torch.Tensor | None = None  # (B*T, temb_channels)
    context: torch.Tensor | None = None  # (B*T, L, context_dim)


def signature_id(signature: Mapping[str, Any]) -> str:
    """Stable short hash of a signature dict."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class UnitPlan:
    """One unit of the network and its wiring.

    Shapes are per frame ``(C, H, W)``; the batch is ``B*T``.
    """

    name: str  # e.g. "down.0.1.resblock" or, for a temporal slot, the slot name "down.0.1.res"
    kind: str  # time_embed | conv_in | resblock | attn_in | attn_out | temporal | downsample | upsample | conv_out
    config: Mapping[str, Any]  # constructor arguments; with the shapes, all that determines cost
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    frames: int
    pop: str | None = None  # "skip" or "residual": the stack this unit reads its second input from
    aux_shape: tuple[int, int, int] | None = None  # shape of that popped tensor
    push: str | None = None  # "skip" (push output) or "residual" (push input before running)
    slot: str | None = None  # temporal slot name, for temporal units
    level: int | None = None

    @property
    def signature(self) -> dict[str, Any]:
        """Everything this unit's latency depends on (besides batch, dtype and device)."""
        if self.kind == "temporal":
            op = get_temporal_op(self.config["op"])
            params = self.config["params"]
            shape = _slot_shape(self)
            return {"kind": "temporal", **op.cost_signature(params, shape)}
        sig = {"kind": self.kind, **self.config, "in_shape": list(self.in_shape), "frames": self.frames}
        if self.aux_shape is not None:
            sig["aux_shape"] = list(self.aux_shape)
        return sig

    @property
    def signature_id(self) -> str:
        return signature_id(self.signature)

    @property
    def is_identity(self) -> bool:
        return self.kind == "temporal" and self.config["op"] == "none"


def _slot_shape(plan: UnitPlan):
    from vidnas.search_space._registry import SlotShape

    c = plan.config
    return SlotShape(
        channels=plan.in_shape[0], frames=plan.frames, height=plan.in_shape[1], width=plan.in_shape[2],
        temb_channels=c["temb_channels"], context_dim=c["context_dim"], context_tokens=c["context_tokens"],
        norm_groups=c["norm_groups"], head_dim=c["head_dim"],
    )


def build_plan(spec: ArchSpec) -> list[UnitPlan]:
    """The units of ``spec`` in execution order."""
    bb = spec.backbone
    temb = bb.temb_channels
    ctx = bb.cross_attention_dim or None
    T = bb.frames
    units: list[UnitPlan] = []
    skips: list[tuple[int, int, int]] = []

    def add(name: str, kind: str, config: dict, shape: tuple, out: tuple, **wiring: Any) -> None:
        units.append(UnitPlan(name, kind, config, shape, out, T, **wiring))

    def resblock(name: str, level: int, shape: tuple, cout: int, pop_skip: bool) -> tuple:
        aux = skips.pop() if pop_skip else None
        cin = shape[0] + (aux[0] if aux else 0)
        out = (cout, shape[1], shape[2])
        cfg = {"in_channels": cin, "out_channels": cout, "temb_channels": temb, "norm_groups": bb.norm_groups}
        add(name, "resblock", cfg, shape, out, pop="skip" if aux else None, aux_shape=aux, level=level)
        return out

    def temporal(slot: str, level: int, shape: tuple) -> None:
        choice = spec.temporal[slot]
        cfg = {"op": choice.op, "params": dict(choice.params), "temb_channels": temb, "context_dim": ctx,
               "context_tokens": bb.context_tokens if ctx else None, "norm_groups": bb.norm_groups,
               "head_dim": bb.head_dim}
        add(slot, "temporal", cfg, shape, shape, slot=slot, level=level)

    def transformer(prefix: str, level: int, shape: tuple) -> None:
        c = shape[0]
        cfg = {"channels": c, "heads": c // bb.head_dim, "context_dim": ctx, "context_tokens": bb.context_tokens
               if ctx else None, "norm_groups": bb.norm_groups}
        add(f"{prefix}.attn_in", "attn_in", cfg, shape, shape, push="residual", level=level)
        temporal(f"{prefix}.attn", level, shape)
        add(f"{prefix}.attn_out", "attn_out", {"channels": c}, shape, shape, pop="residual", aux_shape=shape,
            level=level)

    n_ids = bb.num_added_time_ids
    add("time_embed", "time_embed", {"channels": bb.channels[0], "temb_channels": temb,
                                     "addition_time_embed_dim": bb.addition_time_embed_dim,
                                     "num_added_time_ids": n_ids}, (0, 1, 1), (temb, 1, 1))
    h, w = bb.latent_height, bb.latent_width
    shape = (bb.channels[0], h, w)
    add("conv_in", "conv_in", {"in_channels": bb.in_channels, "out_channels": bb.channels[0]},
        (bb.in_channels, h, w), shape, push="skip", level=0)
    skips.append(shape)

    # 1. Down path
    for level, cout in enumerate(bb.channels):
        for block in range(bb.layers_per_block[level]):
            prefix = f"down.{level}.{block}"
            shape = resblock(f"{prefix}.resblock", level, shape, cout, False)
            temporal(f"{prefix}.res", level, shape)
            if bb.attention[level]:
                transformer(prefix, level, shape)
            units[-1] = dataclasses.replace(units[-1], push="skip")
            skips.append(shape)
        if level < bb.num_levels - 1:
            out = (cout, shape[1] // 2, shape[2] // 2)
            add(f"down.{level}.downsample", "downsample", {"channels": cout}, shape, out, push="skip", level=level)
            shape = out
            skips.append(shape)

    # 2. Mid block
    last = bb.num_levels - 1
    c = bb.channels[last]
    shape = resblock(f"mid.{last}.0.resblock", last, shape, c, False)
    temporal(f"mid.{last}.0.res", last, shape)
    if bb.mid_attention:
        transformer(f"mid.{last}.0", last, shape)
    shape = resblock(f"mid.{last}.1.resblock", last, shape, c, False)
    temporal(f"mid.{last}.1.res", last, shape)

    # 3. Up path
    for level in reversed(range(bb.num_levels)):
        cout = bb.channels[level]
        for block in range(bb.layers_per_block[level] + 1):
            prefix = f"up.{level}.{block}"
            shape = resblock(f"{prefix}.resblock", level, shape, cout, True)
            temporal(f"{prefix}.res", level, shape)
            if bb.attention[level]:
                transformer(prefix, level, shape)
        if level > 0:
            out = (cout, shape[1] * 2, shape[2] * 2)
            add(f"up.{level}.upsample", "upsample", {"channels": cout}, shape, out, level=level)
            shape = out

    # 4. Output
    add("conv_out", "conv_out", {"in_channels": shape[0], "out_channels": bb.out_channels,
                                 "norm_groups": bb.norm_groups}, shape, (bb.out_channels, shape[1], shape[2]), level=0)
    return units


# Units ------------------------------------------------------------------------------------


class TimeEmbedUnit(nn.Module):
    """Diffusion-time embedding plus SVD's extra conditioning scalars (fps, motion, noise aug)."""

    def __init__(self, channels: int, temb_channels: int, addition_time_embed_dim: int, num_added_time_ids: int) -> None:
        super().__init__()
        self.channels = channels
        self.add_dim = addition_time_embed_dim
        self.time_embedding = TimestepMLP(channels, temb_channels)
        self.add_embedding = (
            TimestepMLP(addition_time_embed_dim * num_added_time_ids, temb_channels) if num_added_time_ids else None
        )

    def forward(self, timestep: torch.Tensor, added_time_ids: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embedding(sinusoidal_embedding(timestep, self.channels))
        if self.add_embedding is not None:
            if added_time_ids is None:
                raise ValueError("this backbone needs `added_time_ids` of shape (B, num_added_time_ids)")
            ids = sinusoidal_embedding(added_time_ids.flatten(), self.add_dim).reshape(timestep.shape[0], -1)
            emb = emb + self.add_embedding(ids)
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

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNorm(norm_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = GroupNorm(norm_groups, out_channels)
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


def build_unit(plan: UnitPlan) -> nn.Module:
    """The module of one unit, freshly initialised."""
    c = plan.config
    if plan.kind == "temporal":
        return TemporalUnit(TemporalSlot(c["op"], c["params"], _slot_shape(plan)))
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


def unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one unit on ``batch`` clips (see ``_cost`` for conventions).

    ``None`` for a temporal op that declares no cost formula.
    """
    c = plan.config
    n = batch * plan.frames
    cin, h, w = plan.in_shape
    cout, ho, wo = plan.out_shape
    f_in, f_out = n * cin * h * w, n * cout * ho * wo
    if plan.kind == "temporal":
        return slot_cost(c["op"], c["params"], _slot_shape(plan), batch)
    if plan.kind == "time_embed":
        width, temb, add_dim, n_ids = c["channels"], c["temb_channels"], c["addition_time_embed_dim"], \
            c["num_added_time_ids"]
        params = mlp_params(width, temb, temb)
        flops = linear_flops(batch, width, temb) + linear_flops(batch, temb, temb)
        if n_ids:
            params += mlp_params(add_dim * n_ids, temb, temb)
            flops += linear_flops(batch, add_dim * n_ids, temb) + linear_flops(batch, temb, temb)
        return Cost(params, flops, batch * (width + add_dim * n_ids + 4 * temb))
    if plan.kind in ("conv_in", "downsample"):
        cin_conv = c.get("in_channels", cin)
        return Cost(conv_params(cin_conv, cout, 9), conv_flops(f_out, cin_conv, 9), f_out)
    if plan.kind == "upsample":
        up = 4 * f_in
        return Cost(conv_params(cin, cout, 9), conv_flops(f_out, cin, 9), 2 * up)
    if plan.kind == "conv_out":
        return Cost(conv_params(cin, cout, 9) + 2 * cin, conv_flops(f_out, cin, 9), max(2 * f_in, f_in + f_out))
    if plan.kind == "resblock":
        cat = plan.aux_shape is not None
        fc = n * c["in_channels"] * h * w  # input after concatenating the skip
        temb = c["temb_channels"]
        params = 2 * c["in_channels"] + conv_params(c["in_channels"], cout, 9) + linear_params(temb, cout)
        params += 2 * cout + conv_params(cout, cout, 9)
        flops = conv_flops(f_out, c["in_channels"], 9) + linear_flops(n, temb, cout) + conv_flops(f_out, cout, 9)
        if c["in_channels"] != cout:
            params += conv_params(c["in_channels"], cout, 1)
            flops += conv_flops(f_out, c["in_channels"], 1)
        peak = (fc if cat else 0) + max(2 * fc, fc + f_out, 3 * f_out)
        return Cost(params, flops, peak)
    if plan.kind == "attn_in":
        ch, heads, ctx_dim, ctx_len = c["channels"], c["heads"], c["context_dim"], c["context_tokens"]
        tokens = n * h * w
        f = tokens * ch
        params = 2 * ch + linear_params(ch, ch) + 2 * ch + attention_params(ch, ch) + 2 * ch
        params += feedforward_params(ch, 4 * ch)
        flops = linear_flops(tokens, ch, ch) + 4 * linear_flops(tokens, ch, ch)
        flops += sdpa_flops(n * heads, h * w, h * w, ch // heads) + feedforward_flops(tokens, ch, 4 * ch)
        # The projected input stays alive (the caller's reference) through the block.
        peak = [2 * f, 7 * f]  # norm + projection; self-attention (input, a, q, k, v, o, y)
        if ctx_dim:
            params += 2 * ch + attention_params(ch, ch, ctx_dim)
            flops += 2 * linear_flops(tokens, ch, ch) + 2 * linear_flops(n * ctx_len, ctx_dim, ch)
            flops += sdpa_flops(n * heads, h * w, ctx_len, ch // heads)
            peak.append(6 * f + 2 * n * ctx_len * ch)
        peak.append(3 * f + feedforward_peak(tokens, ch, 4 * ch))
        return Cost(params, flops, max(peak))
    if plan.kind == "attn_out":
        return Cost(linear_params(cin, cin), linear_flops(n * h * w, cin, cin), 2 * f_in)
    raise ValueError(f"unknown unit kind {plan.kind!r}")


def _module_key(name: str) -> str:
    return name.replace(".", "_")


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
        self.plan = build_plan(spec)
        self.units = nn.ModuleDict({_module_key(p.name): build_unit(p) for p in self.plan})

    @property
    def backbone(self) -> BackboneSpec:
        return self.spec.backbone

    def unit(self, name: str) -> nn.Module:
        return self.units[_module_key(name)]

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
        skips: list[torch.Tensor] = []
        residuals: list[torch.Tensor] = []
        for plan in self.plan[1:]:
            module = self.units[_module_key(plan.name)]
            aux = skips.pop() if plan.pop == "skip" else residuals.pop() if plan.pop == "residual" else None
            if plan.push == "residual":
                residuals.append(h)
            if streams is not None and plan.kind == "temporal":
                h = module.slot.stream(h, cond.num_frames, streams.setdefault(plan.name, {}), commit=commit,
                                       temb=cond.temb, context=cond.context)
            else:
                h = module(h, cond, aux)
            if plan.push == "skip":
                skips.append(h)
        return h

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
