"""The search space: temporal-op registry, ArchSpec, the video UNet, presets, counting, sampling."""

from vidnas.search_space._registry import (
    OpParam,
    SlotShape,
    TemporalOpDef,
    get_temporal_op,
    list_temporal_ops,
    register_temporal_op,
)
from vidnas.search_space._slot import TemporalSlot
from vidnas.search_space._spec import SPEC_FORMAT, SPEC_VERSION, ArchSpec, BackboneSpec, SlotInfo, TemporalChoice
from vidnas.search_space._unet import Conditioning, UnitPlan, VideoUNet, build_plan, build_unit, signature_id
from vidnas.search_space._presets import PRESETS, Preset, get_preset, list_presets, preset_spec

__all__ = [
    "PRESETS",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "ArchSpec",
    "BackboneSpec",
    "Conditioning",
    "OpParam",
    "Preset",
    "SlotInfo",
    "SlotShape",
    "TemporalChoice",
    "TemporalOpDef",
    "TemporalSlot",
    "UnitPlan",
    "VideoUNet",
    "build_plan",
    "build_unit",
    "get_preset",
    "get_temporal_op",
    "list_presets",
    "list_temporal_ops",
    "preset_spec",
    "register_temporal_op",
    "signature_id",
]
