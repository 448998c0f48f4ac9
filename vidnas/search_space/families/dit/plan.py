"""The video diffusion transformer family: its plan of units, their closed-form costs, its registration.

Units, in execution order (each timed on its own in a latency table):

* ``time_embed`` (conditioning): sinusoidal timestep features -> time embedding ``temb`` and
  the shared time projection (the AdaLN rows every block reads), stacked ``(B, 1 + 6, D)``; with
  ``expert`` modulation (each sub-layer projects ``temb`` itself) ``temb`` alone, ``(B, 1, time_dim)``;
* ``text_embed`` (conditioning, when the backbone has text): ``(B, L, text_dim) -> (B, L, D)``;
* ``patch_embed``: latent frames ``(B*T, C, H, W)`` -> tokens ``(B, T'*H'*W', D)`` (plus a 2-D
  sin-cos table with ``sincos2d`` positions, a 3-D one with ``sincos3d``; after the projected text
  tokens with joint text: ``(B, L + T'*H'*W', D)``, the plan's ``out_prefix`` = ``L``, as every
  slot's ``in_prefix``/``out_prefix`` and the head's ``in_prefix``);
* ``frame_pos`` (with ``frame_pos_block`` >= 0, before that block's slots): a 1-D sin-cos table
  over frames added to the tokens (Latte's temporal positions);
* per block ``i`` its slots ``block.{i}.attn``, ``block.{i}.temporal``, ``block.{i}.cross``,
  ``block.{i}.ff`` (slot units, kind ``temporal``: the op chosen there);
* ``head``: the modulated output norm (``expert``: a final norm, then an AdaLayerNorm, CogVideoX's),
  the projection to patches and the unpatchify back to latent frames ``(B*T, C_out, H, W)``.

Per-frame shapes follow ``_plan``: a token unit's shape is ``(D, H', W')`` with ``T'`` frames.
The rotary tables are computed with the conditioning (no multiply-accumulates; their memory
is counted in :meth:`DiTFamily.conditioning_elements`), as are sine-cosine positions. Modules are in
``families/dit/network`` (torch).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vidnas.search_space._cost import Cost, conv_flops, conv_params, linear_flops, linear_params
from vidnas.search_space._plan import UnitPlan, slot_config, slot_cost, slot_shape
from vidnas.search_space.families.dit.spec import DiTBackbone

if TYPE_CHECKING:
    from vidnas.search_space._spec import ArchSpec

__all__ = ["dit_plan", "dit_unit_cost"]


def dit_plan(spec: ArchSpec) -> list[UnitPlan]:
    """The units of a DiT ``spec`` in execution order."""
    bb: DiTBackbone = spec.backbone
    d, (tt, th, tw) = bb.dim, bb.grid
    pt = bb.patch_size[0]
    tokens = (d, th, tw)
    frames_out = None if pt == 1 else bb.frames
    prefix = bb.prefix_tokens  # joint text: the stream is the text tokens, then the grid
    temb = bb.temb_dim
    units = [UnitPlan("time_embed", "time_embed", {"dim": temb, "freq_dim": bb.freq_dim, "rows": bb.modulation_rows},
                      (0, 1, 1), (temb, 1, 1), tt, family="dit", conditioning=True)]
    if bb.text_dim:
        text = {"text_dim": bb.text_dim, "dim": d}
        if bb.text_projection != "mlp":
            text["projection"] = bb.text_projection
        units.append(UnitPlan("text_embed", "text_embed", text, (bb.text_dim, bb.text_tokens, 1),
                              (d, bb.text_tokens, 1), tt, family="dit", conditioning=True))
    patch: dict = {"in_channels": bb.in_channels, "dim": d, "patch_size": list(bb.patch_size)}
    if bb.positions == "sincos2d":  # only then: Wan's unit keeps its signature
        patch.update(positions=bb.positions, pos_base=bb.pos_base, pos_interpolation=bb.pos_interpolation)
    elif bb.positions == "sincos3d":
        patch["positions"] = bb.positions
    if prefix:
        patch["prefix"] = prefix
    units += [
        UnitPlan("patch_embed", "patch_embed", patch, (bb.in_channels, bb.latent_height, bb.latent_width), tokens,
                 bb.frames, family="dit", out_frames_=None if pt == 1 else tt, out_prefix=prefix),
    ]
    for slot in bb.slots():
        if slot.level == bb.frame_pos_block and slot.position == "attn":
            units.append(UnitPlan("frame_pos", "frame_pos", {"dim": d}, tokens, tokens, tt, family="dit"))
        choice = spec.temporal[slot.name]
        units.append(UnitPlan(slot.name, "temporal", slot_config(choice.op, choice.params, slot.shape), tokens,
                              tokens, tt, slot=slot.name, level=slot.level, family="dit", in_prefix=prefix,
                              out_prefix=prefix))
    head: dict = {"dim": d, "out_channels": bb.out_channels, "patch_size": list(bb.patch_size), "eps": bb.eps,
                  "norm": bb.head_norm}
    if bb.modulation == "expert":
        head.update(modulation=bb.modulation, temb_dim=temb)
    if prefix:
        head["prefix"] = prefix
    units.append(UnitPlan("head", "head", head, tokens, (bb.out_channels, bb.latent_height, bb.latent_width), tt,
                          family="dit", out_frames_=frames_out, in_prefix=prefix))
    return units


def is_frames_slot(plan: UnitPlan) -> bool:
    """A slot whose op follows the frame contract (run on the tokens seen as frames)."""
    return plan.slot is not None and plan.config.get("layout", "frames") == "frames"


def dit_unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one DiT unit on ``batch`` clips (see ``_cost`` for conventions)."""
    c = plan.config
    if plan.kind == "temporal":
        cost = slot_cost(c["op"], c["params"], slot_shape(plan), batch)
        if cost is None or not is_frames_slot(plan) or plan.is_identity:
            return cost
        return Cost(cost.params, cost.flops, cost.peak + frames_adapter_elements(plan, batch, cost.peak))
    if plan.kind == "time_embed":
        return time_embed_cost(c, batch)
    if plan.kind == "text_embed":
        return text_embed_cost(plan, batch)
    if plan.kind == "patch_embed":
        return patch_embed_cost(plan, batch)
    if plan.kind == "head":
        return head_cost(plan, batch)
    if plan.kind == "frame_pos":
        return frame_pos_cost(plan, batch)
    raise ValueError(f"unknown unit kind {plan.kind!r}")


def frames_adapter_elements(plan: UnitPlan, batch: int, op_peak: int = 0) -> int:
    """What the tokens-as-frames adapter adds to a frames op's peak: the per-frame copies of the time
    embedding and context it reads (alive while it runs); with joint text, the copy of the grid's tokens
    (a slice of the stream: a view for one clip) and the output joined after the text tokens."""
    from vidnas.search_space._registry import get_temporal_op

    c = plan.config
    opdef = get_temporal_op(c["op"])
    n = batch * plan.frames
    extra = n * c["temb_channels"] if opdef.uses_temb(c["params"]) else 0
    if opdef.uses_context:
        extra += n * c["context_tokens"] * c["context_dim"]
    if not plan.in_prefix:
        return extra
    f = batch * plan.frames * math.prod(plan.in_shape)
    copy = f if batch > 1 else 0
    return extra + copy + max(0, f + plan.out_elements(batch) - op_peak)  # the op's output beside the join


def time_embed_cost(c: dict, batch: int) -> Cost:
    d, freq, rows = c["dim"], c["freq_dim"], c["rows"]
    params = linear_params(freq, d) + linear_params(d, d) + linear_params(d, rows * d)
    flops = linear_flops(batch, freq, d) + linear_flops(batch, d, d) + linear_flops(batch, d, rows * d)
    if not rows:  # the MLP alone: the sinusoidal features (their exponents, angles, sines, cosines, join), then
        # the features beside the first layer's output and its activation
        half = freq // 2
        return Cost(params, flops, max(half + 5 * batch * half, batch * (freq + 2 * d)))
    # temb, SiLU(temb) and the rows, then temb and the rows beside their stacked copy
    return Cost(params, flops, batch * d * max(2 + rows, 2 * (1 + rows)))


def text_embed_cost(plan: UnitPlan, batch: int) -> Cost:
    text, d, length = plan.config["text_dim"], plan.config["dim"], plan.in_shape[1]
    if plan.config.get("projection", "mlp") == "linear":
        return Cost(linear_params(text, d), linear_flops(batch * length, text, d), batch * length * d)
    params = linear_params(text, d) + linear_params(d, d)
    flops = linear_flops(batch * length, text, d) + linear_flops(batch * length, d, d)
    return Cost(params, flops, 2 * batch * length * d)  # the activation, then the output beside it


def patch_embed_cost(plan: UnitPlan, batch: int) -> Cost:
    c = plan.config
    cin, d = c["in_channels"], c["dim"]
    kernel = math.prod(c["patch_size"])
    f = batch * plan.out_frames * d * plan.out_shape[1] * plan.out_shape[2]
    # The convolution's output and its token-major copy (a 3-D patch reads the frames as a (B, C, T, H, W) view),
    # then the tokens beside their sum with the positions, and beside their join after the text tokens.
    peak = max(2 * f, f + plan.out_elements(batch)) if c.get("prefix") else 2 * f
    return Cost(conv_params(cin, d, kernel), conv_flops(f, cin, kernel), peak)


def frame_pos_cost(plan: UnitPlan, batch: int) -> Cost:
    """Adding a table (a buffer) to the tokens: no parameters, no multiply-accumulates, the sum."""
    return Cost(0, 0, batch * plan.frames * math.prod(plan.in_shape))


def head_cost(plan: UnitPlan, batch: int) -> Cost:
    c = plan.config
    d, patch = c["dim"], math.prod(c["patch_size"]) * c["out_channels"]
    rows = batch * plan.frames * plan.in_shape[1] * plan.in_shape[2]
    f, fo = rows * d, rows * patch
    affine = 2 * d if c["norm"] == "layer_norm_affine" else 0
    if c.get("modulation") == "expert":
        temb = c["temb_dim"]
        params = 2 * affine + linear_params(temb, 2 * d) + linear_params(d, patch)
        flops = linear_flops(batch, temb, 2 * d) + linear_flops(rows, d, patch)
        # SiLU(temb) and the rows; the final norm beside the second (with its mean and rstd per token), the
        # modulation; projection; unpatchify
        m = rows
        peak = 2 * batch * d + max(batch * temb, 2 * f + 2 * m, 2 * f + batch * d, f + fo, 2 * fo)
        return Cost(params, flops, peak)
    peak = 2 * batch * d + max(2 * f + batch * d, f + fo, 2 * fo)  # norm + modulation; projection; unpatchify
    return Cost(2 * d + affine + linear_params(d, patch), linear_flops(rows, d, patch), peak)
