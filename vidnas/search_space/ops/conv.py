"""Convolutional and zero-FLOP temporal ops: none, shift, conv1d, conv3d, conv2plus1d.

Registrations, parameter checks and closed-form costs; the modules are in
``ops/conv_branches`` and imported only when an op is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._cost import Cost, conv_flops, conv_params, linear_flops, linear_params
from vidnas.search_space._registry import OpParam, SlotShape, register_temporal_op
from vidnas.search_space._sharing import SharingRule
from vidnas.search_space.ops.params import (
    CAUSAL,
    FUNNEL,
    KERNEL,
    MERGE,
    TEMPORAL_STRIDE,
    USE_TEMB,
    conv_inner_width,
)

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
        2 * fi + batch * t * ci if temb else 0,  # + the time embedding's projection
        fi + batch * t * (temb + ci) if temb else 0,  # its SiLU and projection
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
        raise SpecError(f"{field}.use_temb", True, "the backbone has no time embedding at this slot")


def _conv_builder(variant: str):
    def build(shape: SlotShape, params: Mapping[str, Any]):
        from vidnas.search_space.ops.conv_branches import TemporalConvBranch

        return TemporalConvBranch(
            shape.channels,
            conv_inner_width(shape.channels, params["funnel"], shape.norm_groups),
            variant=variant,
            kernel=params["kernel"],
            causal=params["causal"],
            temb_channels=shape.temb_channels if params["use_temb"] else None,
            groups=shape.norm_groups,
            zero_init=params["merge"] == "residual",
            eps=shape.extra("norm_eps", 1e-5),  # the backbone's, where it sets one (SVD's UNet: see resnet_eps)
        )

    return build


# Weight sharing: kernel 3 is the centre of kernel 5 (the last taps when causal: the taps nearest
# the present), a funnel the first ``funnel * C`` inner channels; temporal multiscaling changes no weight.


def _largest_conv(variants: list[Mapping[str, Any]]) -> dict[str, Any]:
    out = dict(variants[0])
    out["kernel"] = max(v["kernel"] for v in variants)
    out["funnel"] = max(v["funnel"] for v in variants)
    out["temporal_stride"] = 1
    return out


def _cut_conv(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any], sub: Mapping[str, Any]) -> Any:
    block = tensor[tuple(slice(0, n) for n in shape[:2])]  # output, input channels
    if len(shape) <= 2:
        return tensor[tuple(slice(0, n) for n in shape)]
    k_full, k = tensor.shape[2], shape[2]
    if k_full != k:  # the temporal taps: centred, or the most recent ones when causal
        start = k_full - k if sub.get("causal") else (k_full - k) // 2
        block = block[:, :, start : start + k]
    return block[tuple(slice(0, n) for n in shape)]


CONV_RULE = SharingRule(shared=("kernel", "funnel", "temporal_stride"), largest=_largest_conv, cut=_cut_conv)


_CONV_PARAMS = (KERNEL, CAUSAL, USE_TEMB, FUNNEL, TEMPORAL_STRIDE, MERGE)


@register_temporal_op(
    "none",
    colour="#e8e8e8",
    summary="no temporal layer: the slot is the identity (temporal-block pruning)",
    cost=lambda shape, params, batch: Cost(0, 0, 0),
    layouts=("*",),
)
def _build_none(shape: SlotShape, params: Mapping[str, Any]) -> None:
    return None


def _conv_cost(variant: str):
    def cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
        return conv_branch_cost(variant, shape, params, batch)

    return cost


register_temporal_op(
    "conv1d",
    sharing=CONV_RULE,
    colour="#4e79a7",
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
    sharing=CONV_RULE,
    colour="#1f4e79",
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
    sharing=CONV_RULE,
    colour="#76b7b2",
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
    colour="#bab0ac",
    summary="temporal shift (TSM): channels exchanged with neighbouring frames, zero multiply-accumulates",
    params=(FOLD_DIV, CAUSAL, TEMPORAL_STRIDE, MERGE),
    is_causal=_is_causal,
    supports_streaming=_streams,
    cost=shift_cost,
    reference="TSM (Lin et al. 2019)",
)
def _build_shift(shape: SlotShape, params: Mapping[str, Any]):
    from vidnas.search_space.ops.conv_branches import TemporalShiftBranch

    return TemporalShiftBranch(shape.channels, params["fold_div"], params["causal"], params["merge"] == "residual")
