"""A reference implementation's UNet weights under the vidnas UNet's parameter names.

``diffusers``: ``UNetSpatioTemporalConditionModel`` (Stable Video Diffusion). Its modules
and the vidnas units correspond one to one (the ``svd`` preset is the same function):

=====================================================  ===========================================
diffusers                                              vidnas (``build_network(spec).state_dict()``)
=====================================================  ===========================================
``time_embedding.*``, ``add_embedding.*``              ``units.time_embed.{time,add}_embedding.*``
``conv_in.*``                                          ``units.conv_in.conv.*``
``down_blocks.L.resnets.B.spatial_res_block.*``        ``units.down_L_B_resblock.*``
``down_blocks.L.resnets.B.temporal_res_block.*``       ``units.down_L_B_res.slot.branch.*``
``down_blocks.L.resnets.B.time_mixer.mix_factor``      ``units.down_L_B_res.slot.mix_factor``
``down_blocks.L.attentions.B.{norm,proj_in}.*``        ``units.down_L_B_attn_in.{norm,proj_in}.*``
``down_blocks.L.attentions.B.transformer_blocks.0.*``  ``units.down_L_B_attn_in.block.*``
``...attentions.B.temporal_transformer_blocks.0.*``    ``units.down_L_B_attn.slot.branch.*``
``...attentions.B.time_pos_embed.*``                   ``units.down_L_B_attn.slot.branch.pos_embed.*``
``...attentions.B.time_mixer.mix_factor``              ``units.down_L_B_attn.slot.mix_factor``
``...attentions.B.proj_out.*``                         ``units.down_L_B_attn_out.proj_out.*``
``down_blocks.L.downsamplers.0.conv.*``                ``units.down_L_downsample.conv.*``
``mid_block.{resnets,attentions}.B.*``                 ``units.mid_{last}_B_*`` (as above)
``up_blocks.I.{resnets,attentions}.B.*``               ``units.up_L_B_*`` with ``L = levels - 1 - I``
``up_blocks.I.upsamplers.0.conv.*``                    ``units.up_L_upsample.conv.*``
``conv_norm_out.*``, ``conv_out.*``                    ``units.conv_out.{norm,conv}.*``
=====================================================  ===========================================

Inside blocks, ``to_out.0`` is ``to_out``, a GEGLU feed-forward's ``net.0.proj`` / ``net.2``
are ``proj`` / ``out``, and temporal convolutions' ``(k, 1, 1)`` Conv3d kernels are the
``(k, 1)`` Conv2d kernels of the plane layout (a reshape). The up blocks' index counts
levels of the *reference* (read from its keys), so a spec with fewer levels than the
reference never takes another level's weights.

A temporal slot takes the reference's weights only when it holds the reference's op there
(``conv1d`` after a residual block, ``xattn1d`` inside a spatial transformer): a slot with
another op (or ``none``) is a changed layer, and its reference keys are returned unused.
The learned blend ``sigmoid(mix_factor)`` weighs the spatial side in diffusers
(``merge="alpha_spatial"``); a slot with ``alpha_temporal`` takes ``-mix_factor``
(``sigmoid(-m) = 1 - sigmoid(m)``: the same function); a ``residual`` slot has no blend.
Keys whose target a spec does not have (fewer levels or blocks, no ``ff_in``, another
positional encoding, several transformer layers per block ...) are returned unused.
Shapes are not compared here: :func:`~vidnas.search_space.load_reference_weights` does.

diffusers' UNet uses 32 GroupNorm groups throughout; a backbone with another
``norm_groups`` takes the same tensors but computes another function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from vidnas._errors import SpecError
from vidnas.search_space._family import module_key

if TYPE_CHECKING:
    import torch

    from vidnas.search_space._spec import ArchSpec

__all__ = ["REFERENCES", "unet_reference_state_dict"]

REFERENCES = ("diffusers",)

# The op each temporal slot of diffusers' SVD UNet holds, by slot position.
_REFERENCE_OPS = {"res": "conv1d", "attn": "xattn1d"}

# Sub-key renames inside attention blocks and feed-forwards (diffusers -> vidnas).
_RENAMES = (
    (re.compile(r"(^|\.)to_out\.0\."), r"\1to_out."),
    (re.compile(r"(^|\.)(ff|ff_in)\.net\.0\.proj\."), r"\1\2.proj."),
    (re.compile(r"(^|\.)(ff|ff_in)\.net\.2\."), r"\1\2.out."),
)


def _rename(suffix: str) -> str:
    for pattern, repl in _RENAMES:
        suffix = pattern.sub(repl, suffix)
    return suffix


def _reference_levels(state: Mapping[str, object]) -> int | None:
    """The number of resolution levels of a diffusers UNet, from its ``down_blocks.N`` keys."""
    found = {int(m.group(1)) for k in state if (m := re.match(r"down_blocks\.(\d+)\.", k))}
    return max(found) + 1 if found else None


def _diffusers_table(spec: ArchSpec, ref_levels: int) -> dict[str, tuple[str, str]]:
    """Reference key prefix -> (vidnas key prefix, transform) for every block of ``spec``.

    Transforms: ``same``; ``block`` (sub-key renames); ``conv1d`` (renames + kernel reshape);
    ``mix`` (the blend, sign per the slot's merge).
    """
    bb = spec.backbone
    table: dict[str, tuple[str, str]] = {
        "time_embedding.": ("units.time_embed.time_embedding.", "same"),
        "conv_in.": ("units.conv_in.conv.", "same"),
        "conv_norm_out.": ("units.conv_out.norm.", "same"),
        "conv_out.": ("units.conv_out.conv.", "same"),
    }
    if bb.num_added_time_ids:
        table["add_embedding."] = ("units.time_embed.add_embedding.", "same")

    def unit(name: str) -> str:
        return f"units.{module_key(name)}."

    def block(ref: str, ours: str, with_attn: bool) -> None:
        """One residual block ``ref`` (``...resnets.B``) and, with ``with_attn``, its transformer."""
        table[f"{ref.format('resnets')}.spatial_res_block."] = (unit(f"{ours}.resblock"), "same")
        if spec.temporal[f"{ours}.res"].op == _REFERENCE_OPS["res"]:
            table[f"{ref.format('resnets')}.temporal_res_block."] = (unit(f"{ours}.res") + "slot.branch.", "conv1d")
            table[f"{ref.format('resnets')}.time_mixer.mix_factor"] = (unit(f"{ours}.res") + "slot.mix_factor", "mix")
        if not with_attn:
            return
        attn = ref.format("attentions")
        table[f"{attn}.norm."] = (unit(f"{ours}.attn_in") + "norm.", "same")
        table[f"{attn}.proj_in."] = (unit(f"{ours}.attn_in") + "proj_in.", "same")
        table[f"{attn}.transformer_blocks.0."] = (unit(f"{ours}.attn_in") + "block.", "block")
        table[f"{attn}.proj_out."] = (unit(f"{ours}.attn_out") + "proj_out.", "same")
        if spec.temporal[f"{ours}.attn"].op == _REFERENCE_OPS["attn"]:
            slot = unit(f"{ours}.attn") + "slot."
            table[f"{attn}.temporal_transformer_blocks.0."] = (slot + "branch.", "block")
            table[f"{attn}.time_pos_embed."] = (slot + "branch.pos_embed.", "same")
            table[f"{attn}.time_mixer.mix_factor"] = (slot + "mix_factor", "mix")

    last = bb.num_levels - 1
    for level in range(bb.num_levels):
        for b in range(bb.layers_per_block[level]):
            block(f"down_blocks.{level}.{{}}.{b}", f"down.{level}.{b}", bb.attention[level])
        if level < last:
            table[f"down_blocks.{level}.downsamplers.0.conv."] = (unit(f"down.{level}.downsample") + "conv.", "same")
    block("mid_block.{}.0", f"mid.{last}.0", bb.mid_attention)
    block("mid_block.{}.1", f"mid.{last}.1", False)
    for level in range(bb.num_levels):
        index = ref_levels - 1 - level  # diffusers counts up blocks from the coarsest level
        if index < 0:
            continue
        for b in range(bb.layers_per_block[level] + 1):
            block(f"up_blocks.{index}.{{}}.{b}", f"up.{level}.{b}", bb.attention[level])
        if level > 0:
            table[f"up_blocks.{index}.upsamplers.0.conv."] = (unit(f"up.{level}.upsample") + "conv.", "same")
    return table


def _lookup(key: str, table: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The vidnas name and transform of reference ``key`` (its longest prefix in ``table``)."""
    if key in table:  # whole-key entries (the blends)
        return table[key]
    cut = len(key)
    while (cut := key.rfind(".", 0, cut)) > 0:
        entry = table.get(key[: cut + 1])
        if entry is not None:
            prefix, transform = entry
            suffix = key[cut + 1:]
            return prefix + (_rename(suffix) if transform in ("block", "conv1d") else suffix), transform
    return None


def _target_names(spec: ArchSpec) -> dict[str, tuple[int, ...]]:
    """The state-dict names (and shapes) of ``build_network(spec)``, built on the meta device."""
    import torch

    from vidnas.search_space._family import build_network

    with torch.device("meta"):
        net = build_network(spec)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def unet_reference_state_dict(spec: ArchSpec, state: Mapping[str, torch.Tensor], *, reference: str = "diffusers"
                              ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a reference UNet state dict onto ``build_network(spec)``'s parameter names.

    Returns ``(mapped, unused)``: tensors under vidnas names (reshaped or negated where the
    module layout differs; see the module docstring) and the reference keys with no place
    in ``spec``.
    """
    if reference not in REFERENCES:
        raise SpecError("reference", reference, "has no weight mapping for the `unet` family",
                        f"choose one of {list(REFERENCES)}")
    ref_levels = _reference_levels(state) or spec.backbone.num_levels
    table = _diffusers_table(spec, ref_levels)
    targets = _target_names(spec)
    merges = {module_key(slot): choice.params.get("merge", "residual") for slot, choice in spec.temporal.items()}
    mapped: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for key, tensor in state.items():
        found = _lookup(key, table)
        if found is None or found[0] not in targets:
            unused.append(key)
            continue
        name, transform = found
        if transform == "conv1d" and tensor.ndim == 5 and tuple(tensor.shape[-2:]) == (1, 1):
            tensor = tensor.reshape(*tensor.shape[:3], 1)  # Conv3d (k,1,1) -> Conv2d (k,1) on planes
        elif transform == "mix" and merges[name.split(".")[1]] == "alpha_temporal":
            tensor = -tensor
        mapped[name] = tensor
    return mapped, unused
