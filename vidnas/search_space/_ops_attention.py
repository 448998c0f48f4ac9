"""Attention temporal ops: 1-D (per location, over frames) and 3-D (over all tokens of a clip).

attn1d, attn1d_causal, attn1d_window, attn3d, attn3d_blockcausal, xattn1d, xattn3d.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vidnas._errors import SpecError
from vidnas.search_space._cost import (
    Cost,
    attention_params,
    feedforward_flops,
    feedforward_params,
    feedforward_peak,
    linear_flops,
    mlp_params,
    sdpa_flops,
)
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
from vidnas.search_space._params import FF_IN, FUNNEL, HEADS, MERGE, POS, TEMPORAL_STRIDE, funnel_heads
from vidnas.search_space._registry import OpParam, SlotShape, register_temporal_op

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
            outputs.append(self.attn1.attend(queries, key[:, :, : chunk_end * hw], value[:, :, : chunk_end * hw]))
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


# Costs ---------------------------------------------------------------------------------


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, frames - window + 1, stride))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def transformer_branch_cost(
    layout: str, pattern: str, cross: bool, shape: SlotShape, params: Mapping[str, Any], batch: int
) -> Cost:
    """Closed-form cost of :class:`TemporalTransformerBranch` (see ``_cost`` for conventions)."""
    c, t, hw = shape.channels, shape.frames, shape.height * shape.width
    heads = funnel_heads(params["heads"], params["funnel"])
    d = c // params["heads"]
    inner = heads * d
    hidden = max(1, round(4 * c * params["funnel"]))
    tokens = batch * t * hw
    f, fi = tokens * c, tokens * inner
    n_seq, seq_len = (batch * hw, t) if layout == "1d" else (batch, t * hw)
    per_token_pos = t * c if layout == "1d" else t * hw * c  # a positional table as added
    ffp = feedforward_peak(tokens, c, hidden)
    # Layout changes copy only when they must: the 1-D sequence layout is a view of the
    # frames for a single clip; the 3-D token layout is always a copy, its inverse a view.
    seq_copy = f if layout == "3d" or batch > 1 else 0
    frames_copy = f if layout == "1d" and batch > 1 else 0

    n_params = 2 * c + attention_params(c, inner) + 2 * c + feedforward_params(c, hidden)
    flops = feedforward_flops(tokens, c, hidden)
    peak = [seq_copy]
    live = seq_copy  # seq
    h_is_seq = True
    if params["pos"] == "mlp":
        n_params += mlp_params(c, 4 * c, c)
        flops += linear_flops(t, c, 4 * c) + linear_flops(t, 4 * c, c)
        peak.append(live + per_token_pos + f)
        live, h_is_seq = seq_copy + f, False
    if params["ff_in"]:
        n_params += 2 * c + feedforward_params(c, hidden)
        flops += feedforward_flops(tokens, c, hidden)
        peak += [live + f + ffp, live + 2 * f]
        live, h_is_seq = seq_copy + f, False

    # Self-attention on a = norm1(h) (plus a positioned copy for sinusoidal positions).
    with_pos = params["pos"] == "sinusoidal"
    a_live = f + (f if with_pos and pattern != "window" else 0)
    if with_pos and pattern != "window":
        peak.append(live + 2 * f + per_token_pos)
    if pattern == "window":
        starts = window_starts(t, params["window"], params["window_stride"])
        w = params["window"]
        win_tokens = n_seq * len(starts) * w
        fw, fiw = win_tokens * c, win_tokens * inner
        flops += 4 * linear_flops(win_tokens, c, inner) + sdpa_flops(n_seq * len(starts) * heads, w, w, d)
        peak += [
            live + a_live + 2 * fw,  # windows, positioned windows
            live + a_live + fw + 4 * fiw + fw,  # attention on the windows
            live + a_live + 2 * fw + 3 * f + f * w // t,  # pyramid fusion
        ]
    elif pattern == "causal" and layout == "3d":
        chunk = params["chunk"]
        chunks = t // chunk
        q_len = chunk * hw
        flops += 4 * linear_flops(tokens, c, inner)
        flops += sum(sdpa_flops(batch * heads, q_len, (i + 1) * q_len, d) for i in range(chunks))
        peak.append(live + a_live + 2 * fi + max(f + 2 * fi // chunks, 2 * f))
    else:
        flops += 4 * linear_flops(tokens, c, inner) + sdpa_flops(n_seq * heads, seq_len, seq_len, d)
        peak.append(live + a_live + 4 * fi + f)
    peak.append(live + 2 * f)  # h + attention output
    base = seq_copy + f  # seq and h

    if cross:
        ctx_dim, ctx_len = shape.context_dim, shape.context_tokens
        ctx_rows = (batch * hw if layout == "1d" else batch) * ctx_len
        ctx_copy = ctx_rows * ctx_dim if layout == "1d" else 0
        n_params += 2 * c + attention_params(c, inner, ctx_dim)
        flops += linear_flops(tokens, c, inner) + 2 * linear_flops(ctx_rows, ctx_dim, inner)
        flops += linear_flops(tokens, inner, c) + sdpa_flops(n_seq * heads, seq_len, ctx_len, d)
        peak += [base + f + ctx_copy + 2 * ctx_rows * inner + 2 * fi + f, base + 2 * f]
    # The caller keeps the pre-cross-attention h alive through the feed-forward.
    ff_base = base + (f if cross else 0)
    peak += [ff_base + f + ffp, ff_base + 2 * f, base + f + frames_copy]  # feed-forward; delta (+ frame copy)
    return Cost(n_params, flops, max(peak))


# Registrations -------------------------------------------------------------------------


def _check_heads(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    heads = params["heads"]
    if shape.channels % heads:
        raise SpecError(
            f"{field}.heads", heads, f"does not divide the {shape.channels} channels of this slot",
            f"use a divisor of {shape.channels}, e.g. {max(1, shape.channels // shape.head_dim)}",
        )


def _check_context(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_heads(shape, params, field)
    if not shape.context_dim:
        raise SpecError(field, "cross-attention", "the backbone has no conditioning context (cross_attention_dim is 0)")


def _check_window(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_heads(shape, params, field)
    if params["window"] > shape.frames:
        raise SpecError(
            f"{field}.window", params["window"], f"is larger than the {shape.frames} frames this op sees",
            "use a window <= frames (after temporal_stride)",
        )
    if params["window_stride"] > params["window"]:
        raise SpecError(f"{field}.window_stride", params["window_stride"], f"exceeds the window {params['window']}")


def _check_chunk(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_heads(shape, params, field)
    if shape.frames % params["chunk"]:
        raise SpecError(f"{field}.chunk", params["chunk"], f"does not divide the {shape.frames} frames this op sees")


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _single_scale(params: Mapping[str, Any]) -> bool:
    return params.get("temporal_stride", 1) == 1


_ATTN_PARAMS = (HEADS, FUNNEL, POS, FF_IN, TEMPORAL_STRIDE, MERGE)
WINDOW = OpParam("window", int, 16, "frames per attention window (FreeNoise: 16)", minimum=2)
WINDOW_STRIDE = OpParam("window_stride", int, 4, "frames between window starts (FreeNoise: 4)", minimum=1)
WINDOW_POS = OpParam(
    "pos", str, "sinusoidal", "frame positions within each window: sinusoidal or none", choices=("sinusoidal", "none")
)
CHUNK = OpParam("chunk", int, 1, "frames per causal block: bidirectional inside, causal across", minimum=1)


def _transformer_builder(layout: str, pattern: str, *, cross: bool):
    def build(shape: SlotShape, params: Mapping[str, Any]) -> nn.Module:
        heads = params["heads"]
        return TemporalTransformerBranch(
            shape.channels,
            funnel_heads(heads, params["funnel"]),
            shape.channels // heads,
            layout=layout,
            pattern=pattern,
            chunk=params.get("chunk", 1),
            window=params.get("window", 16),
            window_stride=params.get("window_stride", 4),
            context_dim=shape.context_dim if cross else None,
            ff_in=params["ff_in"],
            pos=params["pos"],
            ff_hidden=max(1, round(4 * shape.channels * params["funnel"])),
            zero_init=params["merge"] == "residual",
        )

    return build


def _transformer_cost(layout: str, pattern: str, *, cross: bool):
    def cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
        return transformer_branch_cost(layout, pattern, cross, shape, params, batch)

    return cost


register_temporal_op(
    "attn1d",
    summary="temporal self-attention over the frames at each location (AnimateDiff motion module, SVD)",
    params=_ATTN_PARAMS,
    check_shape=_check_heads,
    cost=_transformer_cost("1d", "full", cross=False),
    reference="diffusers unet_motion_model.py, attention.py TemporalBasicTransformerBlock",
)(_transformer_builder("1d", "full", cross=False))

register_temporal_op(
    "attn1d_causal",
    summary="causal temporal self-attention: frame t attends frames <= t (CausVid, Phenaki C-ViViT); KV cache",
    params=_ATTN_PARAMS,
    is_causal=_always,
    supports_streaming=_single_scale,
    check_shape=_check_heads,
    cost=_transformer_cost("1d", "causal", cross=False),
    reference="tianweiy/CausVid causal_model.py; Phenaki (arXiv 2210.02399)",
)(_transformer_builder("1d", "causal", cross=False))

register_temporal_op(
    "attn1d_window",
    summary="windowed temporal self-attention fused with pyramid weights (FreeNoise: window 16, stride 4)",
    params=(HEADS, FUNNEL, WINDOW_POS, FF_IN, WINDOW, WINDOW_STRIDE, TEMPORAL_STRIDE, MERGE),
    check_shape=_check_window,
    cost=_transformer_cost("1d", "window", cross=False),
    reference="AILab-CVC/FreeNoise attention_freenoise.py; diffusers FreeNoiseTransformerBlock",
)(_transformer_builder("1d", "window", cross=False))

register_temporal_op(
    "attn3d",
    summary="full spatio-temporal self-attention over all T*H*W tokens (CogVideoX)",
    params=_ATTN_PARAMS,
    check_shape=_check_heads,
    cost=_transformer_cost("3d", "full", cross=False),
    reference="CogVideoX 3-D full attention",
)(_transformer_builder("3d", "full", cross=False))

register_temporal_op(
    "attn3d_blockcausal",
    summary="3-D attention, bidirectional within a chunk of frames, causal across chunks (CausVid); KV cache",
    params=(HEADS, FUNNEL, POS, FF_IN, CHUNK, TEMPORAL_STRIDE, MERGE),
    is_causal=_always,
    supports_streaming=_single_scale,
    check_shape=_check_chunk,
    cost=_transformer_cost("3d", "causal", cross=False),
    reference="tianweiy/CausVid causal_model.py (block mask), causal_inference.py (cache)",
)(_transformer_builder("3d", "causal", cross=False))

register_temporal_op(
    "xattn1d",
    summary="temporal self-attention plus cross-attention to the conditioning (SnapGen-V CrossAttn1D, SVD)",
    params=_ATTN_PARAMS,
    uses_context=True,
    check_shape=_check_context,
    cost=_transformer_cost("1d", "full", cross=True),
    reference="diffusers transformer_temporal.py TransformerSpatioTemporalModel",
)(_transformer_builder("1d", "full", cross=True))

register_temporal_op(
    "xattn3d",
    summary="3-D self-attention plus cross-attention to the conditioning (SnapGen-V CrossAttn3D)",
    params=_ATTN_PARAMS,
    uses_context=True,
    check_shape=_check_context,
    cost=_transformer_cost("3d", "full", cross=True),
    reference="SnapGen-V (arXiv 2412.10494)",
)(_transformer_builder("3d", "full", cross=True))
