"""Attention temporal ops: 1-D (per location, over frames) and 3-D (over all tokens of a clip).

attn1d, attn1d_causal, attn1d_window, attn3d, attn3d_blockcausal, xattn1d, xattn3d.
Registrations, parameter checks and closed-form costs; the module is in
``ops/attention_branches`` and imported only when an op is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from vidnas.search_space._registry import OpParam, SlotShape, register_temporal_op
from vidnas.search_space._sharing import SharingRule, prefix_slice
from vidnas.search_space.ops.params import (
    FF_IN,
    FUNNEL,
    HEADS,
    MERGE,
    POS,
    TEMPORAL_STRIDE,
    funnel_heads,
    window_starts,
)

# Costs ---------------------------------------------------------------------------------


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
    # frames for a single clip; the 3-D token layout is a view of a channels-last input
    # (inside a spatial transformer) and a copy otherwise; its inverse is a view.
    seq_copy = (0 if shape.channels_last else f) if layout == "3d" else (f if batch > 1 else 0)
    frames_copy = f if layout == "1d" and batch > 1 else 0

    n_params = 2 * c + attention_params(c, inner) + 2 * c + feedforward_params(c, hidden)
    flops = feedforward_flops(tokens, c, hidden)
    peak = [seq_copy]
    live = seq_copy  # seq
    if params["pos"] == "mlp":
        n_params += mlp_params(c, 4 * c, c)
        flops += linear_flops(t, c, 4 * c) + linear_flops(t, 4 * c, c)
        peak.append(live + per_token_pos + f)
        live = seq_copy + f
    if params["ff_in"]:
        n_params += 2 * c + feedforward_params(c, hidden)
        flops += feedforward_flops(tokens, c, hidden)
        peak += [live + f + ffp, live + 2 * f]
        live = seq_copy + f

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
    def build(shape: SlotShape, params: Mapping[str, Any]):
        from vidnas.search_space.ops.attention_branches import TemporalTransformerBranch

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


# Weight sharing: a funnel keeps the first heads (head width kept) and the first hidden units of each
# feed-forward half; temporal multiscaling changes no weight; another head count shares nothing.


def _largest_attention(variants: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(variants[0])
    out["funnel"] = max(v["funnel"] for v in variants)
    out["temporal_stride"] = 1
    return out


def _cut_attention(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any],
                   sub: Mapping[str, Any]) -> Any:
    if name.endswith("proj.weight") or name.endswith("proj.bias"):  # GEGLU: [value | gate] halves
        import torch

        half, keep = tensor.shape[0] // 2, shape[0] // 2
        rows = torch.cat([tensor[:keep], tensor[half : half + keep]])
        return rows[(slice(None), *(slice(0, n) for n in shape[1:]))] if len(shape) > 1 else rows
    return prefix_slice(name, tensor, shape, full, sub)


ATTENTION_RULE = SharingRule(shared=("funnel", "temporal_stride"), largest=_largest_attention,
                             cut=_cut_attention)


def _transformer_cost(layout: str, pattern: str, *, cross: bool):
    def cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
        return transformer_branch_cost(layout, pattern, cross, shape, params, batch)

    return cost


register_temporal_op(
    "attn1d",
    sharing=ATTENTION_RULE,
    colour="#f28e2b",
    summary="temporal self-attention over the frames at each location (AnimateDiff motion module, SVD)",
    params=_ATTN_PARAMS,
    check_shape=_check_heads,
    cost=_transformer_cost("1d", "full", cross=False),
    reference="diffusers unet_motion_model.py, attention.py TemporalBasicTransformerBlock",
)(_transformer_builder("1d", "full", cross=False))

register_temporal_op(
    "attn1d_causal",
    sharing=ATTENTION_RULE,
    colour="#e15759",
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
    sharing=ATTENTION_RULE,
    colour="#ff9da7",
    summary="windowed temporal self-attention fused with pyramid weights (FreeNoise: window 16, stride 4)",
    params=(HEADS, FUNNEL, WINDOW_POS, FF_IN, WINDOW, WINDOW_STRIDE, TEMPORAL_STRIDE, MERGE),
    check_shape=_check_window,
    cost=_transformer_cost("1d", "window", cross=False),
    reference="AILab-CVC/FreeNoise attention_freenoise.py; diffusers FreeNoiseTransformerBlock",
)(_transformer_builder("1d", "window", cross=False))

register_temporal_op(
    "attn3d",
    sharing=ATTENTION_RULE,
    colour="#b07aa1",
    summary="full spatio-temporal self-attention over all T*H*W tokens (CogVideoX)",
    params=_ATTN_PARAMS,
    check_shape=_check_heads,
    cost=_transformer_cost("3d", "full", cross=False),
    reference="CogVideoX 3-D full attention",
)(_transformer_builder("3d", "full", cross=False))

register_temporal_op(
    "attn3d_blockcausal",
    sharing=ATTENTION_RULE,
    colour="#9c755f",
    summary="3-D attention, bidirectional within a chunk of frames, causal across chunks (CausVid); KV cache",
    params=(HEADS, FUNNEL, POS, FF_IN, CHUNK, TEMPORAL_STRIDE, MERGE),
    is_causal=_always,
    supports_streaming=_single_scale,
    check_shape=_check_chunk,
    cost=_transformer_cost("3d", "causal", cross=False),
    causal_block=lambda params: params["chunk"],
    reference="tianweiy/CausVid causal_model.py (block mask), causal_inference.py (cache)",
)(_transformer_builder("3d", "causal", cross=False))

register_temporal_op(
    "xattn1d",
    sharing=ATTENTION_RULE,
    colour="#edc948",
    summary="temporal self-attention plus cross-attention to the conditioning (SnapGen-V CrossAttn1D, SVD)",
    params=_ATTN_PARAMS,
    uses_context=True,
    check_shape=_check_context,
    cost=_transformer_cost("1d", "full", cross=True),
    reference="diffusers transformer_temporal.py TransformerSpatioTemporalModel",
)(_transformer_builder("1d", "full", cross=True))

register_temporal_op(
    "xattn3d",
    sharing=ATTENTION_RULE,
    colour="#59a14f",
    summary="3-D self-attention plus cross-attention to the conditioning (SnapGen-V CrossAttn3D)",
    params=_ATTN_PARAMS,
    uses_context=True,
    check_shape=_check_context,
    cost=_transformer_cost("3d", "full", cross=True),
    reference="SnapGen-V (arXiv 2412.10494)",
)(_transformer_builder("3d", "full", cross=True))
