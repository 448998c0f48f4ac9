"""A temporal slot: a registered op's branch plus the modifiers that wrap it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vidnas.search_space._registry import SlotShape, get_temporal_op


def pool_frames(x: torch.Tensor, num_frames: int, stride: int) -> torch.Tensor:
    """Average each run of ``stride`` frames: ``(B*T, ...)`` -> ``(B*T/stride, ...)``."""
    rest = x.shape[1:]
    runs = x.reshape(x.shape[0] // num_frames, num_frames // stride, stride, -1)  # at most 4-D (Core ML)
    return runs.mean(dim=2).reshape(-1, *rest)


def pick_frames(x: torch.Tensor, num_frames: int, stride: int) -> torch.Tensor:
    """The first frame of each run of ``stride`` frames (for per-frame conditioning)."""
    rest = x.shape[1:]
    runs = x.reshape(x.shape[0] // num_frames, num_frames // stride, stride, -1)
    return runs[:, :, 0].reshape(-1, *rest)


def repeat_frames(x: torch.Tensor, coarse_frames: int, stride: int, *, causal: bool) -> torch.Tensor:
    """Inverse of :func:`pool_frames` by repetition.

    A causal op's output for frames ``[j*s, (j+1)*s)`` depends on frame ``(j+1)*s - 1``, so
    it may only be used from that frame on: the causal form delays the repeated signal
    by ``s - 1`` frames (zeros before), keeping frame t blind to frames after t.
    """
    rest = x.shape[1:]
    b = x.shape[0] // coarse_frames
    flat = x.reshape(b, coarse_frames, 1, -1)
    rep = flat.expand(b, coarse_frames, stride, flat.shape[-1]).reshape(b, coarse_frames * stride, -1)
    if causal and stride > 1:
        rep = torch.cat([torch.zeros_like(rep[:, : stride - 1]), rep[:, : -(stride - 1)]], dim=1)
    return rep.reshape(b * coarse_frames * stride, *rest)


class TemporalSlot(nn.Module):
    """The module at one slot: ``y = x + w * up(branch(down(x)))``.

    ``down``/``up`` are the temporal multiscaling (``temporal_stride``); ``w`` is 1 for the
    residual merge and SVD's learned blend for the ``alpha_*`` merges. See the registry's
    docstring for the tensor contract.
    """

    def __init__(self, op: str, params: Mapping[str, Any], shape: SlotShape) -> None:
        super().__init__()
        opdef = get_temporal_op(op)
        self.op = op
        self.stride = int(params.get("temporal_stride", 1))
        self.causal = opdef.is_causal(params)
        self.merge = params.get("merge", "residual")
        self.branch = opdef.build(shape.with_frames(shape.frames // self.stride), params)
        if self.merge != "residual":
            # SVD's AlphaBlender("learned_with_images"): a scalar whose sigmoid is the mix.
            self.mix_factor = nn.Parameter(torch.tensor([0.5]))

    def branch_weight(self) -> torch.Tensor | None:
        """Weight of the branch output; ``None`` means 1."""
        if self.merge == "residual":
            return None
        alpha = torch.sigmoid(self.mix_factor)
        return alpha if self.merge == "alpha_temporal" else 1.0 - alpha

    def _join(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        weight = self.branch_weight()
        return x + delta if weight is None else x + weight * delta

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.branch is None:
            return x
        s = self.stride
        if s == 1:
            return self._join(x, self.branch(x, num_frames, temb, context))
        coarse = num_frames // s
        delta = self.branch(
            pool_frames(x, num_frames, s),
            coarse,
            None if temb is None else pick_frames(temb, num_frames, s),
            None if context is None else pick_frames(context, num_frames, s),
        )
        return self._join(x, repeat_frames(delta, coarse, s, causal=self.causal))

    @property
    def supports_streaming(self) -> bool:
        return self.branch is None or (self.stride == 1 and hasattr(self.branch, "stream") and self.causal)

    def stream(
        self,
        x: torch.Tensor,
        num_frames: int,
        state: dict[str, Any],
        *,
        commit: bool,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Process the next chunk of a causal stream; see the branches' ``stream``."""
        if self.branch is None:
            return x
        if not self.supports_streaming:
            raise ValueError(f"temporal op `{self.op}` (stride {self.stride}, causal={self.causal}) cannot stream")
        return self._join(x, self.branch.stream(x, num_frames, state, commit=commit, temb=temb, context=context))

