"""The video diffusion transformer as PyTorch modules, built from its plan (see ``families/dit/plan``).

The network runs every unit after the conditioning through :class:`PlanWalk` as
``self.units[module_key(plan.name)](h, cond, aux)``, with ``cond`` a
:class:`~vidnas.search_space.ops.token_branches.TokenConditioning` (the token contract of
``ops/tokens``), exactly as the UNet does with its own conditioning, so any unit's module
can be swapped for another with the same call. A ``temporal`` slot's frames op sees the
tokens as channels-last frames ``(B*T, D, H, W)`` (a view) with per-frame copies of the
time embedding and context, as the registry's frame contract asks.

With joint text (``text_mode`` joint) the patchify puts the projected text tokens ahead of the
video tokens (``cond.prefix`` counts them), every slot carries them, a frames op sees the video
tokens alone, and the head drops them.

:func:`map_reference_state` maps a reference implementation's weights (diffusers'
``WanTransformer3DModel``, ``LTXVideoTransformer3DModel``, ``LatteTransformer3DModel`` or
``CogVideoXTransformer3DModel``, told apart by their keys) onto a network's parameter names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidnas._errors import SpecError
from vidnas.search_space._family import module_key
from vidnas.search_space._layers import TimestepMLP, sinusoidal_embedding
from vidnas.search_space._plan import PlanWalk, UnitPlan, slot_shape
from vidnas.search_space._registry import get_temporal_op
from vidnas.search_space._slot import TemporalSlot
from vidnas.search_space._spec import ArchSpec
from vidnas.search_space.families.dit.plan import dit_plan, is_frames_slot
from vidnas.search_space.families.dit.spec import ROTARY_POSITIONS, DiTBackbone
from vidnas.search_space.ops.token_branches import (
    TokenConditioning,
    TokenSlot,
    grid_rotary,
    ltx_rotary,
    make_norm,
    rotary_tables,
    sincos_1d,
    sincos_2d,
    sincos_positions,
)

__all__ = ["VideoDiT", "build_dit_unit", "call_dit_unit", "dit_unit_inputs", "map_reference_state"]


# Units ------------------------------------------------------------------------------------


class TimeEmbedUnit(nn.Module):
    """Timestep -> ``(B, 1 + rows, dim)``: the time embedding ``temb`` (row 0) and the shared time
    projection's AdaLN rows (Wan's ``condition_embedder`` time path); with ``rows`` 0 (expert
    modulation, CogVideoX's ``time_embedding``) the time embedding alone."""

    def __init__(self, dim: int, freq_dim: int, rows: int) -> None:
        super().__init__()
        self.dim, self.freq_dim, self.rows = dim, freq_dim, rows
        self.time_embedder = TimestepMLP(freq_dim, dim)
        if rows:
            self.time_proj = nn.Linear(dim, rows * dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        dtype = self.time_embedder.linear_1.weight.dtype
        temb = self.time_embedder(sinusoidal_embedding(timestep, self.freq_dim).to(dtype))
        if not self.rows:
            return temb[:, None]
        rows = self.time_proj(F.silu(temb)).unflatten(1, (self.rows, self.dim))
        return torch.cat([temb[:, None], rows], dim=1)


class TextEmbedUnit(nn.Module):
    """Text tokens to the hidden width: Linear, tanh-GELU, Linear (PixArt's caption projection, as Wan),
    or one Linear (``projection="linear"``, CogVideoX's ``text_proj``)."""

    def __init__(self, text_dim: int, dim: int, projection: str = "mlp") -> None:
        super().__init__()
        self.linear_1 = nn.Linear(text_dim, dim)
        if projection == "mlp":
            self.act = nn.GELU(approximate="tanh")
            self.linear_2 = nn.Linear(dim, dim)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "linear_2"):
            return self.linear_1(context)
        return self.linear_2(self.act(self.linear_1(context)))


class PatchEmbedUnit(nn.Module):
    """Latent frames ``(B*T, C, H, W)`` -> tokens ``(B, T'*H'*W', D)`` by a strided convolution
    (2-D when the patch spans one frame); with ``sincos2d`` positions, plus a 2-D sin-cos table
    (a buffer for the plan's token rows and columns ``grid``, computed anew for another); with
    ``sincos3d``, plus ``cond.positions``; and after the projected text tokens ``cond.context``
    (``prefix`` > 0: joint text) -> ``(B, prefix + T'*H'*W', D)``."""

    def __init__(self, in_channels: int, dim: int, patch_size: list[int], positions: str = "none",
                 pos_base: int = 0, pos_interpolation: float = 1, grid: tuple[int, int] | None = None,
                 prefix: int = 0) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.reads_positions, self.prefix = positions == "sincos3d", prefix  # sincos3d: the conditioning's table
        pt, ph, pw = self.patch_size
        if pt == 1:
            self.proj = nn.Conv2d(in_channels, dim, (ph, pw), stride=(ph, pw))
        else:
            self.proj = nn.Conv3d(in_channels, dim, self.patch_size, stride=self.patch_size)
        self.pos_base, self.pos_interpolation = pos_base, pos_interpolation
        table = None
        if positions == "sincos2d":
            rows, cols = grid or (1, 1)
            table = sincos_2d(rows, cols, dim, pos_base, pos_interpolation)
        self.register_buffer("table", table, persistent=False)

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self._tokens(h, cond)
        if self.reads_positions:
            if cond.positions is None:
                raise ValueError("this patchify adds positions: pass `positions` in the conditioning")
            tokens = tokens + cond.positions
        if self.prefix:
            if cond.context is None:
                raise ValueError("joint text leads the tokens: pass the projected text as `context`")
            tokens = torch.cat([cond.context, tokens], dim=1)
        return tokens

    def _tokens(self, h: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        t = cond.grid[0] * self.patch_size[0]
        b = h.shape[0] // t
        if self.patch_size[0] == 1:
            y = self.proj(h)  # (B*T, D, H', W')
            tokens = y.reshape(b, t, y.shape[1], -1).transpose(2, 3).reshape(b, -1, y.shape[1])
        else:
            video = h.reshape(b, t, *h.shape[1:]).transpose(1, 2)  # (B, C, T, H, W)
            y = self.proj(video)
            tokens = y.flatten(2).transpose(1, 2).contiguous()
        if self.table is None:
            return tokens
        del y
        _, rows, cols = cond.grid
        table = self.table
        if table.shape[0] != rows * cols:
            table = sincos_2d(rows, cols, tokens.shape[-1], self.pos_base, self.pos_interpolation, table.device)
        frames = tokens.shape[1] // (rows * cols)
        return (tokens.reshape(b, frames, rows * cols, -1) + table.to(tokens.dtype)).reshape(tokens.shape)


class FramePosUnit(nn.Module):
    """A 1-D sin-cos table over frames added to the tokens (Latte's temporal positions): a buffer for
    the plan's ``frames``, computed anew for other frames (a chunk of a stream)."""

    def __init__(self, dim: int, frames: int = 1) -> None:
        super().__init__()
        self.register_buffer("table", sincos_1d(torch.arange(frames), dim).float(), persistent=False)

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        t, rows, cols = cond.grid
        table = self.table
        if cond.frame_offset or table.shape[0] != t:
            positions = torch.arange(cond.frame_offset, cond.frame_offset + t, device=table.device)
            table = sincos_1d(positions, table.shape[1]).float()
        b, _, d = h.shape
        return (h.reshape(b, t, rows * cols, d) + table.to(h.dtype)[:, None]).reshape(h.shape)


class HeadUnit(nn.Module):
    """Modulated output norm, projection to patches and unpatchify: tokens -> ``(B*T, C_out, H, W)``.

    The projection's outputs are ordered (time, channel, row, column) inside a patch, so that the
    unpatchify needs only 4-D permutes (runtimes such as Core ML take at most 5-D tensors).
    """

    def __init__(self, dim: int, out_channels: int, patch_size: list[int], eps: float, norm: str) -> None:
        super().__init__()
        self.patch_size, self.out_channels = tuple(patch_size), out_channels
        self.norm = make_norm(norm, dim, eps)
        self.table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.proj = nn.Linear(dim, out_channels * math.prod(patch_size))

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        shift, scale = (self.table + cond.temb[:, None]).chunk(2, dim=1)
        # (B, T'*H'*W', pt * C * ph * pw), handed on unnamed so that the unpatchify's copies replace it
        return unpatchify(self.proj(self.norm(h) * (1 + scale) + shift), cond.grid, self.patch_size,
                          self.out_channels)


def unpatchify(y: torch.Tensor, grid: tuple[int, int, int], patch_size: tuple[int, ...], c: int) -> torch.Tensor:
    """``(B, T'*H'*W', pt * C * ph * pw)`` patches -> latent frames ``(B*T, C, H, W)``."""
    (tt, th, tw), (pt, ph, pw) = grid, patch_size
    b = y.shape[0]
    # (B*T'*H', W', pt*C*ph, pw) -> (B*T'*H', pt*C*ph, W', pw): columns interleave with pixels
    y = y.reshape(b * tt * th, tw, pt * c * ph, pw).transpose(1, 2)
    # (B*T', H', pt*C, ph*W) -> (B*T', pt*C, H', ph*W): rows interleave, time and channels lead
    y = y.reshape(b * tt, th, pt * c, ph * tw * pw).transpose(1, 2)
    return y.reshape(b * tt * pt, c, th * ph, tw * pw)


class AdaNormHeadUnit(nn.Module):
    """CogVideoX's output: the video tokens (any joint text prefix dropped) through a final norm, then an
    AdaLayerNorm (``shift, scale = Linear(SiLU(temb))``, an affine norm), the projection to patches and
    the unpatchify -> ``(B*T, C_out, H, W)``."""

    def __init__(self, dim: int, out_channels: int, patch_size: list[int], eps: float, norm: str, modulation: str,
                 temb_dim: int, prefix: int = 0) -> None:
        super().__init__()
        self.patch_size, self.out_channels, self.prefix = tuple(patch_size), out_channels, prefix
        self.norm_final = make_norm(norm, dim, eps)
        self.linear = nn.Linear(temb_dim, 2 * dim)
        self.norm = make_norm(norm, dim, eps)
        self.proj = nn.Linear(dim, out_channels * math.prod(patch_size))

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        video = h[:, cond.prefix :] if cond.prefix else h
        shift, scale = self.linear(F.silu(cond.temb))[:, None].chunk(2, dim=2)
        return unpatchify(self.proj(self.norm(self.norm_final(video)) * (1 + scale) + shift), cond.grid,
                          self.patch_size, self.out_channels)


class TokenSlotUnit(nn.Module):
    """A ``tokens`` slot as a unit."""

    def __init__(self, slot: TokenSlot) -> None:
        super().__init__()
        self.slot = slot

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self.slot(h, cond)

    def stream(self, h: torch.Tensor, cond: TokenConditioning, state: dict, *, commit: bool) -> torch.Tensor:
        return self.slot.stream(h, cond, state, commit=commit)


class FramesSlotUnit(nn.Module):
    """A ``frames`` slot in a transformer: the tokens seen as channels-last frames (a view), the
    time embedding (and context, when the op reads it) copied per frame, then back to tokens."""

    def __init__(self, slot: TemporalSlot, *, temb: bool, context: bool) -> None:
        super().__init__()
        self.slot = slot
        self.temb, self.context = temb, context

    def _frames_args(self, h: torch.Tensor, cond: TokenConditioning):
        t, height, width = cond.grid
        b, _, d = h.shape
        video = h[:, cond.prefix :] if cond.prefix else h  # joint text passes a frames op unchanged
        x = video.reshape(b * t, height, width, d).permute(0, 3, 1, 2)
        temb = cond.temb.repeat_interleave(t, dim=0) if self.temb else None
        context = cond.context.repeat_interleave(t, dim=0) if self.context else None
        return x, t, temb, context

    @staticmethod
    def _tokens(y: torch.Tensor, h: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        tokens = y.permute(0, 2, 3, 1).reshape(h.shape[0], -1, y.shape[1])
        return torch.cat([h[:, : cond.prefix], tokens], dim=1) if cond.prefix else tokens

    def forward(self, h: torch.Tensor, cond: TokenConditioning, aux: torch.Tensor | None = None) -> torch.Tensor:
        return self._tokens(self.slot(*self._frames_args(h, cond)), h, cond)

    def stream(self, h: torch.Tensor, cond: TokenConditioning, state: dict, *, commit: bool) -> torch.Tensor:
        x, t, temb, context = self._frames_args(h, cond)
        return self._tokens(self.slot.stream(x, t, state, commit=commit, temb=temb, context=context), h, cond)


def _slot_flags(plan: UnitPlan) -> tuple[bool, bool, bool]:
    """Whether a slot unit reads the (per-frame) time embedding or AdaLN rows, the context, the rotary tables."""
    if plan.is_identity:
        return False, False, False
    opdef = get_temporal_op(plan.config["op"])
    rotary = not is_frames_slot(plan) and dict(slot_shape(plan).extras).get("positions") in ROTARY_POSITIONS
    return opdef.uses_temb(plan.config["params"]), opdef.uses_context, rotary


def _reads_temb(plan: UnitPlan) -> bool:
    """A token slot modulated by the time embedding itself (``expert``) rather than the shared AdaLN rows."""
    return is_frames_slot(plan) or dict(slot_shape(plan).extras).get("modulation") == "expert"


def build_dit_unit(plan: UnitPlan) -> nn.Module:
    """The module of one DiT unit, freshly initialised."""
    c = plan.config
    if plan.kind == "temporal":
        shape = slot_shape(plan)
        if is_frames_slot(plan):
            temb, context, _ = _slot_flags(plan)
            return FramesSlotUnit(TemporalSlot(c["op"], c["params"], shape), temb=temb, context=context)
        return TokenSlotUnit(TokenSlot(c["op"], c["params"], shape))
    if plan.kind == "patch_embed" and c.get("positions") == "sincos2d":
        return PatchEmbedUnit(**c, grid=(plan.out_shape[1], plan.out_shape[2]))
    if plan.kind == "frame_pos":
        return FramePosUnit(**c, frames=plan.frames)
    builders = {"time_embed": TimeEmbedUnit, "text_embed": TextEmbedUnit, "patch_embed": PatchEmbedUnit,
                "head": AdaNormHeadUnit if c.get("modulation") == "expert" else HeadUnit}
    return builders[plan.kind](**c)


def call_dit_unit(module: nn.Module, plan: UnitPlan, tensors: tuple[torch.Tensor, ...]) -> Any:
    """Run a DiT unit on plain tensors: ``(timestep,)`` or ``(context,)`` for the conditioning,
    ``(frames[, projected text][, positions])`` for the patch embedding, ``(tokens, temb)`` for the head,
    and for a slot ``(tokens[, temb or AdaLN rows][, context][, cos, sin])``. With joint text the
    tokens are ``(B, prefix + T*H*W, D)``."""
    if plan.conditioning:
        return module(*tensors)
    grid = (plan.frames, plan.in_shape[1], plan.in_shape[2])
    if plan.kind == "patch_embed":
        pt = plan.config["patch_size"][0]
        cond = TokenConditioning((plan.frames // pt, plan.out_shape[1], plan.out_shape[2]), prefix=plan.out_prefix)
        it = iter(tensors[1:])
        cond.context = next(it) if plan.out_prefix else None
        cond.positions = next(it) if plan.config.get("positions") == "sincos3d" else None
        return module(tensors[0], cond)
    if plan.kind == "head":
        return module(tensors[0], TokenConditioning(grid, temb=tensors[1], prefix=plan.in_prefix))
    if plan.kind == "frame_pos":
        return module(tensors[0], TokenConditioning(grid))
    temb, context, rotary = _slot_flags(plan)
    it = iter(tensors)
    h = next(it)
    cond = TokenConditioning(grid, prefix=plan.in_prefix)
    if temb:
        if _reads_temb(plan):
            cond.temb = next(it)
        else:
            cond.modulation = next(it)
    if context:
        cond.context = next(it)
    if rotary:
        cond.rotary = (next(it), next(it))
    return module(h, cond)


def dit_unit_inputs(plan: UnitPlan, backbone: DiTBackbone, batch: int = 1, *, seed: int = 0,
                    dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs for :func:`call_dit_unit` of ``plan`` on ``batch`` clips of ``backbone``."""
    dtype = dtype or torch.float32
    gen = torch.Generator().manual_seed(seed)
    bb = backbone
    d = bb.dim
    if plan.kind == "time_embed":
        return (torch.rand(batch, generator=gen) * 1000,)
    if plan.kind == "text_embed":
        return (torch.randn(batch, bb.text_tokens, bb.text_dim, generator=gen, dtype=dtype),)
    if plan.kind == "patch_embed":
        out = [torch.randn(batch * plan.frames, *plan.in_shape, generator=gen, dtype=dtype)]
        if plan.out_prefix:
            out.append(torch.randn(batch, plan.out_prefix, d, generator=gen, dtype=dtype))
        if plan.config.get("positions", "none") == "sincos3d":
            out.append(sincos_positions(d, bb.grid, bb.pos_scale_spatial, bb.pos_scale_temporal).to(dtype))
        return tuple(out)
    tokens = plan.in_prefix + plan.frames * plan.in_shape[1] * plan.in_shape[2]
    h = torch.randn(batch, tokens, plan.in_shape[0], generator=gen, dtype=dtype)
    if plan.kind == "head":
        return h, torch.randn(batch, bb.temb_dim, generator=gen, dtype=dtype)
    if plan.kind == "frame_pos":
        return (h,)
    temb, context, rotary = _slot_flags(plan)
    out = [h]
    if temb:
        shape = (batch, bb.temb_dim) if _reads_temb(plan) else (batch, bb.modulation_rows, d)
        out.append(torch.randn(*shape, generator=gen, dtype=dtype))
    if context:
        out.append(torch.randn(batch, bb.context_tokens, d, generator=gen, dtype=dtype))
    if rotary:
        grid = (plan.frames, plan.in_shape[1], plan.in_shape[2])
        out += [t.to(dtype) for t in backbone_rotary(bb, grid)]
    return tuple(out)


def backbone_rotary(bb: DiTBackbone, grid: tuple[int, int, int], frame_offset: int = 0, *,
                    tables: tuple[torch.Tensor, torch.Tensor] | None = None, device: torch.device | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rotary cosines and sines ``(T*H*W, rotary_width)`` of a token grid whose first frame is
    ``frame_offset``, in ``bb``'s positional style (``tables``: Wan's per-axis tables, if already made)."""
    if bb.positions == "rope_ltx":
        scales = (bb.vae_temporal_factor / bb.frame_rate, bb.vae_scale_factor, bb.vae_scale_factor)
        return ltx_rotary(grid, bb.dim, bb.rope_theta, scales, bb.patch_size, frame_offset, device)
    if tables is None:
        tables = rotary_tables(bb.head_dim, bb.rope_max_len, bb.rope_theta, bb.rope_split, device)
    return grid_rotary(*tables, bb.rope_split, grid, frame_offset)


# The network ------------------------------------------------------------------------------


class VideoDiT(nn.Module):
    """The video diffusion transformer an :class:`ArchSpec` of the ``dit`` family describes.

    ``forward(sample, timestep, context=None, added_time_ids=None)`` takes ``sample``
    ``(B, T, in_channels, H, W)`` latents, ``timestep`` ``(B,)`` or a scalar and ``context``
    ``(B, L, text_dim)`` text tokens; it returns ``(B, T, out_channels, H, W)``.
    ``added_time_ids`` is accepted for the common signature and must be ``None``.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.plan = dit_plan(spec)
        self.units = nn.ModuleDict({module_key(p.name): build_dit_unit(p) for p in self.plan})
        bb = self.backbone
        if bb.positions == "rope3d":
            cos, sin = rotary_tables(bb.head_dim, bb.rope_max_len, bb.rope_theta, bb.rope_split)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    @property
    def backbone(self) -> DiTBackbone:
        return self.spec.backbone

    def unit(self, name: str) -> nn.Module:
        return self.units[module_key(name)]

    def conditioning(self, batch: int, frames: int, timestep: torch.Tensor | float, context: torch.Tensor | None,
                     added_time_ids: torch.Tensor | None = None, *, frame_offset: int = 0) -> TokenConditioning:
        """Everything the units read besides the tokens, for ``frames`` latent frames from ``frame_offset``."""
        bb = self.backbone
        if added_time_ids is not None:
            raise ValueError("a transformer of the `dit` family takes no `added_time_ids`")
        pt, ph, pw = bb.patch_size
        if frames % pt:
            raise ValueError(f"{frames} latent frames are not a multiple of the temporal patch {pt}")
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch)
        time = self.units["time_embed"](timestep)
        temb, modulation = time[:, 0], (time[:, 1:] if bb.modulation_rows else None)
        text = None
        if "text_embed" in self.units:
            if context is None:
                raise ValueError(f"this backbone is conditioned on text: pass `context` of shape (B, L, {bb.text_dim})")
            text = self.units["text_embed"](context)
        grid = (frames // pt, bb.latent_height // ph, bb.latent_width // pw)
        rotary = positions = None
        if bb.positions == "rope3d":
            rotary = tuple(t.to(temb.dtype) for t in grid_rotary(self.rope_cos, self.rope_sin, bb.rope_split, grid,
                                                                  frame_offset // pt))
        elif bb.rotary:
            rotary = tuple(t.to(temb.dtype) for t in backbone_rotary(bb, grid, frame_offset // pt,
                                                                      device=temb.device))
        elif bb.positions == "sincos3d":
            positions = sincos_positions(bb.dim, grid, bb.pos_scale_spatial, bb.pos_scale_temporal,
                                         frame_offset // pt).to(device=temb.device, dtype=temb.dtype)
        prefix = text.shape[1] if bb.text_mode == "joint" else 0
        return TokenConditioning(grid, temb, modulation, text, rotary, frame_offset // pt, prefix, positions)

    def run_units(self, h: torch.Tensor, cond: TokenConditioning, *, streams: dict | None = None,
                  commit: bool = False) -> torch.Tensor:
        """Run every unit after the conditioning on ``h`` ``(B*T, C, H, W)``."""

        def apply(plan: UnitPlan, h: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
            module = self.units[module_key(plan.name)]
            if streams is not None and plan.slot is not None:
                return module.stream(h, cond, streams.setdefault(plan.name, {}), commit=commit)
            return module(h, cond, aux)

        return PlanWalk().run([p for p in self.plan if not p.conditioning], h, apply)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, context: torch.Tensor | None = None,
                added_time_ids: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames = sample.shape[:2]
        cond = self.conditioning(batch, frames, timestep, context, added_time_ids)
        out = self.run_units(sample.flatten(0, 1), cond)
        return out.reshape(batch, frames, *out.shape[1:])

    def stream(self, sample: torch.Tensor, timestep: torch.Tensor | float, state: dict, *, commit: bool,
               context: torch.Tensor | None = None, added_time_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise the next chunk ``(B, t, C, H, W)`` of latent frames of a causal stream.

        ``state`` is owned by the caller (start with ``{}``): per causal layer its keys and
        values, and the frames committed so far, which offset the chunk's rotary positions.
        ``commit=True`` appends this chunk to the caches (CausVid writes them in an extra pass
        at t = 0 once a chunk is denoised). Every op must be causal (:attr:`ArchSpec.is_causal`).
        """
        if not self.spec.is_causal:
            raise ValueError("streaming needs every op to be causal; this spec has ops that see future frames")
        batch, frames = sample.shape[:2]
        offset = state.get("frames", 0)
        limit = self.backbone.rope_max_len * self.backbone.patch_size[0]
        if self.backbone.positions == "rope3d" and offset + frames > limit:
            raise ValueError(f"the stream would pass frame {limit}, the last the rotary table holds (rope_max_len)")
        cond = self.conditioning(batch, frames, timestep, context, added_time_ids, frame_offset=offset)
        out = self.run_units(sample.flatten(0, 1), cond, streams=state, commit=commit)
        if commit:
            state["frames"] = offset + frames
        return out.reshape(batch, frames, *out.shape[1:])

    def example_inputs(self, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor | None, ...]:
        """Random inputs of the right shapes: ``(sample, timestep, context, None)``."""
        bb = self.backbone
        gen = torch.Generator().manual_seed(seed)
        sample = torch.randn(batch, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
        timestep = torch.full((batch,), 500.0)
        context = torch.randn(batch, bb.text_tokens, bb.text_dim, generator=gen) if bb.text_dim else None
        return sample, timestep, context, None


# Reference weights ------------------------------------------------------------------------


_DIFFUSERS_ATTENTION = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out", "norm_q": "norm_q",
                        "norm_k": "norm_k"}


def _diffusers_wan_key(key: str, depth: int) -> list[tuple[str, Any]]:
    """Targets of one diffusers ``WanTransformer3DModel`` key: ``(our key, transform)`` pairs."""
    parts = key.split(".")
    fixed = {
        "condition_embedder.time_embedder.linear_1": "units.time_embed.time_embedder.linear_1",
        "condition_embedder.time_embedder.linear_2": "units.time_embed.time_embedder.linear_2",
        "condition_embedder.time_proj": "units.time_embed.time_proj",
        "condition_embedder.text_embedder.linear_1": "units.text_embed.linear_1",
        "condition_embedder.text_embedder.linear_2": "units.text_embed.linear_2",
        "patch_embedding": "units.patch_embed.proj",
        "proj_out": "units.head.proj",
    }
    stem, leaf = ".".join(parts[:-1]), parts[-1]
    if stem in fixed:
        return [(f"{fixed[stem]}.{leaf}", stem)]
    if key == "scale_shift_table":
        return [("units.head.table", None)]
    if parts[0] != "blocks" or int(parts[1]) >= depth:
        return []
    block, rest = int(parts[1]), ".".join(parts[2:])
    prefix = f"units.block_{block}"
    if rest == "scale_shift_table":  # rows 0-2 belong to the attention op, 3-5 to the feed-forward
        return [(f"{prefix}_attn.slot.branch.modulation.table", slice(0, 3)),
                (f"{prefix}_ff.slot.branch.modulation.table", slice(3, 6))]
    for attn, slot in (("attn1", "attn"), ("attn2", "cross")):
        for theirs, ours in _DIFFUSERS_ATTENTION.items():
            if rest.startswith(f"{attn}.{theirs}."):
                return [(f"{prefix}_{slot}.slot.branch.attn.{ours}.{rest.split('.')[-1]}", None)]
    simple = {"norm2.weight": "cross.slot.branch.norm.weight", "norm2.bias": "cross.slot.branch.norm.bias",
              "ffn.net.0.proj.weight": "ff.slot.branch.proj_in.weight",
              "ffn.net.0.proj.bias": "ff.slot.branch.proj_in.bias",
              "ffn.net.2.weight": "ff.slot.branch.proj_out.weight", "ffn.net.2.bias": "ff.slot.branch.proj_out.bias"}
    return [(f"{prefix}_{simple[rest]}", None)] if rest in simple else []


def _transform(value: torch.Tensor, how: Any, bb: DiTBackbone) -> torch.Tensor:
    if isinstance(how, slice):
        return value[:, how]
    pt, ph, pw = bb.patch_size
    if how == "patch_embedding" and pt == 1 and value.ndim == 5:
        return value[:, :, 0]  # a one-frame Conv3d kernel is our Conv2d kernel
    if how == "proj_out":  # diffusers orders a patch's outputs (t, h, w, c); ours (t, c, h, w)
        c = bb.out_channels
        return value.reshape(pt, ph, pw, c, *value.shape[1:]).permute(0, 3, 1, 2, *range(4, value.ndim + 3)) \
            .reshape(value.shape)
    return value


def map_reference_state(spec: ArchSpec, state: Mapping[str, torch.Tensor], *, reference: str
                        ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(state dict for build_network(spec), reference keys left unmapped)`` from a reference's weights.

    ``reference="diffusers"``: ``WanTransformer3DModel``, ``LTXVideoTransformer3DModel``,
    ``LatteTransformer3DModel`` or ``CogVideoXTransformer3DModel`` (told apart by their keys; see
    ``families/dit/weights``). A weight lands where ``spec`` has a parameter of the same role and shape (a
    block that exists, an op with that sub-layer: every self-attention op has the reference's
    projections); the rest is reported unmapped (dropped blocks, funnelled widths, blocks beyond ``depth``).
    """
    from vidnas.search_space.families.dit import weights as _dit_weights

    if reference != "diffusers":
        raise SpecError("reference", reference, "has no weight mapping for the `dit` family",
                        "use `diffusers` (WanTransformer3DModel, LTXVideoTransformer3DModel, LatteTransformer3DModel, "
                        "CogVideoXTransformer3DModel)")
    bb = spec.backbone
    layout = _dit_weights.reference_layout(state)
    targets = _diffusers_wan_key if layout == "wan" else _dit_weights.translator(layout)

    def place(value: torch.Tensor, how: Any) -> torch.Tensor:
        if layout == "wan":
            return _transform(value, how, bb)
        return _dit_weights.transform(value, how, bb.patch_size, bb.out_channels)

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VideoDiT(spec).state_dict().items()}
    mapped: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        placed = False
        for target, how in targets(key, bb.depth):
            tensor = place(value, how)
            if shapes.get(target) == tensor.shape:
                mapped[target] = tensor
                placed = True
        if not placed:
            unmapped.append(key)
    return mapped, unmapped
