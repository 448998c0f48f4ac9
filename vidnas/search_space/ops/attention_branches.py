"""Module of the attention temporal ops (registered in ``ops/attention``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidnas.search_space._layers import (
    Attention,
    FeedForward,
    TimestepMLP,
    first_frame_context,
    frames_to_sequence,
    frames_to_tokens,
    sequence_to_frames,
    sinusoidal_embedding,
    tokens_to_frames,
)
from vidnas.search_space.ops.params import window_starts

StreamState = dict[str, Any]


class TemporalTransformerBranch(nn.Module):
    """A transformer block that mixes information across frames.

    ``layout="1d"`` attends over the T frames at each spatial location (sequences of
    length T, batch B*H*W); ``layout="3d"`` over all T*H*W tokens of a clip.

    ``pattern`` restricts which frames a query frame may attend:

    * ``full``: all frames;
    * ``causal``: frames in the same or an earlier chunk of ``chunk`` frames
      (``chunk=1``: ordinary causal attention). Block-causal 3-D attention is computed
      chunk by chunk, so it costs what a streaming model with a KV cache costs;
    * ``window``: FreeNoise, windows of ``window`` frames every ``window_stride`` frames,
      outputs fused with pyramid weights (positions are counted within each window).

    Sub-layers: ``[norm_in, ff_in]``, ``norm1, attn1`` (self), ``[norm2, attn2]`` (cross,
    to the clip's first-frame context, as SVD), ``norm3, ff``. With ``zero_init`` every
    residual sub-layer's output projection starts at zero.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        *,
        layout: str,
        pattern: str,
        chunk: int = 1,
        window: int = 16,
        window_stride: int = 4,
        context_dim: int | None,
        ff_in: bool,
        pos: str,
        ff_hidden: int,
        zero_init: bool,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.layout = layout
        self.pattern = pattern
        self.chunk = chunk
        self.window = window
        self.window_stride = window_stride
        self.pos = pos
        self.pos_embed = TimestepMLP(channels, 4 * channels, channels) if pos == "mlp" else None
        if self.pos_embed is not None and zero_init:
            nn.init.zeros_(self.pos_embed.linear_2.weight)
            nn.init.zeros_(self.pos_embed.linear_2.bias)
        self.norm_in = nn.LayerNorm(channels) if ff_in else None
        self.ff_in = FeedForward(channels, ff_hidden, zero_init_out=zero_init) if ff_in else None
        self.norm1 = nn.LayerNorm(channels)
        self.attn1 = Attention(channels, heads, head_dim, zero_init_out=zero_init)
        self.norm2 = nn.LayerNorm(channels) if context_dim else None
        self.attn2 = Attention(channels, heads, head_dim, context_dim, zero_init_out=zero_init) if context_dim else None
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, ff_hidden, zero_init_out=zero_init)

    # 1. Layout --------------------------------------------------------------------------

    def _to_tokens(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return frames_to_sequence(x, num_frames) if self.layout == "1d" else frames_to_tokens(x, num_frames)

    def _to_frames(self, seq: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
        if self.layout == "1d":
            return sequence_to_frames(seq, num_frames, height, width)
        return tokens_to_frames(seq, num_frames, height, width)

    def _frame_positions(self, first_frame: int, num_frames: int, hw: int, device: torch.device,
                         dtype: torch.dtype, *, mlp: bool = False) -> torch.Tensor:
        """Positional embedding of frames ``[first_frame, first_frame + num_frames)``, one row per token.

        Computed per frame and repeated over the H*W tokens of a frame in the 3-D layout.
        """
        frames = torch.arange(first_frame, first_frame + num_frames, device=device)
        emb = sinusoidal_embedding(frames, self.channels).to(dtype)
        if mlp:
            emb = self.pos_embed(emb)
        return emb if self.layout == "1d" else emb.repeat_interleave(hw, dim=0)

    # 2. Sub-layers ----------------------------------------------------------------------

    def _self_attention(self, a: torch.Tensor, num_frames: int, hw: int) -> torch.Tensor:
        if self.pattern == "window":
            return self._window_attention(a)
        if self.pos == "sinusoidal":
            a = a + self._frame_positions(0, num_frames, hw, a.device, a.dtype)
        if self.pattern == "full":
            return self.attn1(a)
        key, value = self.attn1.project_kv(a)
        return self._causal_attend(a, key, value, 0, num_frames, hw)

    def _causal_attend(
        self,
        a: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        first_frame: int,
        num_frames: int,
        hw: int,
    ) -> torch.Tensor:
        """Attention where a query in chunk i sees keys in chunks <= i.

        Queries are frames ``[first_frame, first_frame + num_frames)``; keys are frames
        ``[0, first_frame + num_frames)``.
        """
        end = first_frame + num_frames
        if self.layout == "1d":
            q_chunk = torch.arange(first_frame, end, device=a.device) // self.chunk
            k_chunk = torch.arange(end, device=a.device) // self.chunk
            return self.attn1.attend(a, key, value, k_chunk[None, :] <= q_chunk[:, None])
        # 3-D: one attention call per query chunk against the keys of all chunks up to it,
        # so no (T*H*W)^2 mask is ever materialised.
        outputs = []
        frame = first_frame
        while frame < end:
            chunk_end = min((frame // self.chunk + 1) * self.chunk, end)
            queries = a[:, (frame - first_frame) * hw : (chunk_end - first_frame) * hw]
            keys = chunk_end * hw
            if keys < key.shape[2]:  # a slice of the whole tensor is an alias Core ML cannot convert
                outputs.append(self.attn1.attend(queries, key[:, :, :keys], value[:, :, :keys]))
            else:
                outputs.append(self.attn1.attend(queries, key, value))
            frame = chunk_end
        return torch.cat(outputs, dim=1)

    def _window_attention(self, a: torch.Tensor) -> torch.Tensor:
        """FreeNoise: attention inside each window, outputs fused with pyramid weights."""
        n, t, c = a.shape
        w = self.window
        starts = window_starts(t, w, self.window_stride)
        windows = torch.cat([a[:, s : s + w] for s in starts], dim=0)
        if self.pos == "sinusoidal":
            windows = windows + self._frame_positions(0, w, 1, a.device, a.dtype)
        out = self.attn1(windows).reshape(len(starts), n, w, c)
        pyramid = torch.tensor([min(i + 1, w - i) for i in range(w)], dtype=a.dtype, device=a.device)
        total = a.new_zeros(n, t, c)
        weight = a.new_zeros(t)
        for k, s in enumerate(starts):
            pad = (0, 0, s, t - s - w)
            total = total + nn.functional.pad(out[k] * pyramid[None, :, None], pad)
            weight = weight + nn.functional.pad(pyramid, (s, t - s - w))
        return total / weight[None, :, None]

    def _cross_context(self, context: torch.Tensor | None, num_frames: int, hw: int) -> torch.Tensor:
        if context is None:
            raise ValueError("this temporal op cross-attends to conditioning but `context` is None")
        ctx = first_frame_context(context, num_frames)
        if self.layout == "1d":
            b, length, dim = ctx.shape
            ctx = ctx[:, None].expand(b, hw, length, dim).reshape(b * hw, length, dim)
        return ctx

    def _stream_in(self, seq: torch.Tensor, first_frame: int, num_frames: int, hw: int) -> torch.Tensor:
        """Positional MLP and the optional first feed-forward, applied to the stream."""
        h = seq
        if self.pos_embed is not None:
            h = h + self._frame_positions(first_frame, num_frames, hw, seq.device, seq.dtype, mlp=True)
        if self.ff_in is not None:
            h = h + self.ff_in(self.norm_in(h))
        return h

    def _stream_out(self, h: torch.Tensor, context: torch.Tensor | None, num_frames: int, hw: int) -> torch.Tensor:
        if self.attn2 is not None:
            h = h + self.attn2(self.norm2(h), self._cross_context(context, num_frames, hw))
        return h + self.ff(self.norm3(h))

    # 3. Forward ----------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        temb: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, _, height, width = x.shape
        hw = height * width
        seq = self._to_tokens(x, num_frames)
        h = self._stream_in(seq, 0, num_frames, hw)
        h = h + self._self_attention(self.norm1(h), num_frames, hw)
        h = self._stream_out(h, context, num_frames, hw)
        return self._to_frames(h - seq, num_frames, height, width)

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
        """Process the next ``num_frames`` frames with the keys/values of earlier frames cached.

        ``commit=True`` appends this chunk's keys/values to ``state`` (CausVid writes the
        cache in an extra pass at t = 0 after a chunk is denoised).
        """
        _, _, height, width = x.shape
        hw = height * width
        seen = state.get("frames_seen", 0)
        seq = self._to_tokens(x, num_frames)
        h = self._stream_in(seq, seen, num_frames, hw)
        a = self.norm1(h)
        if self.pos == "sinusoidal":
            a = a + self._frame_positions(seen, num_frames, hw, a.device, a.dtype)
        key, value = self.attn1.project_kv(a)
        if "key" in state:
            key = torch.cat([state["key"], key], dim=2)
            value = torch.cat([state["value"], value], dim=2)
        h = h + self._causal_attend(a, key, value, seen, num_frames, hw)
        h = self._stream_out(h, context, num_frames, hw)
        if commit:
            state["key"], state["value"], state["frames_seen"] = key, value, seen + num_frames
        return self._to_frames(h - seq, num_frames, height, width)
