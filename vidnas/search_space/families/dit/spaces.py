"""Search spaces over video diffusion transformers: ``dit-tiny``, ``wan-mobile``, ``causvid`` and
``cogvideox-tiny`` (joint text: the token ops that accept it, and frame ops beside them).

Each is a base spec (a preset) and groups of slots sharing one choice (see ``_sampling``).
Dropping a whole block, as MobileVD drops temporal blocks, is every slot of the block
taking ``none``: the spaces offer ``none`` at the ``attn``, ``cross`` and ``ff`` slots.
Window, tile and chunk options are derived from the token grid of the requested size,
so every space stays valid when resized (``get_space(name, frames=, height=, width=)``).
"""

from __future__ import annotations

from typing import Any

from vidnas.search_space._presets import get_preset
from vidnas.search_space._sampling import OpOption, SearchSpace, SlotGroup, option, register_space
from vidnas.search_space._spec import ArchSpec

__all__: list[str] = []

def _divisor_at_most(size: int, limit: int) -> int:
    return max(k for k in range(1, min(size, limit) + 1) if size % k == 0)


def _per_block(base: ArchSpec, position: str, options: list[OpOption], every: int = 1) -> list[SlotGroup]:
    """One group per run of ``every`` consecutive blocks at ``position``."""
    depth = base.backbone.depth
    groups = []
    for start in range(0, depth, every):
        blocks = range(start, min(start + every, depth))
        name = f"block.{start}.{position}" if every == 1 else f"blocks.{start}-{blocks[-1]}.{position}"
        groups.append(SlotGroup(name, tuple(f"block.{i}.{position}" for i in blocks), tuple(options)))
    return groups


def _tiny(**shape: Any) -> SearchSpace:
    base = get_preset("dit-tiny").spec(**shape)
    t, h, w = base.backbone.grid
    tile = dict(tile_t=1, tile_h=_divisor_at_most(h, 4), tile_w=_divisor_at_most(w, 4))
    chunks = tuple(c for c in (1, 2) if t % c == 0)
    attn = [option("none"), option("tok_full"), option("tok_spatial"), option("tok_temporal"), option("tok_factorised"),
            option("tok_window", **tile, reach=(0, 1)), option("tok_blockcausal", chunk=chunks),
            option("tok_causal_window", chunk=(1,), window=(1,)), option("tok_sparse_heads")]
    temporal = [option("none"), option("conv1d", causal=(False, True)), option("attn1d"), option("shift")]
    groups = (_per_block(base, "attn", attn) + _per_block(base, "temporal", temporal)
              + _per_block(base, "cross", [option("tok_xattn"), option("none")])
              + _per_block(base, "ff", [option("tok_ff", funnel=(0.5, 1.0)), option("none")]))
    return SearchSpace("dit-tiny", base, tuple(groups), "every token op and a few frame ops at every slot of dit-tiny")


def _wan_mobile(**shape: Any) -> SearchSpace:
    base = get_preset("wan-mobile").spec(**shape)
    t, h, w = base.backbone.grid
    heads = (base.backbone.heads // 2, base.backbone.heads)
    tile = dict(tile_t=1, tile_h=_divisor_at_most(h, 6), tile_w=_divisor_at_most(w, 8))
    attn = [option("none"), option("tok_full", heads=heads), option("tok_spatial", heads=heads),
            option("tok_factorised", heads=heads), option("tok_window", **tile, reach=(0, 1), heads=heads),
            option("tok_sparse_heads", spatial_heads=(heads[0], heads[1] * 3 // 4))]
    groups = (_per_block(base, "attn", attn) + _per_block(base, "cross", [option("tok_xattn"), option("none")])
              + _per_block(base, "ff", [option("none"), option("tok_ff", funnel=(0.25, 0.5, 0.75, 1.0))]))
    return SearchSpace("wan-mobile", base, tuple(groups),
                       "per block: attention kind, window and heads; dropping sub-layers and blocks; funnels")


def _causvid(**shape: Any) -> SearchSpace:
    base = get_preset("causvid").spec(**shape)
    t = base.backbone.grid[0]
    chunks = tuple(c for c in (1, 3) if t % c == 0)
    attn = [option("tok_blockcausal", chunk=chunks), option("tok_causal_window", chunk=chunks, window=(1, 2, 4))]
    every = 5 if base.backbone.depth % 5 == 0 else 1
    return SearchSpace("causvid", base, tuple(_per_block(base, "attn", attn, every)),
                       "causal Wan: per run of 5 blocks the chunk size and whether (and how far) the KV cache rolls")


def _cogvideox_tiny(**shape: Any) -> SearchSpace:
    base = get_preset("cogvideox-tiny").spec(**shape)
    attn = [option("none"), option("tok_full", heads=(1, base.backbone.heads))]
    temporal = [option("none"), option("conv1d", causal=(False, True)), option("attn1d")]
    groups = (_per_block(base, "attn", attn) + _per_block(base, "temporal", temporal)
              + _per_block(base, "ff", [option("tok_ff", funnel=(0.5, 1.0)), option("none")]))
    return SearchSpace("cogvideox-tiny", base, tuple(groups),
                       "joint-text blocks (CogVideoX's) at toy scale: joint attention heads or none, frame ops "
                       "on the video tokens, funnels")


register_space("dit-tiny", _tiny)
register_space("wan-mobile", _wan_mobile)
register_space("causvid", _causvid)
register_space("cogvideox-tiny", _cogvideox_tiny)
