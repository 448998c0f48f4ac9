"""Convolutional and zero-FLOP temporal ops: none, shift, conv1d, conv3d, conv2plus1d."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidnas.search_space._cost import Cost, conv_flops, conv_params, linear_flops, linear_params
from vidnas.search_space._layers import frames_to_planes, planes_to_frames
from vidnas.search_space._params import (
    CAUSAL,
    FUNNEL,
    KERNEL,
    MERGE,
    TEMPORAL_STRIDE,
    USE_TEMB,
    conv_inner_width,
)
from vidnas.search_space._registry import OpParam, SlotShape, register_temporal_op

StreamState = dict[str, Any]


class PlaneGroupNorm(nn.GroupNorm):
    """GroupNorm on the plane layout ``(B, C, T, S)``.

    ``per_frame=False`` normalises each group over the whole clip (T and S), as SVD's
    temporal resblock does; ``per_frame=True`` over each frame alone, so that no frame's
    statistics include a later frame (needed by causal ops and streaming).
    """

    def __init__(self, num_groups: int, num_channels: int, *, per_frame: bool, eps: float = 1e-5) -> None:
        super().__init__(num_groups, num_channels, eps=eps)
        self.per_frame = per_frame

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if not self.per_frame:
            return F.group_norm(p, self.num_groups, self.weight, self.bias, self.eps)
        b, c, t, s = p.shape
        g = p.reshape(b, self.num_groups, c // self.num_groups, t, s)
        var, mean = torch.var_mean(g, dim=(2, 4), keepdim=True, correction=0)
        g = (g - mean) * torch.rsqrt(var + self.eps)
        return g.reshape(b, c, t, s) * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class TemporalConvBranch(nn.Module):
    """Temporal residual block: two stages of (norm, SiLU, conv); the second conv's output is the delta.

    ``variant`` picks the convolutions:

    * ``1d``: both temporal, kernel ``(k, 1, 1)`` (SVD's ``TemporalResnetBlock``, ModelScope);
    * ``3d``: both ``(k, 3, 3)``;
    * ``2plus1d``: a spatial ``3x3`` then a temporal ``(k, 1, 1)`` (R(2+1)D).

    Temporal convolutions run as 2-D ``(k, 1)`` convolutions on the plane layout (same
    weights and FLOPs as the Conv3d form). Causal ops pad only the past.
    """

    def __init__(
        self,
        channels: int,
        inner: int,
        *,
        variant: str,
        kernel: int,
        causal: bool,
        temb_channels: int | None,
        groups: int,
        zero_init: bool,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.kernel = kernel
        self.causal = causal
        self.norm1 = PlaneGroupNorm(groups, channels, per_frame=causal)
        self.conv1 = self._conv(channels, inner, temporal=variant != "2plus1d")
        self.time_emb_proj = nn.Linear(temb_channels, inner) if temb_channels else None
        self.norm2 = PlaneGroupNorm(groups, inner, per_frame=causal)
        self.conv2 = self._conv(inner, channels, temporal=True)
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def _conv(self, cin: int, cout: int, *, temporal: bool) -> nn.Module:
        k = self.kernel if temporal else 1
        pad_t = 0 if self.causal or not temporal else k // 2
        if self.variant == "3d":
            return nn.Conv3d(cin, cout, (k, 3, 3), padding=(pad_t, 1, 1))
        if temporal:
            return nn.Conv2d(cin, cout, (k, 1), padding=(pad_t, 0))
        return nn.Conv2d(cin, cout, 3, padding=1)

    def _apply_conv(self, conv: nn.Module, p: torch.Tensor, height: int, width: int, past: torch.Tensor | None) -> torch.Tensor:
        """Apply ``conv`` to planes ``p`` (B, C, T, H*W); ``past`` holds the frames before ``p`` when causal."""
        b, c, t, s = p.shape
        is_temporal = not (self.variant == "2plus1d" and conv is self.conv1)
        if is_temporal and self.causal:
            pad = past if past is not None else p.new_zeros(b, c, self.kernel - 1, s)
            p = torch.cat([pad, p], dim=2)
        if self.variant == "3d":
            out = conv(p.reshape(b, c, p.shape[2], height, width))
            return out.reshape(b, out.shape[1], t, s)
        if is_temporal:
            return conv(p)
        frames = p.permute(0, 2, 1, 3).reshape(b * t, c, height, width)
        out = conv(frames)
        return out.reshape(b, t, out.shape[1], s).permute(0, 2, 1, 3)

    def _run(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None,
        state: StreamState | None,
        commit: bool,
    ) -> torch.Tensor:
        _, _, height, width = x.shape
        h = F.silu(self.norm1(frames_to_planes(x, num_frames)))
        past = None if state is None else state.get("conv1")
        if state is not None and commit and self.variant != "2plus1d":
            state["conv1"] = self._tail(past, h)
        h = self._apply_conv(self.conv1, h, height, width, past)
        if self.time_emb_proj is not None:
            if temb is None:
                raise ValueError("this temporal op uses the time embedding but `temb` is None")
            t = self.time_emb_proj(F.silu(temb))
            h = h + t.reshape(-1, num_frames, t.shape[-1]).permute(0, 2, 1)[..., None]
        h = F.silu(self.norm2(h))
        past = None if state is None else state.get("conv2")
        if state is not None and commit:
            state["conv2"] = self._tail(past, h)
        h = self._apply_conv(self.conv2, h, height, width, past)
        return planes_to_frames(h, height, width)

    def _tail(self, past: torch.Tensor | None, p: torch.Tensor) -> torch.Tensor:
        """The last ``k - 1`` frames of ``past ++ p``, zero-padded on the left."""
        keep = self.kernel - 1
        if past is None:
            past = p.new_zeros(p.shape[0], p.shape[1], keep, p.shape[3])
        return torch.cat([past, p], dim=2)[:, :, -keep:]

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self._run(x, num_frames, temb, None, False)

    def stream(
        self,
        x: torch.Tensor,
        num_frames: int,
        state: StreamState,
        *,
        commit: bool,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Process the next ``num_frames`` frames of a causal stream; ``commit`` appends them to ``state``."""
        return self._run(x, num_frames, temb, state, commit)


class TemporalShiftBranch(nn.Module):
    """Temporal shift (TSM): ``1/fold_div`` of the channels come from the previous frame and,
    unless causal, another ``1/fold_div`` from the next frame; the rest are zero.

    The delta is ``gate * shifted`` with a per-channel gate initialised to zero, so the
    op starts as identity and costs no multiply-accumulates.
    """

    def __init__(self, channels: int, fold_div: int, causal: bool, zero_init: bool) -> None:
        super().__init__()
        self.fold = max(1, channels // fold_div)
        self.causal = causal
        self.gate = nn.Parameter(torch.zeros(channels) if zero_init else torch.ones(channels))

    def _shift(self, x: torch.Tensor, num_frames: int, previous: torch.Tensor | None) -> torch.Tensor:
        bt, c, h, w = x.shape
        v = x.reshape(bt // num_frames, num_frames, c, h, w)
        f = self.fold
        first = torch.zeros_like(v[:, :1, :f]) if previous is None else previous[:, :, :f]
        from_past = torch.cat([first, v[:, :-1, :f]], dim=1)
        parts = [from_past]
        if self.causal:
            parts.append(torch.zeros_like(v[:, :, f:]))
        else:
            from_future = torch.cat([v[:, 1:, f : 2 * f], torch.zeros_like(v[:, :1, f : 2 * f])], dim=1)
            parts += [from_future, torch.zeros_like(v[:, :, 2 * f :])]
        return torch.cat(parts, dim=2).reshape(bt, c, h, w) * self.gate[None, :, None, None]

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self._shift(x, num_frames, None)

    def stream(
        self,
        x: torch.Tensor,
        num_frames: int,
        state: StreamState,
        *,
        commit: bool,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self._shift(x, num_frames, state.get("last"))
        if commit:
            bt, c, h, w = x.shape
            state["last"] = x.reshape(bt // num_frames, num_frames, c, h, w)[:, -1:]
        return out


# Costs ---------------------------------------------------------------------------------


def conv_branch_cost(variant: str, shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
    """Closed-form cost of :class:`TemporalConvBranch` (see ``_cost`` for conventions)."""
    c, t, k, causal = shape.channels, shape.frames, params["kernel"], params["causal"]
    ci = conv_inner_width(c, params["funnel"], shape.norm_groups)
    pixels = batch * t * shape.height * shape.width
    f, fi = pixels * c, pixels * ci
    k1 = 9 if variant == "2plus1d" else k * 9 if variant == "3d" else k
    k2 = k * 9 if variant == "3d" else k
    temb = shape.temb_channels if params["use_temb"] else 0
    n_params = conv_params(c, ci, k1) + conv_params(ci, c, k2) + 2 * c + 2 * ci
    flops = conv_flops(fi, c, k1) + conv_flops(f, ci, k2)
    if temb:
        n_params += linear_params(temb, ci)
        flops += linear_flops(batch * t, temb, ci)
    padded = (t + k - 1) * f // t  # a causal conv's input with the past padded on
    # Plane <-> frame layout changes are views for a single clip and copies otherwise.
    relayout = f if batch > 1 else 0

    # The live tensors at each stage of ``_run``; per-frame norms (causal) keep a copy,
    # the centred copy and the result alive at once.
    stages = [
        3 * f if causal else 2 * f,  # norm1, SiLU
        f + fi + (relayout if variant == "2plus1d" else padded if causal else 0),  # conv1 and its (padded) input
        2 * fi if temb else 0,  # + time embedding
        fi + (3 * fi if causal else 2 * fi),  # norm2, SiLU
        fi + f + ((t + k - 1) * fi // t if causal else 0),  # conv2
        f + relayout,  # back to frame layout
    ]
    return Cost(n_params, flops, max(stages))


def shift_cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
    """Shift: the shifted parts, their concatenation and the gated output; no FLOPs."""
    f = batch * shape.frames * shape.channels * shape.height * shape.width
    return Cost(shape.channels, 0, 3 * f)


# Registrations -------------------------------------------------------------------------


def _is_causal(params: Mapping[str, Any]) -> bool:
    return bool(params["causal"])


def _streams(params: Mapping[str, Any]) -> bool:
    return bool(params["causal"]) and params.get("temporal_stride", 1) == 1


def _uses_temb(params: Mapping[str, Any]) -> bool:
    return bool(params["use_temb"])


def _check_kernel(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    if params["use_temb"] and not shape.temb_channels:
        from vidnas._errors import SpecError

        raise SpecError(f"{field}.use_temb", True, "the backbone has no time embedding at this slot")


def _conv_builder(variant: str):
    def build(shape: SlotShape, params: Mapping[str, Any]) -> nn.Module:
        return TemporalConvBranch(
            shape.channels,
            conv_inner_width(shape.channels, params["funnel"], shape.norm_groups),
            variant=variant,
            kernel=params["kernel"],
            causal=params["causal"],
            temb_channels=shape.temb_channels if params["use_temb"] else None,
            groups=shape.norm_groups,
            zero_init=params["merge"] == "residual",
        )

    return build


_CONV_PARAMS = (KERNEL, CAUSAL, USE_TEMB, FUNNEL, TEMPORAL_STRIDE, MERGE)


@register_temporal_op(
    "none",
    summary="no temporal layer: the slot is the identity (temporal-block pruning)",
    cost=lambda shape, params, batch: Cost(0, 0, 0),
)
def _build_none(shape: SlotShape, params: Mapping[str, Any]) -> None:
    return None


def _conv_cost(variant: str):
    def cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
        return conv_branch_cost(variant, shape, params, batch)

    return cost


register_temporal_op(
    "conv1d",
    summary="temporal residual block with (k,1,1) convolutions (SVD TemporalResnetBlock, ModelScope TemporalConvLayer)",
    params=_CONV_PARAMS,
    is_causal=_is_causal,
    uses_temb=_uses_temb,
    supports_streaming=_streams,
    check_shape=_check_kernel,
    cost=_conv_cost("1d"),
    reference="diffusers resnet.py TemporalResnetBlock / TemporalConvLayer",
)(_conv_builder("1d"))

register_temporal_op(
    "conv3d",
    summary="residual block with full (k,3,3) 3-D convolutions",
    params=_CONV_PARAMS,
    is_causal=_is_causal,
    uses_temb=_uses_temb,
    supports_streaming=_streams,
    check_shape=_check_kernel,
    cost=_conv_cost("3d"),
    reference="VDM / Make-A-Video style 3-D conv blocks",
)(_conv_builder("3d"))

register_temporal_op(
    "conv2plus1d",
    summary="(2+1)-D residual block: a spatial 3x3 conv then a temporal (k,1,1) conv",
    params=_CONV_PARAMS,
    is_causal=_is_causal,
    uses_temb=_uses_temb,
    supports_streaming=_streams,
    check_shape=_check_kernel,
    cost=_conv_cost("2plus1d"),
    reference="R(2+1)D (Tran et al. 2018)",
)(_conv_builder("2plus1d"))

FOLD_DIV = OpParam("fold_div", int, 8, "1/fold_div of the channels move each way", choices=(4, 8, 16))


@register_temporal_op(
    "shift",
    summary="temporal shift (TSM): channels exchanged with neighbouring frames, zero multiply-accumulates",
    params=(FOLD_DIV, CAUSAL, TEMPORAL_STRIDE, MERGE),
    is_causal=_is_causal,
    supports_streaming=_streams,
    cost=shift_cost,
    reference="TSM (Lin et al. 2019)",
)
def _build_shift(shape: SlotShape, params: Mapping[str, Any]) -> nn.Module:
    return TemporalShiftBranch(shape.channels, params["fold_div"], params["causal"], params["merge"] == "residual")
