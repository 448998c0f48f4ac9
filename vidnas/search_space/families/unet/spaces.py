"""The UNet family's search spaces: ``tiny`` and its enumerable benchmark variants, ``flops-mislead``,
``snapgen-v``, ``mobilevd`` and ``svd`` (MobileVD's pruning, funnels and multiscaling).

Loaded through the ``vidnas.spaces`` entry point group, as a plugin's spaces are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from vidnas.search_space._presets import get_preset
from vidnas.search_space._sampling import OpOption, SearchSpace, SlotGroup, option, register_space
from vidnas.search_space.families.unet.presets import SVD_TEMPORAL_ATTN, SVD_TEMPORAL_RES

__all__ = ["SNAPGEN_V_OPS"]


def _tiny(**shape: int | None) -> SearchSpace:
    base = get_preset("tiny").spec(**shape)
    t = base.backbone.frames
    res = [option("none"), option("conv1d", kernel=(3, 5), causal=(False, True)), option("conv2plus1d"),
           option("conv3d"), option("shift")]
    attn = [option("none"), option("attn1d"), option("attn1d_causal"), option("attn3d"), option("xattn1d"),
            option("xattn3d")]
    if t >= 4:
        attn.append(option("attn1d_window", window=(t // 2,), window_stride=(max(1, t // 4),)))
    if t % 2 == 0:
        attn.append(option("attn3d_blockcausal", chunk=(2,)))
    return SearchSpace.from_rules("tiny", base, [("*.res", res), ("*.attn", attn)],
                                  summary="every op at every slot of the tiny UNet")


def _tiny_enum(**shape: int | None) -> SearchSpace:
    base = get_preset("tiny").spec(**shape)
    res = [option("none"), option("conv1d", kernel=(3, 5)), option("shift"), option("conv2plus1d")]
    attn = [option("none"), option("attn1d"), option("attn1d_causal"), option("attn3d"), option("xattn1d")]
    return SearchSpace.from_rules("tiny-enum", base, [("*.res", res), ("*.attn", attn)], tie="level_position",
                                  summary="tiny UNet, one choice per level and position: small enough to enumerate")


def _tiny_enum_groups(name: str, attention: Sequence[tuple[str, str, Sequence[OpOption]]], summary: str,
                     **shape: int | None) -> SearchSpace:
    """The tiny UNet with one choice per stage and level at its conv blocks (five groups of four options)
    and the given attention groups ``(group name, slot pattern, options)``: enumerable benchmark spaces."""
    base = get_preset("tiny").spec(**shape)
    res = [option("none"), option("conv1d", kernel=(3,)), option("shift"), option("conv2plus1d")]
    res_groups = SearchSpace.from_rules(name, base, [("*.res", res)], tie="stage_level_position").groups
    attn_groups = []
    for group, pattern, options in attention:
        slots = tuple(s.name for s in base.slots() if fnmatch.fnmatchcase(s.name, pattern))
        attn_groups.append(SlotGroup(group, slots, tuple(options)))
    return SearchSpace(name, base, res_groups + tuple(attn_groups), summary)


def _tiny_enum_3k(**shape: int | None) -> SearchSpace:
    attn = [option("none"), option("attn1d"), option("attn3d")]
    summary = ("tiny UNet, 3,072 architectures: a conv choice per stage and level, one attention choice for all "
               "(a search benchmark)")
    return _tiny_enum_groups("tiny-enum-3k", [("L1.attn", "*.attn", attn)], summary, **shape)


def _tiny_enum_30k(**shape: int | None) -> SearchSpace:
    down = [option("none"), option("attn1d")]
    mid = [option("none"), option("attn1d"), option("attn3d")]
    up = [option("none"), option("attn1d"), option("attn1d_causal"), option("attn3d"), option("xattn1d")]
    attention = [("down.L1.attn", "down.*.attn", down), ("mid.L1.attn", "mid.*.attn", mid),
                 ("up.L1.attn", "up.*.attn", up)]
    summary = ("tiny UNet, 30,720 architectures: a conv choice per stage and level, an attention choice per stage "
               "(a search benchmark)")
    return _tiny_enum_groups("tiny-enum-30k", attention, summary, **shape)


def _flops_mislead(**shape: int | None) -> SearchSpace:
    """Options whose FLOPs and latency disagree: zero-FLOP and memory-bound ops beside dense ones.

    Shifts (no FLOPs, only data movement), funnelled conv blocks (few FLOPs, full-width group
    norms), windowed attention over many two-frame windows (many small products), temporal
    multiscaling (half the frames inside, pooling and repetition around) and funnelled
    attention, against dense conv3d and attn3d; on the tiny UNet so that it runs fast on a CPU.
    """
    base = get_preset("tiny").spec(**shape)
    t = base.backbone.frames
    strides = (1, 2) if t % 2 == 0 and t >= 4 else (1,)
    res = [option("none"), option("shift", fold_div=(4, 8), temporal_stride=strides),
           option("conv1d", funnel=(0.25, 1.0), temporal_stride=strides), option("conv3d")]
    attn = [option("none"), option("attn1d", funnel=(0.25, 1.0), temporal_stride=strides), option("attn3d")]
    if t >= 2:
        attn.append(option("attn1d_window", window=(2,), window_stride=(1,), funnel=(0.25, 1.0)))
    return SearchSpace.from_rules("flops-mislead", base, [("*.res", res), ("*.attn", attn)],
                                  summary="tiny UNet with zero-FLOP and memory-bound temporal options, where FLOPs "
                                          "mislead about latency (a benchmark of latency tables against counting)")


SNAPGEN_V_OPS = (
    option("none"), option("conv1d", kernel=(3, 5)), option("conv3d"), option("attn1d"), option("attn3d"),
    option("xattn1d"), option("xattn3d"),
)


def _snapgen_v(**shape: int | None) -> SearchSpace:
    base = get_preset("snapgen-v").spec(**shape)
    return SearchSpace.from_rules("snapgen-v", base, [("*", SNAPGEN_V_OPS)],
                                  summary="SnapGen-V's six temporal layers (or none) at every slot")


def _svd_pruning(preset: str, **shape: int | None) -> SearchSpace:
    base = get_preset(preset).spec(**shape)
    funnels = (0.25, 0.5, 0.75, 1.0)
    res = [option("none"), option(SVD_TEMPORAL_RES["op"], **SVD_TEMPORAL_RES["params"], funnel=funnels,
                              temporal_stride=(1, 2))]
    attn = [option("none"), option(SVD_TEMPORAL_ATTN["op"], **SVD_TEMPORAL_ATTN["params"], funnel=funnels,
                               temporal_stride=(1, 2))]
    if base.backbone.frames % 2:
        res[1] = option(SVD_TEMPORAL_RES["op"], **SVD_TEMPORAL_RES["params"], funnel=funnels)
        attn[1] = option(SVD_TEMPORAL_ATTN["op"], **SVD_TEMPORAL_ATTN["params"], funnel=funnels)
    return SearchSpace.from_rules(preset, base, [("*.res", res), ("*.attn", attn)],
                                  summary="MobileVD: prune each SVD temporal block, funnel its width, halve its frames")


register_space("tiny", _tiny)
register_space("tiny-enum", _tiny_enum)
register_space("tiny-enum-3k", _tiny_enum_3k)
register_space("tiny-enum-30k", _tiny_enum_30k)
register_space("flops-mislead", _flops_mislead)
register_space("snapgen-v", _snapgen_v)
register_space("mobilevd", lambda **shape: _svd_pruning("mobilevd", **shape))
register_space("svd", lambda **shape: _svd_pruning("svd", **shape))
