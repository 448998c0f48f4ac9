"""Token ops: the sub-layers of a video diffusion transformer's blocks, one registration each.

Tensor contract (one for every op that accepts the ``tokens`` layout)
----------------------------------------------------------------------
An op at a ``tokens`` slot is wrapped by :class:`~vidnas.search_space.ops.token_branches.TokenSlot`
and called as::

    y = slot(x, cond)

* ``x``: ``(B, T*H*W, D)``: the tokens of ``B`` clips, raster order (frame, row, column),
  ``D`` = ``SlotShape.channels``, the grid ``(T, H, W)`` = ``SlotShape.frames/height/width``;
* ``cond``: a :class:`~vidnas.search_space.ops.token_branches.TokenConditioning` with
  ``grid`` ``(T, H, W)``; ``modulation`` ``(B, rows, D)``: the shared time projection whose rows
  ``[modulation_row, modulation_row + 3)`` (a slot fact) are this op's shift, scale and gate;
  ``rotary``: cosines and sines ``(T*H*W, head_dim/2)`` of each token's 3-D position;
  ``context`` ``(B, L, D)``: text tokens after the text projection; ``temb`` ``(B, D)``;
  ``frame_offset``: the clip frame of ``x``'s first frame (non-zero only while streaming);
* ``y``: same shape as ``x``.

Joint text (a backbone with ``text_mode`` joint, CogVideoX): the slot fact ``prefix_tokens`` is
``L`` > 0 and ``x`` is ``(B, L + T*H*W, D)``, the ``L`` projected text tokens first, then the grid;
``cond.prefix`` is ``L`` and ``cond.temb`` ``(B, temb_dim)`` feeds the expert modulation (per
sub-layer a shift, scale and gate for the video tokens and another for the text tokens). What
text tokens attend and what attends them, per op:

* ``tok_full``: every token, text or video, attends every token of the clip, text and video
  (CogVideoX's joint 3-D attention), and its output updates both;
* ``tok_ff``: each token alone; text tokens take the text rows of the modulation;
* ``none``: nothing changes;
* every other token op (windowed, factorised, causal, sparse, cross-attention) refuses a joint
  slot at validation with a :class:`SpecError` naming the slot, the op and why;
* a ``frames`` op at the ``temporal`` slot (``families/dit/network``) sees the grid alone: the text tokens pass it
  unchanged, attending nothing and attended by nothing there.

The op itself is a *branch* ``delta = branch(x, cond)``; the slot returns ``x + delta``.
Attention and feed-forward branches are modulated and gated as Wan's blocks are
(``delta = gate * f(norm(x) * (1 + scale) + shift)``, each op holding its own rows of the
block's AdaLN table), and their output projection starts at zero, so an op inserted into a
trained network starts as the identity; a preset reproducing a model loads its weights.
Slot facts (``SlotShape.extras``): ``eps``, ``norm``, ``modulation``, ``modulation_row``,
``positions`` and ``qk_norm`` (attention), ``cross_attn_norm`` (cross-attention),
``ffn_dim`` and ``ff_activation`` (feed-forward); ``head_dim`` is the backbone's, ``temb_channels``
the time embedding's width. Present only where a model sets them: ``qk_eps`` (the query/key
norms' own epsilon, LTX-Video, CogVideoX), ``per_frame`` (cross-attention projecting the text's
keys and values for every frame, Latte) and ``prefix_tokens`` (joint text, CogVideoX).
With ``rope_ltx`` positions the rotary tables are ``(T*H*W, D/2)``, across heads; an op with
fewer heads rotates by their first columns.

Causal ops never let a token of frame ``t`` depend on a frame after the end of ``t``'s
chunk (``causal_block_frames``); ops that never mix frames (spatial attention, cross-
attention, the feed-forward) are causal with chunks of one frame and stream trivially.
Streaming ops' branches offer ``stream(x, cond, state, commit=...)``: ``x`` is the next
chunk, ``cond.frame_offset`` its first frame and ``cond.rotary`` its positions; cached
ops keep keys and values in ``state`` (a dict the caller owns).

Costs follow ``_cost``'s conventions; every pattern computes exactly the products its
formula counts (groups attended densely inside, never a mask over the dense product).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._cost import Cost, linear_flops, linear_params, sdpa_flops
from vidnas.search_space._registry import OpParam, SlotShape, register_temporal_op
from vidnas.search_space.ops.params import default_heads

TOKENS = ("tokens",)

HEADS = OpParam("heads", int, default_heads,
                "attention heads of width head_dim (fewer than C // head_dim funnels the attention)", minimum=1)
CHUNK = OpParam("chunk", int, 1, "latent frames per causal chunk: bidirectional inside, causal across (CausVid: 3)",
                minimum=1)
WINDOW_CHUNKS = OpParam("window", int, 2, "earlier chunks each chunk attends besides its own (the rolling KV cache)",
                        minimum=1)
TILE_T = OpParam("tile_t", int, 1, "tile extent in token frames", minimum=1)
TILE_H = OpParam("tile_h", int, 4, "tile extent in token rows", minimum=1)
TILE_W = OpParam("tile_w", int, 4, "tile extent in token columns", minimum=1)
REACH = OpParam("reach", int, 1, "tiles each side a tile's queries see along every axis (0: its own tile only)",
                minimum=0, maximum=3)
SPATIAL_HEADS = OpParam("spatial_heads", int, lambda shape: max(1, default_heads(shape) // 2),
                        "heads that attend inside their frame; the others attend across frames", minimum=1)
FF_FUNNEL = OpParam("funnel", float, 1.0, "feed-forward hidden width = funnel * ffn_dim (MobileVD's funnel)",
                    minimum=0.0625, maximum=1.0)


# Shapes and costs ----------------------------------------------------------------------------


def _grid(shape: SlotShape) -> tuple[int, int, int]:
    return shape.frames, shape.height, shape.width


def _extra(shape: SlotShape, key: str) -> Any:
    value = shape.extra(key)
    if value is None:
        raise SpecError("slot", shape.layout, f"offers no `{key}`; token ops need the facts of a transformer slot")
    return value


def ff_hidden(shape: SlotShape, params: Mapping[str, Any]) -> int:
    return max(1, round(_extra(shape, "ffn_dim") * params["funnel"]))


def _attention_params(channels: int, inner: int, qk_norm: str, head_dim: int = 0) -> int:
    """q/k/v/out projections with biases, and the query/key norms' weights (RMS over all heads: a weight;
    per-head LayerNorm: a weight and a bias of one head's width)."""
    norms = {"rms_across_heads": 2 * inner, "layer_norm": 4 * head_dim}.get(qk_norm, 0)
    return 4 * channels * inner + 3 * inner + channels + norms


def prefix_tokens(shape: SlotShape) -> int:
    """Joint text tokens ahead of the grid in this slot's tokens (0 unless the backbone's text is joint)."""
    return shape.extra("prefix_tokens", 0)


def slot_tokens(shape: SlotShape) -> int:
    """Tokens per clip the slot's op reads: the joint text prefix, then the T*H*W grid."""
    return prefix_tokens(shape) + shape.frames * shape.height * shape.width


def modulation_cost(shape: SlotShape, batch: int) -> tuple[int, int, int]:
    """``(params, flops, rows alive)`` of a sub-layer's modulation and its norm's affine weights."""
    c = shape.channels
    norm = 2 * c if _extra(shape, "norm") == "layer_norm_affine" else 0
    if _extra(shape, "modulation") == "expert":
        temb = shape.temb_channels
        return linear_params(temb, 6 * c) + norm, linear_flops(batch, temb, 6 * c), 6 * batch * c
    return 3 * c + norm, 0, 3 * batch * c


def _joint_stages(f: int, fl: int) -> list[int]:
    """Joint text: the modulated input (text and video normed apart, then joined; ``f`` all tokens,
    ``fl`` the text's) and the gated output (the delta, its two gated parts, their join)."""
    return [fl + 2 * (f - fl), 2 * f, 3 * f]


def _attention_core(shape: SlotShape, params: Mapping[str, Any]) -> tuple[int, int, int]:
    heads = params["heads"]
    return heads, shape.head_dim, heads * shape.head_dim


def pattern_flops(pattern: str, shape: SlotShape, params: Mapping[str, Any], batch: int) -> int:
    """Multiply-accumulates x 2 of the attention products a pattern computes (not the projections)."""
    t, h, w = _grid(shape)
    hw, n = h * w, t * h * w
    heads, d, _ = _attention_core(shape, params)
    if pattern == "full":  # with joint text, every token (text and video) attends every token
        n += prefix_tokens(shape)
        return sdpa_flops(batch * heads, n, n, d)
    if pattern == "spatial":
        return sdpa_flops(batch * t * heads, hw, hw, d)
    if pattern == "temporal":
        return sdpa_flops(batch * hw * heads, t, t, d)
    if pattern == "factorised":
        return sdpa_flops(batch * t * heads, hw, hw, d) + sdpa_flops(batch * hw * heads, t, t, d)
    if pattern == "sparse_heads":
        s = params["spatial_heads"]
        return sdpa_flops(batch * t * s, hw, hw, d) + sdpa_flops(batch * hw * (heads - s), t, t, d)
    if pattern == "tiles":
        tile = (params["tile_t"], params["tile_h"], params["tile_w"])
        size, tiles = math.prod(tile), n // math.prod(tile)
        return sdpa_flops(batch * tiles * heads, size, window_tiles(shape, params) * size, d)
    if pattern in ("blockcausal", "causal_window"):
        chunk = params["chunk"]
        window = params.get("window", -1) if pattern == "causal_window" else -1
        q = chunk * hw
        seen = [j + 1 if window < 0 else min(j, window) + 1 for j in range(t // chunk)]  # chunks chunk j sees
        return sum(sdpa_flops(batch * heads, q, chunks * q, d) for chunks in seen)
    raise ValueError(f"unknown attention pattern {pattern!r}")


def window_tiles(shape: SlotShape, params: Mapping[str, Any]) -> int:
    """Tiles a query tile attends: 2 * reach + 1 per axis, fewer where the grid has fewer tiles."""
    tile = (params["tile_t"], params["tile_h"], params["tile_w"])
    return math.prod(min(2 * params["reach"] + 1, g // a) for g, a in zip(_grid(shape), tile))


# Peak memory: the stages of each branch in ``ops/token_branches``, in elements (see ``_cost``).
# f: tokens x D; fi: tokens x heads*head_dim; m: tokens (a norm's statistics); lse: the attention
# kernel's log-sum-exp, one per query and head. Sub-layers hold their three AdaLN rows throughout.


def _time_copies(batch: int, t: int, hw: int) -> bool:
    """Whether the frames-of-a-location layout copies q, k and v (it is a view for one clip) and so the
    attention output back (the kernel's output follows the query's memory layout)."""
    return batch > 1 and t > 1 and hw > 1


def _projection_peak(f: int, fi: int, m: int, shape: SlotShape, heads: int = 1) -> int:
    """The modulated input alive while q, then k (normed and rotated one after the other), then v are made."""
    rms = _extra(shape, "qk_norm") == "rms_across_heads"
    rope = _extra(shape, "positions") in ("rope3d", "rope_ltx")
    if _extra(shape, "qk_norm") == "layer_norm":  # per head: each norm's mean and rstd per token and head
        return f + (4 * fi if rope else 3 * fi + 2 * m * heads)
    return f + (4 * fi + (m if rms else 0) if rms or rope else 3 * fi)


def _pattern_peak(pattern: str, shape: SlotShape, params: Mapping[str, Any], batch: int, fi: int) -> int:
    """Elements alive while the pattern runs on q, k and v (held by the caller: 3 fi)."""
    t, h, w = _grid(shape)
    hw, n = h * w, t * h * w
    heads = params["heads"]
    lse = batch * heads * (n + prefix_tokens(shape))
    if pattern in ("full", "spatial"):
        return 4 * fi + lse
    if pattern in ("temporal", "factorised"):
        copies = _time_copies(batch, t, hw)
        return max(3 * fi + (3 * fi if copies else 0) + fi + lse, 4 * fi + (fi if copies else 0))
    if pattern == "sparse_heads":
        fs = fi * params["spatial_heads"] // heads
        ft = fi - fs
        copies = _time_copies(batch, t, hw)
        return max(3 * fi + fs + batch * params["spatial_heads"] * n,
                   3 * fi + fs + (3 * ft if copies else 0) + ft + batch * (heads - params["spatial_heads"]) * n,
                   3 * fi + fs + ft + (ft if copies else 0), 5 * fi)
    if pattern == "tiles":
        return ((5 + 2 * window_tiles(shape, params)) * fi if params["reach"] else 7 * fi) + lse
    chunks = t // params["chunk"]
    return 4 * fi + lse if chunks == 1 else 5 * fi


def self_attention_peak(pattern: str, shape: SlotShape, params: Mapping[str, Any], batch: int) -> int:
    c = shape.channels
    heads, _, inner = _attention_core(shape, params)
    m = batch * slot_tokens(shape)
    f, fi = m * c, m * inner
    rows = modulation_cost(shape, batch)[2]  # the sub-layer's AdaLN rows
    stages = [2 * f + batch * c, _projection_peak(f, fi, m, shape, heads),
              _pattern_peak(pattern, shape, params, batch, fi), fi + f, 2 * f]
    if prefix_tokens(shape):
        stages += _joint_stages(f, batch * prefix_tokens(shape) * c)
    if pattern == "factorised":  # the second, temporal, sub-layer runs with the first's output alive
        spatial = _pattern_peak("spatial", shape, params, batch, fi)
        stages[2] = max(spatial, f + stages[2])
        stages += [3 * f + batch * c, 2 * f + stages[1], 2 * f + fi, 3 * f]
    return rows + max(stages)


def self_attention_cost(pattern: str, shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
    """Closed-form cost of a :class:`SelfAttentionBranch` with ``pattern``."""
    c = shape.channels
    heads, d, inner = _attention_core(shape, params)
    rows = batch * slot_tokens(shape)
    sublayers = 2 if pattern == "factorised" else 1
    mod_params, mod_flops, _ = modulation_cost(shape, batch)
    n_params = mod_params + sublayers * _attention_params(c, inner, _extra(shape, "qk_norm"), d)
    flops = mod_flops + sublayers * (3 * linear_flops(rows, c, inner) + linear_flops(rows, inner, c))
    flops += pattern_flops(pattern, shape, params, batch)
    return Cost(n_params, flops, self_attention_peak(pattern, shape, params, batch))


def cross_attention_cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
    c, length = shape.channels, shape.context_tokens
    heads, d, inner = _attention_core(shape, params)
    m = batch * shape.frames * shape.height * shape.width
    # Keys and values of the text: once per clip, or once per frame (the slot fact ``per_frame``).
    copies = batch * shape.frames if shape.extra("per_frame", False) else batch
    f, fi, ci, cm = m * c, m * inner, copies * length * inner, copies * length
    normed = _extra(shape, "cross_attn_norm")
    rms = _extra(shape, "qk_norm") == "rms_across_heads"
    # A per-head LayerNorm: its output beside the projection, and its mean and rstd per token and head.
    per_head = _extra(shape, "qk_norm") == "layer_norm"
    n_params = _attention_params(c, inner, _extra(shape, "qk_norm"), d) + (2 * c if normed else 0)
    flops = linear_flops(m, c, inner) + 2 * linear_flops(cm, shape.context_dim, inner)
    flops += sdpa_flops(batch * heads, m // batch, length, d) + linear_flops(m, inner, c)
    # Alive while q, k and v are made: the normed input, and the text's per-frame copies.
    a = (f if normed else 0) + (cm * shape.context_dim if copies != batch else 0)
    stages = [f + 2 * m if normed else 0,
              a,
              a + (3 * fi + m if rms else 2 * fi + 2 * m * heads if per_head else fi),  # q (normed)
              a + fi + (3 * ci + cm if rms else 2 * ci + 2 * cm * heads if per_head else ci),  # k (normed)
              a + fi + 2 * ci,
              2 * fi + 2 * ci + batch * heads * (m // batch),  # attention
              fi + f]  # output projection
    return Cost(n_params, flops, max(stages))


def feedforward_cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
    c, hidden = shape.channels, ff_hidden(shape, params)
    m = batch * slot_tokens(shape)
    f, fh = m * c, m * hidden
    mod_params, mod_flops, rows = modulation_cost(shape, batch)
    n_params = mod_params + c * hidden + hidden + hidden * c + c
    stages = [2 * f + batch * c, f + fh, 2 * fh]
    if prefix_tokens(shape):
        stages += _joint_stages(f, batch * prefix_tokens(shape) * c)
    return Cost(n_params, mod_flops + linear_flops(m, c, hidden) + linear_flops(m, hidden, c), rows + max(stages))


# Checks ---------------------------------------------------------------------------------------
# Joint text (the backbone's ``text_mode`` joint, a slot fact ``prefix_tokens``): the text tokens lead
# the slot's tokens. Only ops that can treat them as the contract of _ops_tokens states accept it;
# every other token op refuses the slot at validation, naming the slot, the op and why.

JOINT_TEXT_OPS = ("tok_full", "tok_ff")


def _refuse_joint(op: str, shape: SlotShape, field: str, why: str) -> None:
    if prefix_tokens(shape):
        slot = field[: -len(".params")] if field.endswith(".params") else field
        raise SpecError(f"{slot}.op" if slot.startswith("temporal.") else slot, op,
                        f"cannot run on a backbone whose text tokens travel with the video tokens (text_mode "
                        f"joint): {why}", f"use one of {list(JOINT_TEXT_OPS)} or `none` there")


_PATTERN_WHY = ("its pattern limits which video tokens a query sees, and joint text attention (the text "
                "attending every video token, every video token attending the text) is not defined for it")


def _check_attention(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    for key in ("eps", "norm", "modulation", "modulation_row", "positions", "qk_norm"):
        _extra(shape, key)


def _check_chunk(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_attention(shape, params, field)
    if shape.frames % params["chunk"]:
        raise SpecError(f"{field}.chunk", params["chunk"], f"does not divide the {shape.frames} token frames of "
                        "this slot", "use a divisor of the latent frames (after the temporal patch)")


def _check_tiles(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_attention(shape, params, field)
    for axis, size in zip("thw", _grid(shape)):
        tile = params[f"tile_{axis}"]
        if size % tile:
            divisors = [k for k in range(1, size + 1) if size % k == 0]
            raise SpecError(f"{field}.tile_{axis}", tile, f"does not divide the {size} tokens of this slot's axis",
                            f"use one of {divisors}")


def _check_heads_split(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _check_attention(shape, params, field)
    if not 1 <= params["spatial_heads"] < params["heads"]:
        raise SpecError(f"{field}.spatial_heads", params["spatial_heads"],
                        f"must leave at least one temporal head of the {params['heads']}", "use 1 .. heads - 1")


def _check_cross(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    _refuse_joint("tok_xattn", shape, field, "the text tokens are already in the block's token sequence, "
                  "which tok_full attends jointly; there is no separate text context to cross-attend")
    if not shape.context_dim:
        raise SpecError(field, "tok_xattn", "the backbone has no text conditioning (text_dim is 0)")
    for key in ("eps", "cross_attn_norm", "qk_norm"):
        _extra(shape, key)


def _check_ff(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
    for key in ("eps", "norm", "modulation", "modulation_row", "ffn_dim", "ff_activation"):
        _extra(shape, key)


# Registrations ---------------------------------------------------------------------------------


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _one_frame_tiles(params: Mapping[str, Any]) -> bool:
    """Tiles of one frame that see no neighbouring tile never mix frames."""
    return params.get("tile_t", TILE_T.default) == 1 and params.get("reach", REACH.default) == 0


def _extras(shape: SlotShape) -> dict[str, Any]:
    return dict(shape.extras)


def _self_attention(pattern: str):
    def build(shape: SlotShape, params: Mapping[str, Any]):
        from vidnas.search_space.ops import token_branches as tb

        heads, d, _ = _attention_core(shape, params)
        extras = _extras(shape)
        if pattern == "full":
            return tb.SelfAttentionBranch(shape.channels, heads, d, extras, tb.full_pattern,
                                          temb_dim=shape.temb_channels)
        if pattern == "factorised":
            return tb.FactorisedBranch(shape.channels, heads, d, extras)
        if pattern in ("blockcausal", "causal_window"):
            window = params["window"] if pattern == "causal_window" else -1
            return tb.CausalSelfAttentionBranch(shape.channels, heads, d, extras, chunk=params["chunk"], window=window)
        if pattern == "tiles":
            tile = (params["tile_t"], params["tile_h"], params["tile_w"])
            function = tb.TilePattern(_grid(shape), tile, params["reach"])
        elif pattern == "sparse_heads":
            function = tb.head_split_pattern(params["spatial_heads"])
        else:
            patterns = {"full": tb.full_pattern, "spatial": tb.spatial_pattern, "temporal": tb.temporal_pattern}
            function = patterns[pattern]
        return tb.SelfAttentionBranch(shape.channels, heads, d, extras, function)

    def cost(shape: SlotShape, params: Mapping[str, Any], batch: int) -> Cost:
        return self_attention_cost(pattern, shape, params, batch)

    return build, cost


def _joint_guard(name: str, check: Any) -> Any:
    """``check``, after refusing a joint-text slot for every op not in :data:`JOINT_TEXT_OPS`."""
    if name in JOINT_TEXT_OPS:
        return check

    def guarded(shape: SlotShape, params: Mapping[str, Any], field: str) -> None:
        _refuse_joint(name, shape, field, _PATTERN_WHY)
        check(shape, params, field)

    return guarded


def _register_attention(name: str, pattern: str, summary: str, reference: str, params: tuple[OpParam, ...] = (),
                        **kwargs: Any) -> None:
    build, cost = _self_attention(pattern)
    check = _joint_guard(name, kwargs.pop("check_shape", _check_attention))
    register_temporal_op(name, summary=summary, params=(HEADS, *params), uses_temb=_always, check_shape=check,
                         cost=cost, layouts=TOKENS, reference=reference, **kwargs)(build)


_register_attention(
    "tok_full", "full", "full 3-D self-attention over all T*H*W tokens of a clip, and the joint text tokens "
    "when the backbone has them (Wan 2.1, CogVideoX)",
    "diffusers transformer_wan.py WanTransformerBlock.attn1; cogvideox_transformer_3d.py CogVideoXBlock.attn1")
_register_attention(
    "tok_spatial", "spatial", "self-attention inside each frame (the spatial half of Latte / STDiT)",
    "Latte (arXiv 2401.03048) spatial blocks", is_causal=_always, supports_streaming=_always)
_register_attention(
    "tok_temporal", "temporal", "self-attention across frames at each location (the temporal half of Latte / STDiT)",
    "Latte (arXiv 2401.03048) temporal blocks")
_register_attention(
    "tok_factorised", "factorised", "spatial then temporal self-attention, two gated sub-layers (Open-Sora STDiT)",
    "hpcaitech/Open-Sora STDiT; Latte's factorised variant")
_register_attention(
    "tok_window", "tiles",
    "attention within 3-D tiles of tokens; with reach > 0 each tile sees the tiles around it (Sliding Tile Attention)",
    "FastVideo Sliding Tile Attention (arXiv 2502.04507)", params=(TILE_T, TILE_H, TILE_W, REACH),
    check_shape=_check_tiles, is_causal=_one_frame_tiles, supports_streaming=_one_frame_tiles)
_register_attention(
    "tok_blockcausal", "blockcausal",
    "3-D attention, bidirectional within a chunk of frames, causal across chunks (CausVid); KV cache",
    "tianweiy/CausVid causal_model.py (block mask), causal_inference.py (cache)", params=(CHUNK,),
    check_shape=_check_chunk, is_causal=_always, supports_streaming=_always, causal_block=lambda p: p["chunk"])
_register_attention(
    "tok_causal_window", "causal_window",
    "block-causal 3-D attention seeing only the previous `window` chunks (Self Forcing's rolling KV cache)",
    "guandeh17/Self-Forcing (rolling KV cache)", params=(CHUNK, WINDOW_CHUNKS), check_shape=_check_chunk,
    is_causal=_always, supports_streaming=_always, causal_block=lambda p: p["chunk"])
_register_attention(
    "tok_sparse_heads", "sparse_heads",
    "sparse heads: some attend inside their frame, the rest across frames (Sparse VideoGen's head split, static)",
    "Sparse VideoGen (arXiv 2502.01776)", params=(SPATIAL_HEADS,), check_shape=_check_heads_split)


def _build_cross(shape: SlotShape, params: Mapping[str, Any]):
    from vidnas.search_space.ops.token_branches import CrossAttentionBranch

    return CrossAttentionBranch(shape.channels, params["heads"], shape.head_dim, _extras(shape))


register_temporal_op(
    "tok_xattn", summary="cross-attention from the tokens to the text tokens (Wan's attn2, affine-normed input)",
    params=(HEADS,), is_causal=_always, uses_context=True, supports_streaming=_always, check_shape=_check_cross,
    cost=cross_attention_cost, layouts=TOKENS, reference="diffusers transformer_wan.py WanTransformerBlock.attn2",
)(_build_cross)


def _build_ff(shape: SlotShape, params: Mapping[str, Any]):
    from vidnas.search_space.ops.token_branches import FeedForwardBranch

    return FeedForwardBranch(shape.channels, ff_hidden(shape, params), _extras(shape), temb_dim=shape.temb_channels)


register_temporal_op(
    "tok_ff", summary="the block's modulated, gated feed-forward; `funnel` narrows its hidden width (MobileVD)",
    params=(FF_FUNNEL,), is_causal=_always, uses_temb=_always, supports_streaming=_always, check_shape=_check_ff,
    cost=feedforward_cost, layouts=TOKENS, reference="diffusers transformer_wan.py WanTransformerBlock.ffn",
)(_build_ff)
