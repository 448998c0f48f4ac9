"""The latent video UNet family: its plan of units, their closed-form costs, its registration.

A unit is the time embedding, ``conv_in``, a residual block, the two halves of a spatial
transformer, a temporal slot, a down/upsampler or ``conv_out``; the skip stack carries
the down path's outputs to the up path and the residual stack a spatial transformer's
input to its second half. The modules are in ``families/unet/network`` (torch), imported only when built.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from vidnas.search_space._cost import (
    Cost,
    attention_params,
    conv_flops,
    conv_params,
    feedforward_flops,
    feedforward_params,
    feedforward_peak,
    linear_flops,
    linear_params,
    mlp_params,
    sdpa_flops,
)
from vidnas.search_space._plan import UnitPlan, slot_config, slot_cost, slot_shape

if TYPE_CHECKING:
    from vidnas.search_space._spec import ArchSpec

__all__ = ["unet_plan", "unet_unit_cost"]


def unet_plan(spec: ArchSpec) -> list[UnitPlan]:
    """The units of a UNet ``spec`` in execution order."""
    bb = spec.backbone
    temb = bb.temb_channels
    ctx = bb.cross_attention_dim or None
    T = bb.frames
    units: list[UnitPlan] = []
    skips: list[tuple[int, int, int]] = []

    def add(name: str, kind: str, config: dict, shape: tuple, out: tuple, **wiring: Any) -> None:
        units.append(UnitPlan(name, kind, config, shape, out, T, **wiring))

    def resblock(name: str, level: int, shape: tuple, cout: int, pop_skip: bool) -> tuple:
        aux = skips.pop() if pop_skip else None
        cin = shape[0] + (aux[0] if aux else 0)
        out = (cout, shape[1], shape[2])
        cfg = {"in_channels": cin, "out_channels": cout, "temb_channels": temb, "norm_groups": bb.norm_groups,
               "eps": bb.resnet_eps(name.split(".")[0], level)}
        add(name, "resblock", cfg, shape, out, pop="skip" if aux else None, aux_shape=aux, level=level)
        return out

    slot_shapes = {s.name: s.shape for s in bb.slots()}

    def temporal(slot: str, level: int, shape: tuple) -> None:
        choice = spec.temporal[slot]
        add(slot, "temporal", slot_config(choice.op, choice.params, slot_shapes[slot]), shape, shape, slot=slot,
            level=level)

    def transformer(prefix: str, level: int, shape: tuple) -> None:
        c = shape[0]
        cfg = {"channels": c, "heads": c // bb.head_dim, "context_dim": ctx, "context_tokens": bb.context_tokens
               if ctx else None, "norm_groups": bb.norm_groups}
        add(f"{prefix}.attn_in", "attn_in", cfg, shape, shape, push="residual", level=level)
        temporal(f"{prefix}.attn", level, shape)
        add(f"{prefix}.attn_out", "attn_out", {"channels": c}, shape, shape, pop="residual", aux_shape=shape,
            level=level)

    n_ids = bb.num_added_time_ids
    add("time_embed", "time_embed", {"channels": bb.channels[0], "temb_channels": temb,
                                     "addition_time_embed_dim": bb.addition_time_embed_dim,
                                     "num_added_time_ids": n_ids}, (0, 1, 1), (temb, 1, 1), conditioning=True)
    h, w = bb.latent_height, bb.latent_width
    shape = (bb.channels[0], h, w)
    add("conv_in", "conv_in", {"in_channels": bb.in_channels, "out_channels": bb.channels[0]},
        (bb.in_channels, h, w), shape, push="skip", level=0)
    skips.append(shape)

    # 1. Down path
    for level, cout in enumerate(bb.channels):
        for block in range(bb.layers_per_block[level]):
            prefix = f"down.{level}.{block}"
            shape = resblock(f"{prefix}.resblock", level, shape, cout, False)
            temporal(f"{prefix}.res", level, shape)
            if bb.attention[level]:
                transformer(prefix, level, shape)
            units[-1] = dataclasses.replace(units[-1], push="skip")
            skips.append(shape)
        if level < bb.num_levels - 1:
            out = (cout, shape[1] // 2, shape[2] // 2)
            add(f"down.{level}.downsample", "downsample", {"channels": cout}, shape, out, push="skip", level=level)
            shape = out
            skips.append(shape)

    # 2. Mid block
    last = bb.num_levels - 1
    c = bb.channels[last]
    shape = resblock(f"mid.{last}.0.resblock", last, shape, c, False)
    temporal(f"mid.{last}.0.res", last, shape)
    if bb.mid_attention:
        transformer(f"mid.{last}.0", last, shape)
    shape = resblock(f"mid.{last}.1.resblock", last, shape, c, False)
    temporal(f"mid.{last}.1.res", last, shape)

    # 3. Up path
    for level in reversed(range(bb.num_levels)):
        cout = bb.channels[level]
        for block in range(bb.layers_per_block[level] + 1):
            prefix = f"up.{level}.{block}"
            shape = resblock(f"{prefix}.resblock", level, shape, cout, True)
            temporal(f"{prefix}.res", level, shape)
            if bb.attention[level]:
                transformer(prefix, level, shape)
        if level > 0:
            out = (cout, shape[1] * 2, shape[2] * 2)
            add(f"up.{level}.upsample", "upsample", {"channels": cout}, shape, out, level=level)
            shape = out

    # 4. Output
    add("conv_out", "conv_out", {"in_channels": shape[0], "out_channels": bb.out_channels,
                                 "norm_groups": bb.norm_groups}, shape, (bb.out_channels, shape[1], shape[2]), level=0)
    return units


def unet_unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one UNet unit on ``batch`` clips (see ``_cost`` for conventions).

    ``None`` for a temporal op that declares no cost formula.
    """
    c = plan.config
    n = batch * plan.frames
    cin, h, w = plan.in_shape
    cout, ho, wo = plan.out_shape
    f_in, f_out = n * cin * h * w, n * cout * ho * wo
    if plan.kind == "temporal":
        return slot_cost(c["op"], c["params"], slot_shape(plan), batch)
    if plan.kind == "time_embed":
        width, temb, add_dim, n_ids = c["channels"], c["temb_channels"], c["addition_time_embed_dim"], \
            c["num_added_time_ids"]
        params = mlp_params(width, temb, temb)
        flops = linear_flops(batch, width, temb) + linear_flops(batch, temb, temb)
        if n_ids:
            params += mlp_params(add_dim * n_ids, temb, temb)
            flops += linear_flops(batch, add_dim * n_ids, temb) + linear_flops(batch, temb, temb)
        return Cost(params, flops, batch * (width + add_dim * n_ids + 4 * temb))
    if plan.kind in ("conv_in", "downsample"):
        cin_conv = c.get("in_channels", cin)
        return Cost(conv_params(cin_conv, cout, 9), conv_flops(f_out, cin_conv, 9), f_out)
    if plan.kind == "upsample":
        up = 4 * f_in
        return Cost(conv_params(cin, cout, 9), conv_flops(f_out, cin, 9), 2 * up)
    if plan.kind == "conv_out":
        return Cost(conv_params(cin, cout, 9) + 2 * cin, conv_flops(f_out, cin, 9), max(2 * f_in, f_in + f_out))
    if plan.kind == "resblock":
        cat = plan.aux_shape is not None
        fc = n * c["in_channels"] * h * w  # input after concatenating the skip
        temb = c["temb_channels"]
        params = 2 * c["in_channels"] + conv_params(c["in_channels"], cout, 9) + linear_params(temb, cout)
        params += 2 * cout + conv_params(cout, cout, 9)
        flops = conv_flops(f_out, c["in_channels"], 9) + linear_flops(n, temb, cout) + conv_flops(f_out, cout, 9)
        if c["in_channels"] != cout:
            params += conv_params(c["in_channels"], cout, 1)
            flops += conv_flops(f_out, c["in_channels"], 1)
        peak = (fc if cat else 0) + max(2 * fc, fc + f_out, 3 * f_out)
        return Cost(params, flops, peak)
    if plan.kind == "attn_in":
        ch, heads, ctx_dim, ctx_len = c["channels"], c["heads"], c["context_dim"], c["context_tokens"]
        tokens = n * h * w
        f = tokens * ch
        params = 2 * ch + linear_params(ch, ch) + 2 * ch + attention_params(ch, ch) + 2 * ch
        params += feedforward_params(ch, 4 * ch)
        flops = linear_flops(tokens, ch, ch) + 4 * linear_flops(tokens, ch, ch)
        flops += sdpa_flops(n * heads, h * w, h * w, ch // heads) + feedforward_flops(tokens, ch, 4 * ch)
        # The projected input stays alive (the caller's reference) through the block.
        peak = [2 * f, 7 * f]  # norm + projection; self-attention (input, a, q, k, v, o, y)
        if ctx_dim:
            params += 2 * ch + attention_params(ch, ch, ctx_dim)
            flops += 2 * linear_flops(tokens, ch, ch) + 2 * linear_flops(n * ctx_len, ctx_dim, ch)
            flops += sdpa_flops(n * heads, h * w, ctx_len, ch // heads)
            peak.append(6 * f + 2 * n * ctx_len * ch)
        peak.append(3 * f + feedforward_peak(tokens, ch, 4 * ch))
        return Cost(params, flops, max(peak))
    if plan.kind == "attn_out":
        return Cost(linear_params(cin, cin), linear_flops(n * h * w, cin, cin), 2 * f_in)
    raise ValueError(f"unknown unit kind {plan.kind!r}")
