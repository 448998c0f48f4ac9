"""Modules of the token ops (registered in ``ops/tokens``; contract there) and the styles they read.

Every self-attention op is the same sub-layer, ``delta = gate * Attn(modulate(norm(x)))``,
with its projections, query/key norms and rotary positions here once; ops differ only in
which keys a query sees, their *pattern*, and each pattern reshapes the grid of tokens into
groups that attend densely inside (frames, locations, tiles, chunks), so a kernel computes
exactly what its cost formula counts. The styles of ``_dit_spec.STYLES`` are the small
functions ``make_norm``, ``make_qk_norm``, ``make_activation`` and ``make_modulation``; the
positional style is the network's, handed to the ops in the conditioning: Wan's rotary tables
(``rotary_tables``, one angle per channel pair of a head, shared by the heads), LTX-Video's
(``ltx_rotary``, one angle per channel pair of the full width, across heads), or tables added
to the tokens (``sincos_2d``, ``sincos_1d``: PixArt's and Latte's; ``sincos_positions``:
CogVideoX's), which the ops never see. Joint text (``cond.prefix`` > 0: the text tokens lead the
token sequence) changes only the modulation and the gate (``modulate``, ``apply_gate``: the text
tokens take their own rows); the projections, norms and the full pattern treat every token alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TokenConditioning", "TokenSlot", "apply_rotary", "ltx_rotary", "rotary_tables", "sincos_1d", "sincos_2d",
           "sincos_positions"]

StreamState = dict[str, Any]
Grid = tuple[int, int, int]


@dataclasses.dataclass
class TokenConditioning:
    """What a token op reads besides its tokens (see the contract in ``ops/tokens``)."""

    grid: tuple[int, int, int]  # (T, H, W) tokens of x along time, height, width
    temb: torch.Tensor | None = None  # (B, D) time embedding
    modulation: torch.Tensor | None = None  # (B, rows, D) the time projection's rows (shift, scale, gate, ...)
    context: torch.Tensor | None = None  # (B, L, D) text tokens after the text projection
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin: (T*H*W, head_dim/2 or D/2) at x's positions
    frame_offset: int = 0  # clip frame of x's first token frame (non-zero while streaming)
    prefix: int = 0  # joint text: tokens ahead of the T*H*W grid in x (0: x is the grid alone)
    positions: torch.Tensor | None = None  # (T*H*W, D) positions the patchify adds (sincos3d)


# 1. Styles --------------------------------------------------------------------------------


def make_norm(style: str, dim: int, eps: float) -> nn.Module:
    """The norm before a modulated sub-layer: without affine parameters (the modulation scales), or
    affine (``layer_norm_affine``, CogVideoX)."""
    if style == "rms_norm":
        return nn.RMSNorm(dim, eps=eps, elementwise_affine=False)
    return nn.LayerNorm(dim, eps=eps, elementwise_affine=style == "layer_norm_affine")


def make_qk_norm(style: str, inner: int, eps: float, head_dim: int | None = None) -> nn.Module | None:
    """Query/key norm: RMSNorm over all heads at once (Wan), an affine LayerNorm of each head
    (``layer_norm``, CogVideoX; applied after the split into heads) or none."""
    if style == "layer_norm":
        return nn.LayerNorm(head_dim, eps=eps)
    return nn.RMSNorm(inner, eps=eps) if style == "rms_across_heads" else None


def qk_eps(extras: dict[str, Any]) -> float:
    """The query/key norms' epsilon: the slot's ``qk_eps`` where the model sets its own (LTX-Video), else ``eps``."""
    return extras.get("qk_eps", extras["eps"])


def make_activation(style: str) -> nn.Module:
    return nn.GELU(approximate="tanh") if style == "gelu_tanh" else nn.GELU()


class TableModulation(nn.Module):
    """AdaLN from a shared time projection plus a learnt per-slot table (Wan, PixArt's adaLN-single).

    Reads rows ``[row, row + rows)`` of ``cond.modulation`` (the time projection) and adds
    its own ``(1, rows, D)`` table: returns ``rows`` tensors of shape ``(B, 1, D)``.
    """

    def __init__(self, dim: int, row: int, rows: int = 3) -> None:
        super().__init__()
        self.row, self.rows = row, rows
        self.table = nn.Parameter(torch.randn(1, rows, dim) / dim**0.5)

    def forward(self, cond: TokenConditioning) -> tuple[torch.Tensor, ...]:
        if cond.modulation is None:
            raise ValueError("this op is modulated by the timestep: pass `modulation` in the conditioning")
        return (self.table + cond.modulation[:, self.row : self.row + self.rows]).chunk(self.rows, dim=1)


class ExpertModulation(nn.Module):
    """CogVideoX's expert AdaLN (``CogVideoXLayerNormZero``'s linear layer): ``Linear(SiLU(temb))``
    gives a shift, scale and gate for the video tokens and another three for the text tokens.

    Returns six tensors of shape ``(B, 1, D)``: video shift, scale, gate, then text shift, scale, gate.
    """

    def __init__(self, temb_dim: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(temb_dim, 6 * dim)

    def forward(self, cond: TokenConditioning) -> tuple[torch.Tensor, ...]:
        if cond.temb is None:
            raise ValueError("this op is modulated by the timestep: pass `temb` in the conditioning")
        return self.linear(F.silu(cond.temb))[:, None].chunk(6, dim=2)


def make_modulation(style: str, dim: int, row: int, temb_dim: int | None = None) -> nn.Module:
    """A sub-layer's shift, scale and gate from the timestep (the ``modulation`` style)."""
    if style == "adaln_table":
        return TableModulation(dim, row)
    if style == "expert":
        return ExpertModulation(temb_dim or dim, dim)
    raise ValueError(f"modulation style {style!r} is not implemented")


def modulate(norm: nn.Module, x: torch.Tensor, rows: tuple[torch.Tensor, ...], prefix: int) -> torch.Tensor:
    """``norm(x) * (1 + scale) + shift``; with joint text (``prefix`` > 0 and six rows) the text
    prefix takes the text rows and the grid the video rows (normed apart, then joined)."""
    shift, scale = rows[0], rows[1]
    if not prefix or len(rows) == 3:
        return norm(x) * (1 + scale) + shift
    text = norm(x[:, :prefix]) * (1 + rows[4]) + rows[3]
    video = norm(x[:, prefix:]) * (1 + scale) + shift
    return torch.cat([text, video], dim=1)


def apply_gate(delta: torch.Tensor, rows: tuple[torch.Tensor, ...], prefix: int) -> torch.Tensor:
    """``delta * gate``; with joint text the text prefix takes the text gate."""
    if not prefix or len(rows) == 3:
        return delta * rows[2]
    return torch.cat([delta[:, :prefix] * rows[5], delta[:, prefix:] * rows[2]], dim=1)


def rotary_tables(head_dim: int, max_len: int, theta: float, split: tuple[int, int, int],
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``(max_len, head_dim / 2)`` of Wan's 3-D rotary positions.

    Columns are the frequency pairs of the time, height and width parts (``split``), each
    ``1 / theta ** (2k / part)``; computed in float64 and rounded to float32 as Wan does.
    """
    positions = torch.arange(max_len, device=device, dtype=torch.float64)
    angles = []
    for part in split:
        freqs = 1.0 / (theta ** (torch.arange(0, part, 2, dtype=torch.float64, device=device) / part))
        angles.append(torch.outer(positions, freqs))
    table = torch.cat(angles, dim=1)
    return table.cos().float(), table.sin().float()


def grid_rotary(cos: torch.Tensor, sin: torch.Tensor, split: tuple[int, int, int], grid: tuple[int, int, int],
                frame_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``(T*H*W, head_dim / 2)`` cosines and sines for a grid whose first frame is ``frame_offset``."""
    t, h, w = grid
    st, sh, _ = (p // 2 for p in split)

    def per_token(table: torch.Tensor) -> torch.Tensor:
        tt = table[frame_offset : frame_offset + t, :st].reshape(t, 1, 1, st).expand(t, h, w, st)
        th = table[:h, st : st + sh].reshape(1, h, 1, sh).expand(t, h, w, sh)
        tw = table[:w, st + sh :].reshape(1, 1, w, -1).expand(t, h, w, table.shape[1] - st - sh)
        return torch.cat([tt, th, tw], dim=-1).reshape(t * h * w, table.shape[1])

    return per_token(cos), per_token(sin)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` ``(B, N, heads, d)`` by the angles of ``cos``/``sin``:
    ``(N, d/2)`` shared by the heads, or ``(N, heads, d/2)`` per head."""
    pairs = x.unflatten(-1, (-1, 2))
    x1, x2 = pairs[..., 0], pairs[..., 1]
    c, s = (cos, sin) if cos.ndim == 3 else (cos[:, None, :], sin[:, None, :])
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


# LTX-Video's positions are in seconds and pixels, normalised by a fixed base of 20 frames (at
# the VAE's temporal rate over the frame rate) and 2048 pixels (diffusers hard-codes it).
LTX_ROPE_BASE = (20, 2048, 2048)


def ltx_rotary(grid: tuple[int, int, int], width: int, theta: float, scales: tuple[float, float, float],
               patch: tuple[int, int, int], frame_offset: int = 0, device: torch.device | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``(T*H*W, width / 2)`` of LTX-Video's rotary positions for a token grid.

    ``width`` is the full hidden width D: its channel pairs rotate across heads. A token's
    coordinate on each axis is ``index * scale * patch / base`` (``scales``: the VAE's temporal
    factor over the frame rate, and its spatial factor twice); the angle of frequency ``k``
    on an axis is ``theta ** (k / (n - 1)) * pi / 2 * (2 * coordinate - 1)`` for the
    ``n = width // 6`` frequencies, whose three axes interleave (frequency-major); the
    ``width % 6`` channels left over lead, unrotated. Float32 throughout, in the reference's
    order of operations, so that angles of thousands of radians round as the reference's do.
    """
    t, h, w = grid
    axes = [torch.arange(frame_offset, frame_offset + t, dtype=torch.float32, device=device),
            torch.arange(h, dtype=torch.float32, device=device), torch.arange(w, dtype=torch.float32, device=device)]
    mesh = torch.meshgrid(*axes, indexing="ij")
    coords = torch.stack([m.reshape(-1) * scale * p / base for m, scale, p, base
                          in zip(mesh, scales, patch, LTX_ROPE_BASE)], dim=-1)  # (N, 3)
    freqs = theta ** torch.linspace(0.0, 1.0, width // 6, dtype=torch.float32, device=device)
    freqs = freqs * math.pi / 2.0
    angles = (freqs * (coords.unsqueeze(-1) * 2 - 1)).transpose(-1, -2).flatten(1)  # (N, 3 * (width // 6))
    lead = (width % 6) // 2
    cos, sin = angles.cos(), angles.sin()
    if lead:
        cos = torch.cat([torch.ones(cos.shape[0], lead, dtype=cos.dtype, device=device), cos], dim=1)
        sin = torch.cat([torch.zeros(sin.shape[0], lead, dtype=sin.dtype, device=device), sin], dim=1)
    return cos, sin


def sincos_1d(positions: torch.Tensor, width: int) -> torch.Tensor:
    """``(M, width)`` sin-cos features of ``M`` positions: sines then cosines of ``position / 10000 ** (2k / width)``,
    computed in float64 (PixArt's and Latte's tables)."""
    omega = torch.arange(width // 2, dtype=torch.float64, device=positions.device) / (width / 2.0)
    omega = 1.0 / 10000**omega
    angles = torch.outer(positions.reshape(-1).to(torch.float64), omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(rows: int, cols: int, width: int, base: int, interpolation: float = 1.0,
              device: torch.device | None = None) -> torch.Tensor:
    """``(rows * cols, width)`` float32 table added to the patch tokens (raster order): the first half
    encodes the column, the second the row, at positions ``index / (size / base) / interpolation``."""
    base_rows, base_cols = base or rows, base or cols
    row = torch.arange(rows, dtype=torch.float32, device=device) / (rows / base_rows) / interpolation
    col = torch.arange(cols, dtype=torch.float32, device=device) / (cols / base_cols) / interpolation
    col_features = sincos_1d(col.repeat(rows), width // 2)
    row_features = sincos_1d(row.repeat_interleave(cols), width // 2)
    return torch.cat([col_features, row_features], dim=1).float()


def sincos_positions(dim: int, grid: tuple[int, int, int], scale_spatial: float = 1.0,
                     scale_temporal: float = 1.0, frame_offset: int = 0) -> torch.Tensor:
    """CogVideoX's 3-D sine-cosine positions ``(T*H*W, dim)`` for a token grid whose first frame is
    ``frame_offset``, raster order.

    The first ``dim / 4`` channels encode the frame (positions divided by ``scale_temporal``), the
    other ``3 dim / 4`` the column then the row (each half of them; positions divided by
    ``scale_spatial``); each part is sines then cosines of ``position / 10000 ** (2k / part)``,
    computed in float64 and rounded to float32 (diffusers' ``get_3d_sincos_pos_embed``).
    """
    t, h, w = grid
    spatial = 3 * dim // 4
    rows = torch.arange(h, dtype=torch.float32) / scale_spatial
    cols = torch.arange(w, dtype=torch.float32) / scale_spatial
    by_col = sincos_1d(cols, spatial // 2).reshape(1, w, -1).expand(h, w, spatial // 2)
    by_row = sincos_1d(rows, spatial // 2).reshape(h, 1, -1).expand(h, w, spatial // 2)
    space = torch.cat([by_col, by_row], dim=-1).reshape(1, h * w, spatial).expand(t, h * w, spatial)
    time = sincos_1d(torch.arange(frame_offset, frame_offset + t, dtype=torch.float32) / scale_temporal, dim // 4)
    time = time.reshape(t, 1, dim // 4).expand(t, h * w, dim // 4)
    return torch.cat([time, space], dim=-1).reshape(t * h * w, dim).float()


# 2. Attention patterns ---------------------------------------------------------------------
# Each takes q, k, v as (B, N, heads, d) in raster order (t, h, w) and returns (B, N, heads * d).


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Dense attention on (G, S, heads, d) groups: returns (G, S, heads * d)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    g, heads, s, d = out.shape
    return out.transpose(1, 2).reshape(g, s, heads * d)


def full_pattern(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> torch.Tensor:
    return _sdpa(q, k, v)


def spatial_pattern(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> torch.Tensor:
    b, n, heads, d = q.shape
    t = grid[0]
    out = _sdpa(*(x.reshape(b * t, n // t, heads, d) for x in (q, k, v)))
    return out.reshape(b, n, heads * d)


def _to_time_sequences(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, T*H*W, heads, d) -> (B*H*W, T, heads, d): the frames of one location as a sequence."""
    b, n, heads, d = x.shape
    t = grid[0]
    return x.reshape(b, t, n // t, heads * d).transpose(1, 2).reshape(b * (n // t), t, heads, d)


def temporal_pattern(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> torch.Tensor:
    b, n, heads, d = q.shape
    t = grid[0]
    out = _sdpa(*(_to_time_sequences(x, grid) for x in (q, k, v)))  # (B*HW, T, inner)
    return out.reshape(b, n // t, t, heads * d).transpose(1, 2).reshape(b, n, heads * d)


def tile_order(grid: tuple[int, int, int], tile: tuple[int, int, int]) -> torch.Tensor:
    """Token indices in tile order: tile by tile (t, h, w), raster inside a tile."""
    t, h, w = grid
    at, ah, aw = tile
    idx = torch.arange(t * h * w).reshape(t // at, at, h // ah, ah, w // aw, aw)
    return idx.permute(0, 2, 4, 1, 3, 5).reshape(-1)


def tile_neighbours(grid: tuple[int, int, int], tile: tuple[int, int, int], reach: int) -> torch.Tensor:
    """For each tile, the tiles of its window: ``2 * reach + 1`` tiles per axis (fewer when the grid
    has fewer), centred on it and shifted inside the grid at the borders (Sliding Tile Attention)."""
    counts = [g // a for g, a in zip(grid, tile)]
    spans = [min(2 * reach + 1, c) for c in counts]

    def starts(count: int, span: int) -> list[int]:
        return [min(max(i - reach, 0), count - span) for i in range(count)]

    ct, ch, cw = counts
    rows = []
    for s_t in starts(ct, spans[0]):
        for s_h in starts(ch, spans[1]):
            for s_w in starts(cw, spans[2]):
                rows.append([(a * ch + b) * cw + c for a in range(s_t, s_t + spans[0])
                             for b in range(s_h, s_h + spans[1]) for c in range(s_w, s_w + spans[2])])
    return torch.tensor(rows).reshape(-1)


class TilePattern(nn.Module):
    """Attention inside 3-D tiles of ``tile`` tokens; with ``reach`` > 0 each tile's queries see the
    tiles of a window around it (Sliding Tile Attention). Index tables are buffers for the slot's grid."""

    def __init__(self, grid: tuple[int, int, int], tile: tuple[int, int, int], reach: int) -> None:
        super().__init__()
        self.grid, self.tile, self.reach = grid, tile, reach
        order = tile_order(grid, tile)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse", torch.argsort(order), persistent=False)
        neighbours = tile_neighbours(grid, tile, reach) if reach else torch.zeros(0, dtype=torch.long)
        self.register_buffer("neighbours", neighbours, persistent=False)

    def tables(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
        """The index tables for ``grid``: the buffers for the slot's own grid, made anew for another
        (a chunk of a stream)."""
        if tuple(grid) == tuple(self.grid):
            return self.order, self.inverse, self.neighbours
        order = tile_order(tuple(grid), self.tile)
        neighbours = tile_neighbours(tuple(grid), self.tile, self.reach) if self.reach else self.neighbours.cpu()
        return order.to(device), torch.argsort(order).to(device), neighbours.to(device)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> torch.Tensor:
        order, inverse, neighbours = self.tables(grid, q.device)
        b, n, heads, d = q.shape
        size = math.prod(self.tile)
        tiles = n // size
        q, k, v = (x.index_select(1, order).reshape(b * tiles, size, heads, d) for x in (q, k, v))
        if self.reach:
            per = neighbours.shape[0] // tiles
            k = k.reshape(b, tiles, size * heads * d).index_select(1, neighbours)
            k = k.reshape(b * tiles, per * size, heads, d)
            v = v.reshape(b, tiles, size * heads * d).index_select(1, neighbours)
            v = v.reshape(b * tiles, per * size, heads, d)
        out = _sdpa(q, k, v).reshape(b, n, heads * d)
        del q, k, v  # the tile-ordered copies; the caller still holds the originals
        return out.index_select(1, inverse)


def causal_chunks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: int, chunk: int, window: int,
                  first_frame: int, key_start_frame: int) -> torch.Tensor:
    """Chunked causal attention: the queries of chunk ``j`` see the keys of chunks ``j - window .. j``
    (``window`` < 0: every earlier chunk). ``q`` holds frames ``[first_frame, ...)``; ``k``/``v`` hold
    frames ``[key_start_frame, ...)``. One dense call per chunk, so no mask is ever built."""
    b, n, heads, d = q.shape
    end = first_frame + n // hw
    qh, kh, vh = (x.transpose(1, 2) for x in (q, k, v))
    key_frames = k.shape[1] // hw
    outputs = []
    frame = first_frame
    while frame < end:
        index = frame // chunk
        chunk_end = min((index + 1) * chunk, end)
        lo = 0 if window < 0 else max(0, (index - window) * chunk - key_start_frame)
        hi = chunk_end - key_start_frame
        queries = qh[:, :, (frame - first_frame) * hw : (chunk_end - first_frame) * hw]
        if lo == 0 and hi == key_frames:  # a slice of the whole tensor is an alias Core ML cannot convert
            keys, values = kh, vh
        else:
            keys, values = kh[:, :, lo * hw : hi * hw], vh[:, :, lo * hw : hi * hw]
        out = F.scaled_dot_product_attention(queries, keys, values)
        outputs.append(out.transpose(1, 2).reshape(b, out.shape[2], heads * d))
        frame = chunk_end
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def head_split_pattern(spatial_heads: int) -> Callable[..., torch.Tensor]:
    """Sparse VideoGen's head split, static: the first heads attend inside their frame, the rest
    across frames at their location."""

    def pattern(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Grid) -> torch.Tensor:
        s = spatial_heads
        spatial = spatial_pattern(q[:, :, :s], k[:, :, :s], v[:, :, :s], grid)
        temporal = temporal_pattern(q[:, :, s:], k[:, :, s:], v[:, :, s:], grid)
        return torch.cat([spatial, temporal], dim=-1)

    return pattern


# 3. Sub-layers ----------------------------------------------------------------------------


class TokenAttention(nn.Module):
    """Projections (biased, as Wan), query/key norms and rotary positions of one attention sub-layer."""

    def __init__(self, dim: int, heads: int, head_dim: int, *, qk_norm: str, eps: float,
                 zero_init: bool, rotary_across_heads: bool = False) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.rotary_across_heads = rotary_across_heads  # tables of the full width (LTX-Video), not per head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim)
        self.norm_q = make_qk_norm(qk_norm, inner, eps, head_dim)
        self.norm_k = make_qk_norm(qk_norm, inner, eps, head_dim)
        self.per_head = qk_norm == "layer_norm"  # the norm sees one head's channels: split first
        if zero_init:  # inserted into a trained network, the sub-layer starts as the identity
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def project(self, x: torch.Tensor, source: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of ``x``, keys and values of ``source`` (default ``x``), each (B, len, heads, d).

        One at a time, each finished before the next is projected (memory counted in ``ops/tokens``).
        """
        source = x if source is None else source
        q = self._split(self.to_q(x), self.norm_q, rotary)
        k = self._split(self.to_k(source), self.norm_k, rotary)
        return q, k, self.to_v(source).unflatten(-1, (self.heads, self.head_dim))

    def _split(self, t: torch.Tensor, norm: nn.Module | None, rotary: tuple[torch.Tensor, torch.Tensor] | None
               ) -> torch.Tensor:
        if norm is not None and not self.per_head:
            t = norm(t)
        t = t.unflatten(-1, (self.heads, self.head_dim))
        if norm is not None and self.per_head:
            t = norm(t)
        if rotary is None:
            return t
        cos, sin = rotary
        if self.rotary_across_heads:  # (N, D/2) -> (N, heads, d/2); an op with fewer heads takes the first ones
            cos, sin = (x.unflatten(-1, (-1, self.head_dim // 2)) for x in (cos, sin))
            if cos.shape[1] != self.heads:
                cos, sin = cos[:, : self.heads], sin[:, : self.heads]
        return apply_rotary(t, cos, sin)


class SelfAttentionBranch(nn.Module):
    """``delta = gate * to_out(pattern(q, k, v))`` on ``modulate(norm(x))``; see ``ops/tokens``."""

    def __init__(self, dim: int, heads: int, head_dim: int, extras: dict[str, Any], pattern: Any, *,
                 zero_init: bool = True, temb_dim: int | None = None) -> None:
        super().__init__()
        self.norm = make_norm(extras["norm"], dim, extras["eps"])
        self.modulation = make_modulation(extras["modulation"], dim, extras["modulation_row"], temb_dim)
        self.attn = TokenAttention(dim, heads, head_dim, qk_norm=extras["qk_norm"], eps=qk_eps(extras),
                                   zero_init=zero_init, rotary_across_heads=extras["positions"] == "rope_ltx")
        self.rotary = extras["positions"] in ("rope3d", "rope_ltx")
        self.pattern = pattern

    def modulated(self, x: torch.Tensor, cond: TokenConditioning) -> tuple[torch.Tensor, Any]:
        """``modulate(norm(x))`` and what gates the sub-layer's output (see :func:`apply_gate`)."""
        rows = self.modulation(cond)
        if len(rows) == 3 and not cond.prefix:
            shift, scale, gate = rows
            return self.norm(x) * (1 + scale) + shift, gate
        return modulate(self.norm, x, rows, cond.prefix), rows

    @staticmethod
    def gated(delta: torch.Tensor, gate: Any, cond: TokenConditioning) -> torch.Tensor:
        return delta * gate if isinstance(gate, torch.Tensor) else apply_gate(delta, gate, cond.prefix)

    def qkv(self, x: torch.Tensor, cond: TokenConditioning, attn: TokenAttention | None = None):
        """Gate and projections of ``modulate(norm(x))``; the modulated input is freed on return."""
        if self.rotary and cond.rotary is None:
            raise ValueError("this op uses rotary positions: pass `rotary` in the conditioning")
        a, gate = self.modulated(x, cond)
        return gate, *(attn or self.attn).project(a, rotary=cond.rotary if self.rotary else None)

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        gate, q, k, v = self.qkv(x, cond)
        out = self.pattern(q, k, v, cond.grid)
        del q, k, v
        delta = self.attn.to_out(out)
        del out
        return self.gated(delta, gate, cond)

    def stream(self, x: torch.Tensor, cond: TokenConditioning, state: StreamState, *, commit: bool) -> torch.Tensor:
        """Ops that never mix frames stream a chunk as a clip of its own."""
        return self.forward(x, cond)


class CausalSelfAttentionBranch(SelfAttentionBranch):
    """Block-causal attention over chunks of ``chunk`` frames (CausVid), optionally limited to the
    previous ``window`` chunks (Self Forcing's rolling cache), with a KV cache for streaming."""

    def __init__(self, dim: int, heads: int, head_dim: int, extras: dict[str, Any], *, chunk: int,
                 window: int = -1, zero_init: bool = True) -> None:
        super().__init__(dim, heads, head_dim, extras, None, zero_init=zero_init)
        self.chunk, self.window = chunk, window

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        gate, q, k, v = self.qkv(x, cond)
        _, h, w = cond.grid
        out = causal_chunks(q, k, v, h * w, self.chunk, self.window, cond.frame_offset, cond.frame_offset)
        del q, k, v
        delta = self.attn.to_out(out)
        del out
        return delta * gate

    def stream(self, x: torch.Tensor, cond: TokenConditioning, state: StreamState, *, commit: bool) -> torch.Tensor:
        """The next frames ``[frame_offset, ...)`` with the cached keys and values of earlier ones.

        ``state`` holds ``key``/``value`` (B, frames * H * W, heads, d) of frames ``[start, seen)``;
        ``commit=True`` appends this chunk's and drops frames no later chunk may see.
        """
        gate, q, k, v = self.qkv(x, cond)
        t, h, w = cond.grid
        hw = h * w
        seen = state.get("seen", 0)
        if cond.frame_offset != seen:
            raise ValueError(f"the stream expects frame {seen} next, got frame {cond.frame_offset}")
        start = state.get("start", 0)
        if "key" in state:
            k, v = torch.cat([state["key"], k], dim=1), torch.cat([state["value"], v], dim=1)
        out = causal_chunks(q, k, v, hw, self.chunk, self.window, seen, start)
        if commit:
            end = seen + t
            keep = 0 if self.window < 0 else max(0, (end // self.chunk - self.window) * self.chunk)
            keep = max(keep, start)
            state["key"], state["value"] = k[:, (keep - start) * hw :], v[:, (keep - start) * hw :]
            state["start"], state["seen"] = keep, end
        del q, k, v
        delta = self.attn.to_out(out)
        del out
        return delta * gate


class FactorisedBranch(SelfAttentionBranch):
    """Spatial then temporal self-attention, each a modulated, gated residual sub-layer with its own
    projections, sharing the slot's AdaLN rows (Open-Sora's STDiT, Latte's factorised variant)."""

    def __init__(self, dim: int, heads: int, head_dim: int, extras: dict[str, Any], *, zero_init: bool = True) -> None:
        super().__init__(dim, heads, head_dim, extras, spatial_pattern, zero_init=zero_init)
        self.attn_temporal = TokenAttention(dim, heads, head_dim, qk_norm=extras["qk_norm"], eps=qk_eps(extras),
                                            zero_init=zero_init, rotary_across_heads=self.attn.rotary_across_heads)

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        first = super().forward(x, cond)
        gate, q, k, v = self.qkv(x + first, cond, self.attn_temporal)
        out = temporal_pattern(q, k, v, cond.grid)
        del q, k, v
        delta = self.attn_temporal.to_out(out)
        del out
        return first + delta * gate


class CrossAttentionBranch(nn.Module):
    """Cross-attention to the text tokens: ``delta = to_out(attn(norm(x), context))`` (no gate, as Wan).

    With the slot fact ``per_frame`` every frame attends its own copy of the text, whose keys and
    values are projected once per frame (Latte's spatial blocks see each frame as an image): the
    same function as projecting once per clip, at the reference's cost.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, extras: dict[str, Any], *, zero_init: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=extras["eps"]) if extras["cross_attn_norm"] else None
        self.attn = TokenAttention(dim, heads, head_dim, qk_norm=extras["qk_norm"], eps=qk_eps(extras),
                                   zero_init=zero_init)
        self.per_frame = bool(extras.get("per_frame", False))

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        if cond.context is None:
            raise ValueError("cross-attention needs the text tokens: pass `context` in the conditioning")
        queries, context = x if self.norm is None else self.norm(x), cond.context
        if self.per_frame:
            frames = cond.grid[0]
            queries = queries.reshape(x.shape[0] * frames, -1, x.shape[-1])
            context = context.repeat_interleave(frames, dim=0)
        q, k, v = self.attn.project(queries, context)
        del queries, context
        out = _sdpa(q, k, v)
        del q, k, v
        delta = self.attn.to_out(out)
        return delta.reshape(x.shape) if self.per_frame else delta

    def stream(self, x: torch.Tensor, cond: TokenConditioning, state: StreamState, *, commit: bool) -> torch.Tensor:
        return self.forward(x, cond)


class FeedForwardBranch(nn.Module):
    """``delta = gate * proj_out(act(proj_in(modulate(norm(x)))))`` (Wan's FFN with its AdaLN rows)."""

    def __init__(self, dim: int, hidden: int, extras: dict[str, Any], *, zero_init: bool = True,
                 temb_dim: int | None = None) -> None:
        super().__init__()
        self.norm = make_norm(extras["norm"], dim, extras["eps"])
        self.modulation = make_modulation(extras["modulation"], dim, extras["modulation_row"], temb_dim)
        self.proj_in = nn.Linear(dim, hidden)
        self.act = make_activation(extras["ff_activation"])
        self.proj_out = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        rows = self.modulation(cond)
        if len(rows) == 3 and not cond.prefix:
            shift, scale, gate = rows
            hidden = self.proj_in(self.norm(x) * (1 + scale) + shift)
        else:  # joint text: the text prefix takes its own rows (the projections see every token alike)
            hidden = self.proj_in(modulate(self.norm, x, rows, cond.prefix))
        hidden = self.act(hidden)
        delta = self.proj_out(hidden)
        del hidden
        return delta * rows[2] if len(rows) == 3 and not cond.prefix else apply_gate(delta, rows, cond.prefix)

    def stream(self, x: torch.Tensor, cond: TokenConditioning, state: StreamState, *, commit: bool) -> torch.Tensor:
        return self.forward(x, cond)


# 4. The slot -------------------------------------------------------------------------------


class TokenSlot(nn.Module):
    """The module at one ``tokens`` slot: ``y = x + branch(x, cond)`` (``none``: ``y = x``)."""

    def __init__(self, op: str, params: dict[str, Any], shape) -> None:
        from vidnas.search_space._registry import get_temporal_op

        super().__init__()
        opdef = get_temporal_op(op)
        self.op = op
        self.streams = opdef.supports_streaming(params)
        self.branch = opdef.build(shape, params)

    def forward(self, x: torch.Tensor, cond: TokenConditioning) -> torch.Tensor:
        return x if self.branch is None else x + self.branch(x, cond)

    def stream(self, x: torch.Tensor, cond: TokenConditioning, state: StreamState, *, commit: bool) -> torch.Tensor:
        """The next chunk of a causal stream (see the branches' ``stream``)."""
        if self.branch is None:
            return x
        if not self.streams:
            raise ValueError(f"token op `{self.op}` mixes future frames and cannot stream")
        return x + self.branch.stream(x, cond, state, commit=commit)
