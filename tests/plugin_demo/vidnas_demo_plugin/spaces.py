"""``demo-conv-tiny``: a search space over the ``demo-conv-tiny`` preset's temporal slots, one
choice per level among built-in frame ops (49 architectures)."""

from __future__ import annotations

from vidnas.search_space import SearchSpace, get_preset, option, register_space


def demo_conv_tiny(**shape) -> SearchSpace:
    """The space at the preset's size, or resized (``frames``, ``height``, ``width``, ``width_mult``)."""
    base = get_preset("demo-conv-tiny").spec(**shape)
    ops = [option("none"), option("conv1d", kernel=(3, 5), causal=(False, True)), option("attn1d"), option("shift")]
    return SearchSpace.from_rules("demo-conv-tiny", base, [("*.mix", ops)], tie="level_position",
                                  summary="demo-conv-tiny, one frame op per level (demo plugin)")


register_space("demo-conv-tiny", demo_conv_tiny)
