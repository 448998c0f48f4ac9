"""The search space: temporal-op registry, ArchSpec, the video UNet, presets, counting, sampling.

Describing, validating, counting and sampling architectures needs no torch; the
modules (``VideoUNet``, ``TemporalSlot``, ``build_unit``) import it when first used.
"""

from __future__ import annotations

from typing import Any

from vidnas.search_space._cost import Cost
from vidnas.search_space._counting import COUNT_METHODS, ITEMSIZE, CountReport, UnitCount, count_spec
from vidnas.search_space._plan import UnitPlan, build_plan, signature_id, slot_cost, slot_shape, unit_cost
from vidnas.search_space._presets import PRESETS, Preset, get_preset, list_presets, preset_spec
from vidnas.search_space._registry import (
    OpParam,
    SlotShape,
    TemporalOpDef,
    get_temporal_op,
    list_temporal_ops,
    register_temporal_op,
)
from vidnas.search_space._sampling import (
    OpOption,
    SearchSpace,
    SlotGroup,
    TrialLike,
    get_space,
    list_spaces,
    random_specs,
)
from vidnas.search_space._spec import SPEC_FORMAT, SPEC_VERSION, ArchSpec, BackboneSpec, SlotInfo, TemporalChoice

_TORCH_NAMES = {
    "Conditioning": "vidnas.search_space._unet",
    "VideoUNet": "vidnas.search_space._unet",
    "build_unit": "vidnas.search_space._unet",
    "UnitHarness": "vidnas.search_space._unet",
    "NetworkHarness": "vidnas.search_space._unet",
    "randomize_zero_layers_": "vidnas.search_space._unet",
    "unit_example_inputs": "vidnas.search_space._unet",
    "TemporalSlot": "vidnas.search_space._slot",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COUNT_METHODS",
    "ITEMSIZE",
    "PRESETS",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "ArchSpec",
    "BackboneSpec",
    "Conditioning",
    "Cost",
    "CountReport",
    "NetworkHarness",
    "OpOption",
    "OpParam",
    "Preset",
    "SearchSpace",
    "SlotGroup",
    "SlotInfo",
    "SlotShape",
    "TemporalChoice",
    "TemporalOpDef",
    "TemporalSlot",
    "TrialLike",
    "UnitCount",
    "UnitHarness",
    "UnitPlan",
    "VideoUNet",
    "build_plan",
    "build_unit",
    "count_spec",
    "get_preset",
    "get_space",
    "get_temporal_op",
    "list_presets",
    "list_spaces",
    "list_temporal_ops",
    "preset_spec",
    "random_specs",
    "randomize_zero_layers_",
    "register_temporal_op",
    "signature_id",
    "slot_cost",
    "slot_shape",
    "unit_cost",
    "unit_example_inputs",
]
