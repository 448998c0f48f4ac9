"""ArchSpec: canonical JSON round trip, arch_id, and every validation error naming field and value."""

from __future__ import annotations

import dataclasses
import json

import pytest

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, BackboneSpec, TemporalChoice, get_preset, preset_spec


@pytest.fixture
def tiny():
    return preset_spec("tiny")


def test_json_round_trip_is_exact(tiny, tmp_path):
    again = ArchSpec.from_json(tiny.to_json())
    assert again == tiny and again.arch_id == tiny.arch_id and again.to_json() == tiny.to_json()
    path = tiny.save(tmp_path / "spec.json")
    assert ArchSpec.load(path) == tiny


def test_canonical_form_fills_defaults_and_ignores_key_order(tiny):
    short = ArchSpec.create(tiny.backbone, {"*.res": "conv1d", "*.attn": {"op": "attn1d"}})
    explicit = ArchSpec.create(tiny.backbone, {"*.res": {"op": "conv1d", "params": {"kernel": 3, "causal": False}},
                                               "*.attn": "attn1d"})
    assert short.arch_id == explicit.arch_id
    assert dict(short.temporal["down.0.0.res"].params)["kernel"] == 3
    data = json.loads(short.to_json())
    reordered = json.dumps(dict(reversed(list(data.items()))))
    assert ArchSpec.from_json(reordered).arch_id == short.arch_id


def test_arch_id_ignores_name_and_tracks_architecture(tiny):
    renamed = ArchSpec(tiny.backbone, tiny.temporal, name="another name")
    assert renamed.arch_id == tiny.arch_id
    changed = tiny.replace_choices({"down.0.0.res": "shift"})
    assert changed.arch_id != tiny.arch_id
    resized = tiny.with_shape(frames=16)
    assert resized.arch_id != tiny.arch_id and resized.backbone.frames == 16


def test_slots_follow_the_svd_layout():
    spec = preset_spec("svd")
    slots = [s.name for s in spec.slots()]
    assert len(slots) == 38
    assert sum(s.endswith(".res") for s in slots) == 22 and sum(s.endswith(".attn") for s in slots) == 16
    assert slots[:3] == ["down.0.0.res", "down.0.0.attn", "down.0.1.res"]
    assert slots[-1] == "up.0.2.attn"


def _error(fn, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    return info.value


def test_unknown_op_is_named(tiny):
    err = _error(tiny.replace_choices, {"down.0.0.res": "conv4d"})
    assert err.field == "temporal.down.0.0.res.op" and err.value == "conv4d"
    assert "conv4d" in str(err) and "conv1d" in str(err)  # lists the known ops


def test_heads_not_dividing_channels(tiny):
    err = _error(tiny.replace_choices, {"down.1.0.attn": {"op": "attn1d", "params": {"heads": 7}}})
    assert err.field == "temporal.down.1.0.attn.params.heads" and err.value == 7
    assert "64" in str(err)


def test_window_larger_than_frames(tiny):
    err = _error(tiny.replace_choices, {"down.1.0.attn": {"op": "attn1d_window", "params": {"window": 16}}})
    assert err.field == "temporal.down.1.0.attn.params.window" and err.value == 16
    assert "8 frames" in str(err)


def test_window_counts_frames_after_temporal_stride(tiny):
    err = _error(tiny.replace_choices, {"down.1.0.attn": {"op": "attn1d_window",
                                                          "params": {"window": 6, "temporal_stride": 2}}})
    assert err.field.endswith("params.window") and "4 frames" in str(err)


def test_wrong_number_of_slots(tiny):
    temporal = dict(tiny.temporal)
    temporal.pop("up.0.1.res")
    err = _error(ArchSpec, tiny.backbone, temporal)
    assert err.field == "temporal" and "up.0.1.res" in str(err) and "12 slots" in str(err)
    temporal = dict(tiny.temporal) | {"down.5.0.res": "none"}
    assert "down.5.0.res" in str(_error(ArchSpec, tiny.backbone, temporal))


def test_unknown_and_invalid_params(tiny):
    err = _error(tiny.replace_choices, {"down.0.0.res": {"op": "conv1d", "params": {"kernal": 3}}})
    assert err.field == "temporal.down.0.0.res.params.kernal"
    err = _error(tiny.replace_choices, {"down.0.0.res": {"op": "conv1d", "params": {"kernel": 4}}})
    assert err.value == 4 and "[3, 5]" in str(err)
    err = _error(tiny.replace_choices, {"down.0.0.res": {"op": "conv1d", "params": {"causal": "yes"}}})
    assert err.field.endswith("causal")
    err = _error(tiny.replace_choices, {"down.0.0.res": {"op": "conv1d", "params": {"temporal_stride": 3}}})
    assert err.field.endswith("temporal_stride")
    err = _error(tiny.replace_choices, {"down.1.0.attn": {"op": "attn3d_blockcausal", "params": {"chunk": 3}}})
    assert err.field.endswith("chunk") and err.value == 3


def test_backbone_validation_names_the_field():
    bb = get_preset("tiny").backbone
    err = _error(ArchSpec.create, dataclasses.replace(bb, layers_per_block=(1, 1, 1)))
    assert err.field == "backbone.layers_per_block" and "3 entries" in str(err)
    err = _error(ArchSpec.create, dataclasses.replace(bb, channels=(32, 60)))
    assert err.field == "backbone.channels[1]" and err.value == 60
    err = _error(ArchSpec.create, dataclasses.replace(bb, latent_height=15))
    assert err.field == "backbone.latent_height" and "divisible by 2" in str(err)
    err = _error(ArchSpec.create, dataclasses.replace(bb, frames=0))
    assert err.field == "backbone.frames"


def test_json_errors_name_the_field(tiny):
    data = json.loads(tiny.to_json())
    assert _error(ArchSpec.from_json, "{not json").field == "spec"
    assert _error(ArchSpec.from_dict, {**data, "version": 99}).field == "version"
    assert _error(ArchSpec.from_dict, {**data, "format": "other"}).field == "format"
    assert _error(ArchSpec.from_dict, {**data, "extra": 1}).field == "extra"
    bad_backbone = {**data, "backbone": {**data["backbone"], "chanels": [1]}}
    assert _error(ArchSpec.from_dict, bad_backbone).field == "backbone.chanels"
    bad_type = {**data, "backbone": {**data["backbone"], "frames": "8"}}
    assert _error(ArchSpec.from_dict, bad_type).field == "backbone.frames"
    bad_choice = {**data, "temporal": {**data["temporal"], "down.0.0.res": {"op": "conv1d", "parms": {}}}}
    assert _error(ArchSpec.from_dict, bad_choice).field == "temporal.down.0.0.res.parms"


def test_resize_errors_speak_in_pixels():
    err = _error(preset_spec, "svd", height=500)
    assert err.field == "height" and err.value == 500
    err = _error(preset_spec, "svd", height=520)  # a multiple of 8 but not of 64
    assert err.field == "height" and "64" in str(err)


def test_temporal_choice_equality_and_hash():
    a = TemporalChoice("conv1d", {"kernel": 3, "causal": False})
    b = TemporalChoice("conv1d", {"causal": False, "kernel": 3})
    assert a == b and hash(a) == hash(b)
    assert BackboneSpec().num_levels == 4
