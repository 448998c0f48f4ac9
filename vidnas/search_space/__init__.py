"""The search space: op registry, ArchSpec, backbone families, presets, counting, sampling, reference weights.

Describing, validating, counting and sampling architectures needs no torch; building
modules (``build_network``, ``UnitHarness``, ``TemporalSlot``) imports it when first used.
"""

from __future__ import annotations

from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._backbone import Backbone, SlotInfo
from vidnas.search_space._cost import Cost
from vidnas.search_space._counting import COUNT_METHODS, ITEMSIZE, CountReport, UnitCount, count_spec
from vidnas.search_space._family import (
    FAMILIES,
    BackboneFamily,
    build_network,
    build_plan,
    build_unit,
    get_family,
    list_families,
    module_key,
    register_family,
    unit_cost,
)
from vidnas.search_space._plan import PlanWalk, UnitPlan, signature_id, slot_config, slot_cost, slot_shape, slot_unit
from vidnas.search_space._presets import PRESETS, Preset, get_preset, list_presets, preset_spec, register_preset
from vidnas.search_space._registry import (
    TEMPORAL_OPS,
    OpParam,
    SlotShape,
    TemporalOpDef,
    get_temporal_op,
    list_temporal_ops,
    register_temporal_op,
)
from vidnas.search_space._sampling import (
    SPACES,
    OpOption,
    SearchSpace,
    SlotGroup,
    TrialLike,
    get_space,
    list_spaces,
    option,
    random_specs,
    register_space,
)
from vidnas.search_space._sharing import (
    SHARING_RULES,
    SharingRule,
    get_sharing_rule,
    no_sharing_key,
    prefix_slice,
    register_sharing,
)
from vidnas.search_space._spec import SPEC_FORMAT, SPEC_VERSION, ArchSpec, TemporalChoice
from vidnas.search_space._weights import (
    PICKLE_SUFFIXES,
    Checkpoint,
    WeightReport,
    load_reference_weights,
    read_checkpoint,
)
from vidnas.search_space.families.dit.spec import DIT_POSITIONS, STYLES, DiTBackbone
from vidnas.search_space.families.unet.spec import BackboneSpec

_TORCH_NAMES = {
    "Conditioning": "vidnas.search_space.families.unet.network",
    "VideoUNet": "vidnas.search_space.families.unet.network",
    "VideoDiT": "vidnas.search_space.families.dit.network",
    "TokenConditioning": "vidnas.search_space.ops.token_branches",
    "TokenSlot": "vidnas.search_space.ops.token_branches",
    "UnitHarness": "vidnas.search_space._modules",
    "NetworkHarness": "vidnas.search_space._modules",
    "randomize_zero_layers_": "vidnas.search_space._modules",
    "unit_example_inputs": "vidnas.search_space._modules",
    "TemporalSlot": "vidnas.search_space._slot",
    "export_onnx": "vidnas.search_space._export",
    "COREML_COMPUTE_UNITS": "vidnas.search_space._export",
    "COREML_PRECISIONS": "vidnas.search_space._export",
    "convert_coreml": "vidnas.search_space._export",
    "coreml_can_run": "vidnas.search_space._export",
    "onnx_input_name": "vidnas.search_space._export",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "SHARING_RULES",
    "SPACES",
    "SharingRule",
    "TEMPORAL_OPS",
    "get_sharing_rule",
    "no_sharing_key",
    "option",
    "prefix_slice",
    "register_sharing",
    "register_space",
    "COREML_COMPUTE_UNITS",
    "COREML_PRECISIONS",
    "COUNT_METHODS",
    "DIT_POSITIONS",
    "ITEMSIZE",
    "PICKLE_SUFFIXES",
    "PRESETS",
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "STYLES",
    "ArchSpec",
    "Backbone",
    "BackboneFamily",
    "BackboneSpec",
    "Checkpoint",
    "Conditioning",
    "Cost",
    "CountReport",
    "DiTBackbone",
    "NetworkHarness",
    "OpOption",
    "PlanWalk",
    "OpParam",
    "Preset",
    "SearchSpace",
    "SlotGroup",
    "SlotInfo",
    "SlotShape",
    "SpecError",
    "TemporalChoice",
    "TemporalOpDef",
    "TemporalSlot",
    "TokenConditioning",
    "TokenSlot",
    "TrialLike",
    "UnitCount",
    "UnitHarness",
    "UnitPlan",
    "VideoDiT",
    "VideoUNet",
    "WeightReport",
    "build_network",
    "build_plan",
    "build_unit",
    "coreml_can_run",
    "convert_coreml",
    "count_spec",
    "export_onnx",
    "get_family",
    "get_preset",
    "get_space",
    "get_temporal_op",
    "list_families",
    "list_presets",
    "list_spaces",
    "list_temporal_ops",
    "load_reference_weights",
    "module_key",
    "onnx_input_name",
    "preset_spec",
    "random_specs",
    "randomize_zero_layers_",
    "read_checkpoint",
    "register_family",
    "register_preset",
    "register_temporal_op",
    "signature_id",
    "slot_config",
    "slot_cost",
    "slot_shape",
    "slot_unit",
    "unit_cost",
    "unit_example_inputs",
]
