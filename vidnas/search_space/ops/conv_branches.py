"""Modules of the convolutional and shift temporal ops (registered in ``ops/conv``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidnas.search_space._layers import frames_to_planes, group_norm, planes_to_frames

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
            return group_norm(p, self.num_groups, self.weight, self.bias, self.eps)
        b, c, t, s = p.shape
        g = p.reshape(b, self.num_groups, c // self.num_groups, t, s)
        g = g - g.mean(dim=(2, 4), keepdim=True)
        g = g * torch.rsqrt(g.pow(2).mean(dim=(2, 4), keepdim=True) + self.eps)
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
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.kernel = kernel
        self.causal = causal
        self.norm1 = PlaneGroupNorm(groups, channels, per_frame=causal, eps=eps)
        self.conv1 = self._conv(channels, inner, temporal=variant != "2plus1d")
        self.time_emb_proj = nn.Linear(temb_channels, inner) if temb_channels else None
        self.norm2 = PlaneGroupNorm(groups, inner, per_frame=causal, eps=eps)
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

    def _apply_conv(self, conv: nn.Module, p: torch.Tensor, height: int, width: int,
                    past: torch.Tensor | None) -> torch.Tensor:
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
            h = h + self._time_embedding(temb, num_frames)
        h = F.silu(self.norm2(h))
        past = None if state is None else state.get("conv2")
        if state is not None and commit:
            state["conv2"] = self._tail(past, h)
        h = self._apply_conv(self.conv2, h, height, width, past)
        return planes_to_frames(h, height, width)

    def _time_embedding(self, temb: torch.Tensor | None, num_frames: int) -> torch.Tensor:
        """Projected time embedding, broadcastable to planes ``(B, C, T, 1)``."""
        if temb is None:
            raise ValueError("this temporal op uses the time embedding but `temb` is None")
        t = self.time_emb_proj(F.silu(temb))
        return t.reshape(-1, num_frames, t.shape[-1]).permute(0, 2, 1)[..., None]

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
