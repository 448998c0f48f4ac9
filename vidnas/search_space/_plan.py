"""The plan of a latent video UNet: its *units*, their wiring, shapes and costs.

A unit is the smallest piece whose cost is measured on its own: the time embedding,
``conv_in``, a residual block, the two halves of a spatial transformer, a temporal
slot, a down/upsampler, ``conv_out``. :func:`build_plan` lists the units of an
:class:`ArchSpec` in execution order with their shapes and a *signature* (everything
their latency depends on); :class:`~vidnas.search_space.VideoUNet` runs the same plan,
so the network a latency table predicts and the network that is built cannot drift
apart. Nothing here imports torch.

Wiring between units is explicit in each :class:`UnitPlan`: a unit may push its
output on the skip stack (down path), pop a skip to concatenate (up path), or push
and pop the residual of a spatial transformer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

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
from vidnas.search_space._registry import SlotShape, get_temporal_op
from vidnas.search_space._spec import ArchSpec

__all__ = ["UnitPlan", "build_plan", "signature_id", "slot_cost", "unit_cost"]


def signature_id(signature: Mapping[str, Any]) -> str:
    """Stable short hash of a signature dict."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class UnitPlan:
    """One unit of the network and its wiring.

    Shapes are per frame ``(C, H, W)``; the batch is ``B*T``.
    """

    name: str  # e.g. "down.0.1.resblock" or, for a temporal slot, the slot name "down.0.1.res"
    kind: str  # time_embed | conv_in | resblock | attn_in | attn_out | temporal | downsample | upsample | conv_out
    config: Mapping[str, Any]  # constructor arguments; with the shapes, all that determines cost
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    frames: int
    pop: str | None = None  # "skip" or "residual": the stack this unit reads its second input from
    aux_shape: tuple[int, int, int] | None = None  # shape of that popped tensor
    push: str | None = None  # "skip" (push output) or "residual" (push input before running)
    slot: str | None = None  # temporal slot name, for temporal units
    level: int | None = None

    @property
    def signature(self) -> dict[str, Any]:
        """Everything this unit's latency depends on (besides batch, dtype and device)."""
        if self.kind == "temporal":
            op = get_temporal_op(self.config["op"])
            params = self.config["params"]
            shape = slot_shape(self)
            return {"kind": "temporal", **op.cost_signature(params, shape)}
        sig = {"kind": self.kind, **self.config, "in_shape": list(self.in_shape), "frames": self.frames}
        if self.aux_shape is not None:
            sig["aux_shape"] = list(self.aux_shape)
        return sig

    @property
    def signature_id(self) -> str:
        return signature_id(self.signature)

    @property
    def is_identity(self) -> bool:
        return self.kind == "temporal" and self.config["op"] == "none"

    @property
    def channels_last_input(self) -> bool:
        """Whether the main input arrives as a channels-last view: inside a spatial
        transformer (the ``attn`` slot and the transformer's second half)."""
        return self.kind == "attn_out" or (self.kind == "temporal" and self.config.get("channels_last", False))

    @property
    def needs_temb(self) -> bool:
        """Whether the unit reads the time embedding."""
        if self.kind == "temporal":
            return get_temporal_op(self.config["op"]).uses_temb(self.config["params"])
        return self.kind == "resblock"

    @property
    def needs_context(self) -> bool:
        """Whether the unit reads the conditioning tokens."""
        if self.kind == "temporal":
            return get_temporal_op(self.config["op"]).uses_context
        return self.kind == "attn_in" and bool(self.config.get("context_dim"))


def slot_shape(plan: UnitPlan) -> SlotShape:
    """The :class:`SlotShape` a temporal unit offers its op."""
    c = plan.config
    return SlotShape(
        channels=plan.in_shape[0], frames=plan.frames, height=plan.in_shape[1], width=plan.in_shape[2],
        temb_channels=c["temb_channels"], context_dim=c["context_dim"], context_tokens=c["context_tokens"],
        norm_groups=c["norm_groups"], head_dim=c["head_dim"], channels_last=c.get("channels_last", False),
    )


def build_plan(spec: ArchSpec) -> list[UnitPlan]:
    """The units of ``spec`` in execution order."""
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
        cfg = {"in_channels": cin, "out_channels": cout, "temb_channels": temb, "norm_groups": bb.norm_groups}
        add(name, "resblock", cfg, shape, out, pop="skip" if aux else None, aux_shape=aux, level=level)
        return out

    def temporal(slot: str, level: int, shape: tuple) -> None:
        choice = spec.temporal[slot]
        cfg = {"op": choice.op, "params": dict(choice.params), "temb_channels": temb, "context_dim": ctx,
               "context_tokens": bb.context_tokens if ctx else None, "norm_groups": bb.norm_groups,
               "head_dim": bb.head_dim, "channels_last": slot.endswith(".attn")}
        add(slot, "temporal", cfg, shape, shape, slot=slot, level=level)

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
                                     "num_added_time_ids": n_ids}, (0, 1, 1), (temb, 1, 1))
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


def unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one unit on ``batch`` clips (see ``_cost`` for conventions).

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


def slot_cost(op: str, params: Mapping[str, Any], shape: SlotShape, batch: int) -> Cost | None:
    """Closed-form cost of a :class:`TemporalSlot`; ``None`` when the op declares no cost."""
    opdef = get_temporal_op(op)
    if op == "none":
        return Cost(0, 0, 0)
    if opdef.cost is None:
        return None
    stride = int(params.get("temporal_stride", 1))
    branch = opdef.cost(shape.with_frames(shape.frames // stride), params, batch)
    residual = params.get("merge", "residual") == "residual"
    n_params = branch.params + (0 if residual else 1)
    f = batch * shape.frames * shape.channels * shape.height * shape.width
    join = f + (f if residual else 2 * f)  # the delta, [its weighted copy,] the sum
    if stride == 1:
        return Cost(n_params, branch.flops, max(branch.peak, join))
    coarse = f // stride
    causal = opdef.is_causal(params)
    peak = max(
        coarse + branch.peak,  # pooled input alive while the branch runs
        coarse + f + (f if causal else 0),  # repeated (and delayed) output
        coarse + join,
    )
    return Cost(n_params, branch.flops, peak)
