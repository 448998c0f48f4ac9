"""Building blocks shared by the backbone and the temporal ops.

The reshapes between the frame layout ``(B*T, C, H, W)`` that every op receives
and the layouts the ops compute in are written once here and named.
Frames of one clip are contiguous: index ``b * T + t``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# 1. Layout conversions ----------------------------------------------------------------


def frames_to_sequence(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B*H*W, T, C)``: one sequence of frames per spatial location."""
    bt, c, h, w = x.shape
    b = bt // num_frames
    return x.reshape(b, num_frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, num_frames, c)


def sequence_to_frames(seq: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`frames_to_sequence`."""
    bhw, t, c = seq.shape
    b = bhw // (height * width)
    return seq.reshape(b, height * width, t, c).permute(0, 2, 3, 1).reshape(b * t, c, height, width)


def frames_to_tokens(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B, T*H*W, C)``: one spatio-temporal token sequence per clip."""
    bt, c, h, w = x.shape
    b = bt // num_frames
    return x.reshape(b, num_frames, c, h * w).permute(0, 1, 3, 2).reshape(b, num_frames * h * w, c)


def tokens_to_frames(tokens: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`frames_to_tokens`."""
    b, _, c = tokens.shape
    frames = tokens.reshape(b, num_frames, height * width, c).permute(0, 1, 3, 2)
    return frames.reshape(b * num_frames, c, height, width)


def frames_to_planes(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B, C, T, H*W)``: time as a conv axis, space flattened.

    Temporal convolutions run as 2-D convolutions on this layout: a ``(k, 1)`` kernel
    over ``(T, H*W)`` has the same weights and FLOPs as a ``(k, 1, 1)`` Conv3d, and
    exports to runtimes (Core ML) that handle 4-D tensors best.
    """
    bt, c, h, w = x.shape
    b = bt // num_frames
    return x.reshape(b, num_frames, c, h * w).permute(0, 2, 1, 3)


def planes_to_frames(p: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`frames_to_planes`."""
    b, c, t, _ = p.shape
    return p.permute(0, 2, 1, 3).reshape(b * t, c, height, width)


def frames_to_video(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*T, C, H, W)`` -> ``(B, C, T, H, W)`` for 3-D convolutions."""
    bt, c, h, w = x.shape
    b = bt // num_frames
    return x.reshape(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4)


def first_frame_context(context: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*T, L, D)`` per-frame conditioning -> ``(B, L, D)`` taken from each clip's first frame."""
    bt, length, dim = context.shape
    return context.reshape(bt // num_frames, num_frames, length, dim)[:, 0]


# 2. Normalisation and embeddings -------------------------------------------------------


def group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
               eps: float) -> torch.Tensor:
    """``F.group_norm``, avoiding a crash of torch's CPU kernel.

    Its channels-last backward segfaults (torch 2.13, CPU) when only the affine weights need
    gradients and the input does not: exactly a trainable norm inside a layer inserted after a
    frozen backbone. Only then is the input made contiguous first; every other call (inference,
    timing, training with input gradients) runs unchanged.
    """
    if (x.device.type == "cpu" and torch.is_grad_enabled() and not x.requires_grad and weight is not None
            and weight.requires_grad and not x.is_contiguous()):
        x = x.contiguous()
    return F.group_norm(x, groups, weight, bias, eps)


class GroupNorm(nn.GroupNorm):
    """GroupNorm that accepts 4-D and 5-D input.

    A 5-D ``(B, C, T, H, W)`` input is normalised as ``(B, C, T, H*W)``: the statistics
    are identical (each group still spans its channels and all of T, H, W), and 4-D
    GroupNorm converts to runtimes that reject the 5-D form.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            b, c, t, h, w = x.shape
            return self.forward(x.reshape(b, c, t, h * w)).reshape(b, c, t, h, w)
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def sinusoidal_embedding(
    positions: torch.Tensor,
    dim: int,
    *,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding of scalar positions (timesteps or frame indices).

    Args:
        positions: 1-D tensor of N positions.
        dim: Embedding width.
        flip_sin_to_cos: Put the cosines first (the convention of Stable Video Diffusion).
        downscale_freq_shift: Shift of the frequency denominator (0 for SVD).
        max_period: Longest period.

    Returns:
        ``(N, dim)`` float tensor.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device)
    exponent = exponent / (half - downscale_freq_shift)
    angles = positions.float()[:, None] * torch.exp(exponent)[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    emb = torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepMLP(nn.Module):
    """Two linear layers with SiLU between: the embedding MLP of diffusion UNets."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden_dim, out_dim or hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


# 3. Attention and feed-forward ---------------------------------------------------------


class Attention(nn.Module):
    """Multi-head (cross-)attention with bias-free q/k/v and a biased output projection.

    Args:
        query_dim: Width of the queries' input and of the output.
        heads: Number of heads.
        head_dim: Width of each head.
        context_dim: Width of keys' and values' input; ``None`` for self-attention.
        zero_init_out: Zero the output projection so the block starts as identity.
    """

    def __init__(
        self,
        query_dim: int,
        heads: int,
        head_dim: int,
        context_dim: int | None = None,
        *,
        zero_init_out: bool = False,
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        if zero_init_out:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, L, heads*head_dim)`` -> ``(N, heads, L, head_dim)``."""
        n, length, _ = x.shape
        return x.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``source`` in head layout."""
        return self.split_heads(self.to_k(source)), self.split_heads(self.to_v(source))

    def attend(
        self,
        x: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` (N, Lq, query_dim) to keys/values already in head layout.

        ``mask`` is boolean, True where attention is allowed, broadcastable to (Lq, Lk).
        """
        q = self.split_heads(self.to_q(x))
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)
        n, _, length, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(n, length, self.heads * self.head_dim))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        key, value = self.project_kv(x if context is None else context)
        return self.attend(x, key, value, mask)


class FeedForward(nn.Module):
    """GEGLU feed-forward: ``Linear(dim, 2*hidden)`` gated by GELU, then ``Linear(hidden, out)``."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, *, zero_init_out: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden)
        self.out = nn.Linear(hidden, out_dim or dim)
        if zero_init_out:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(value * F.gelu(gate))

