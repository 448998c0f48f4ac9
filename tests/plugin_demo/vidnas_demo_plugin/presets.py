"""``demo-conv-tiny``: the ``demo-conv`` family's preset (two levels of two blocks, 8 frames at 64x64)."""

from __future__ import annotations

from vidnas.search_space import Preset, register_preset
from vidnas_demo_plugin.family import DemoConvBackbone

register_preset(Preset(
    name="demo-conv-tiny",
    summary="a two-level per-frame conv video backbone, 8 frames at 64x64 (demo plugin)",
    backbone=DemoConvBackbone(),
    temporal={"level.0.*": {"op": "conv1d"}, "level.1.*": {"op": "attn1d"}},
))
