"""Reference weights of LTX-Video, Latte and CogVideoX (diffusers) under the ``dit`` network's parameter names.

Each reference is recognised by its keys (``LTXVideoTransformer3DModel``: ``proj_in`` and
``transformer_blocks``; ``LatteTransformer3DModel``: ``temporal_transformer_blocks``;
``CogVideoXTransformer3DModel``: ``patch_embed.text_proj``; anything else is Wan's layout,
mapped in ``families/dit/network``). A translator turns one reference key into
``(our key, transform)`` pairs; :func:`transform` applies the transform to the tensor.

* LTX-Video's block ``i`` is our block ``i``: ``attn1`` the ``attn`` slot, ``attn2`` the
  ``cross`` slot, ``ff`` the ``ff`` slot; its ``(6, D)`` AdaLN table splits into the
  attention's rows 0-2 and the feed-forward's rows 3-5. ``proj_in`` (a linear layer on
  packed patches) is our patch convolution; ``proj_out`` orders a patch's outputs
  (channel, time, row, column), ours (time, channel, row, column).
* Latte's spatial block ``i`` is our block ``2 i`` (``attn1`` spatial attention, ``attn2`` the
  text cross-attention, ``ff``) and its temporal block ``i`` our block ``2 i + 1`` (``attn1``
  temporal attention, ``ff``): the order in which Latte runs them. ``proj_out`` orders a
  patch's outputs (row, column, channel).
* CogVideoX's (1.0: spatial patches) block ``i`` is our block ``i``: ``norm1`` (its expert
  AdaLN's linear layer and its affine LayerNorm) and ``attn1`` the ``attn`` slot, ``norm2`` and
  ``ff`` the ``ff`` slot; ``patch_embed.text_proj`` is the text projection, ``time_embedding``
  the time embedding's MLP, ``norm_final`` and ``norm_out`` the head's norms. Its patch order
  (channel, row, column) is ours: no tensor changes.

:func:`diffusers_forward` calls any of the three references on a vidnas network's tensors
(``sample`` ``(B, T, C, H, W)``, ``timestep``, ``context``), in the layout and with the
arguments its pipeline gives it (LTX-Video: patches packed into a sequence, positions in
seconds and pixels), and returns the prediction as ``(B, T, C_out, H, W)``: what the
equivalence tests and benchmarks compare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["diffusers_forward", "reference_layout", "translator", "transform"]

Targets = list[tuple[str, Any]]

_ATTENTION = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out", "norm_q": "norm_q",
              "norm_k": "norm_k"}
_SLOTS = {"attn1": "attn", "attn2": "cross"}
_FF = {"ff.net.0.proj": "ff.slot.branch.proj_in", "ff.net.2": "ff.slot.branch.proj_out"}


def reference_layout(state: Mapping[str, Any]) -> str:
    """``ltx``, ``latte``, ``cogvideox`` or ``wan``: which diffusers transformer ``state`` comes from."""
    keys = set(state)
    if any(k.startswith("temporal_transformer_blocks.") for k in keys):
        return "latte"
    if "patch_embed.text_proj.weight" in keys:
        return "cogvideox"
    if "proj_in.weight" in keys and any(k.startswith("transformer_blocks.") for k in keys):
        return "ltx"
    return "wan"


def _block_targets(rest: str, prefix: str) -> Targets:
    """A transformer block's key (after ``blocks.i.``) in our block ``prefix`` (``units.block_j``)."""
    if rest == "scale_shift_table":  # rows 0-2 belong to the attention op, 3-5 to the feed-forward
        return [(f"{prefix}_attn.slot.branch.modulation.table", ("table", slice(0, 3))),
                (f"{prefix}_ff.slot.branch.modulation.table", ("table", slice(3, 6)))]
    stem, leaf = rest.rsplit(".", 1)
    for theirs, slot in _SLOTS.items():
        for name, ours in _ATTENTION.items():
            if stem == f"{theirs}.{name}":
                return [(f"{prefix}_{slot}.slot.branch.attn.{ours}.{leaf}", None)]
    if stem in _FF:
        return [(f"{prefix}_{_FF[stem]}.{leaf}", None)]
    return []


def _fixed_targets(key: str, fixed: Mapping[str, tuple[str, Any]]) -> Targets | None:
    if key == "scale_shift_table":
        return [("units.head.table", ("table", slice(0, 2)))]
    stem, _, leaf = key.rpartition(".")
    if stem in fixed:
        target, how = fixed[stem]
        return [(f"{target}.{leaf}", how)]
    return None


_LTX_FIXED = {
    "time_embed.emb.timestep_embedder.linear_1": ("units.time_embed.time_embedder.linear_1", None),
    "time_embed.emb.timestep_embedder.linear_2": ("units.time_embed.time_embedder.linear_2", None),
    "time_embed.linear": ("units.time_embed.time_proj", None),
    "caption_projection.linear_1": ("units.text_embed.linear_1", None),
    "caption_projection.linear_2": ("units.text_embed.linear_2", None),
    "proj_in": ("units.patch_embed.proj", "packed_in"),
    "proj_out": ("units.head.proj", "channel_major_out"),
}

_LATTE_FIXED = {
    "adaln_single.emb.timestep_embedder.linear_1": ("units.time_embed.time_embedder.linear_1", None),
    "adaln_single.emb.timestep_embedder.linear_2": ("units.time_embed.time_embedder.linear_2", None),
    "adaln_single.linear": ("units.time_embed.time_proj", None),
    "caption_projection.linear_1": ("units.text_embed.linear_1", None),
    "caption_projection.linear_2": ("units.text_embed.linear_2", None),
    "pos_embed.proj": ("units.patch_embed.proj", None),
    "proj_out": ("units.head.proj", "channel_minor_out"),
}


def ltx_key(key: str, depth: int) -> Targets:
    """Targets of one ``LTXVideoTransformer3DModel`` key."""
    fixed = _fixed_targets(key, _LTX_FIXED)
    if fixed is not None:
        return fixed
    parts = key.split(".")
    if parts[0] != "transformer_blocks" or int(parts[1]) >= depth:
        return []
    return _block_targets(".".join(parts[2:]), f"units.block_{parts[1]}")


def latte_key(key: str, depth: int) -> Targets:
    """Targets of one ``LatteTransformer3DModel`` key: spatial block i -> our 2 i, temporal block i -> 2 i + 1."""
    fixed = _fixed_targets(key, _LATTE_FIXED)
    if fixed is not None:
        return fixed
    parts = key.split(".")
    offsets = {"transformer_blocks": 0, "temporal_transformer_blocks": 1}
    if parts[0] not in offsets:
        return []
    block = 2 * int(parts[1]) + offsets[parts[0]]
    return [] if block >= depth else _block_targets(".".join(parts[2:]), f"units.block_{block}")


_COGVIDEOX_FIXED = {
    "time_embedding.linear_1": ("units.time_embed.time_embedder.linear_1", None),
    "time_embedding.linear_2": ("units.time_embed.time_embedder.linear_2", None),
    "patch_embed.text_proj": ("units.text_embed.linear_1", None),
    "patch_embed.proj": ("units.patch_embed.proj", None),
    "norm_final": ("units.head.norm_final", None),
    "norm_out.linear": ("units.head.linear", None),
    "norm_out.norm": ("units.head.norm", None),
    "proj_out": ("units.head.proj", None),
}

_COGVIDEOX_BLOCK = {"norm1.linear": "attn.slot.branch.modulation.linear", "norm1.norm": "attn.slot.branch.norm",
                    "norm2.linear": "ff.slot.branch.modulation.linear", "norm2.norm": "ff.slot.branch.norm",
                    **{f"attn1.{theirs}": f"attn.slot.branch.attn.{ours}" for theirs, ours in _ATTENTION.items()},
                    **{theirs: ours for theirs, ours in _FF.items()}}


def cogvideox_key(key: str, depth: int) -> Targets:
    """Targets of one ``CogVideoXTransformer3DModel`` key."""
    fixed = _fixed_targets(key, _COGVIDEOX_FIXED)
    if fixed is not None:
        return fixed
    parts = key.split(".")
    if parts[0] != "transformer_blocks" or int(parts[1]) >= depth:
        return []
    stem, leaf = ".".join(parts[2:-1]), parts[-1]
    return [(f"units.block_{parts[1]}_{_COGVIDEOX_BLOCK[stem]}.{leaf}", None)] if stem in _COGVIDEOX_BLOCK else []


def translator(layout: str) -> Callable[[str, int], Targets]:
    return {"ltx": ltx_key, "latte": latte_key, "cogvideox": cogvideox_key}[layout]


def transform(value: torch.Tensor, how: Any, patch: tuple[int, int, int], out_channels: int) -> torch.Tensor:
    """The reference tensor in our layout (``how`` from a translator)."""
    pt, ph, pw = patch
    if how is None:
        return value
    if isinstance(how, tuple) and how[0] == "table":  # (rows, D) or (1, rows, D) -> our (1, rows', D)
        return value.reshape(1, -1, value.shape[-1])[:, how[1]]
    if how == "packed_in":  # a linear layer on patches packed (channel, time, row, column): our convolution
        if value.ndim == 1:
            return value
        kernel = value.reshape(value.shape[0], -1, pt, ph, pw)
        return kernel[:, :, 0] if pt == 1 else kernel
    c = out_channels  # the output permutations apply to the weight's rows and the bias alike
    if how == "channel_major_out":  # (c, t, h, w) -> (t, c, h, w)
        return value.reshape(c, pt, ph, pw, -1).transpose(0, 1).reshape(value.shape)
    if how == "channel_minor_out":  # (t, h, w, c) -> (t, c, h, w)
        return value.reshape(pt, ph, pw, c, -1).permute(0, 3, 1, 2, 4).reshape(value.shape)
    raise ValueError(f"unknown transform {how!r}")


def diffusers_forward(reference: torch.nn.Module, spec: Any, sample: torch.Tensor, timestep: torch.Tensor,
                      context: torch.Tensor) -> torch.Tensor:
    """``reference`` (a diffusers Wan, LTX-Video, Latte or CogVideoX transformer) on ``spec``'s latent clip.

    ``sample`` ``(B, T, C, H, W)``, ``timestep`` ``(B,)``, ``context`` ``(B, L, text_dim)``;
    returns ``(B, T, C_out, H, W)``. No attention mask: every text token is attended.
    """
    layout = reference_layout(dict(reference.named_parameters()))
    if layout == "cogvideox":  # CogVideoX takes (B, T, C, H, W), the text, then the timestep
        return reference(sample, context, timestep, return_dict=False)[0]
    if layout != "ltx":  # Wan and Latte take and return (B, C, T, H, W)
        return reference(sample.transpose(1, 2), timestep, context, return_dict=False)[0].transpose(1, 2)
    bb = spec.backbone
    pt, ph, pw = bb.patch_size
    b, t, c, h, w = sample.shape
    grid = (t // pt, h // ph, w // pw)
    # Patches packed (channel, time, row, column) per token, tokens in raster order (LTXPipeline._pack_latents).
    packed = sample.transpose(1, 2).reshape(b, c, grid[0], pt, grid[1], ph, grid[2], pw)
    packed = packed.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, c * pt * ph * pw)
    scale = (bb.vae_temporal_factor / bb.frame_rate, bb.vae_scale_factor, bb.vae_scale_factor)
    out = reference(packed, context, timestep, None, num_frames=grid[0], height=grid[1], width=grid[2],
                    rope_interpolation_scale=scale, return_dict=False)[0]
    co = out.shape[-1] // (pt * ph * pw)
    out = out.reshape(b, *grid, co, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return out.reshape(b, co, t, h, w).transpose(1, 2)
