"""The ``svd`` preset is diffusers' UNetSpatioTemporalConditionModel: same parameters, same function."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from svd_reference import REDUCED_BACKBONE, reduced_inputs, reduced_reference, reduced_spec

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, build_network, get_family, get_preset, preset_spec

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def reference():
    return reduced_reference()


def loaded_network(spec: ArchSpec, reference) -> torch.nn.Module:
    mapped, unused = get_family("unet").reference_state_dict(spec, reference.state_dict(), reference="diffusers")
    network = build_network(spec).eval()
    network.load_state_dict(mapped, strict=True)  # every vidnas parameter is filled
    assert unused == []
    return network


@pytest.mark.parametrize("merge", ["alpha_spatial", "alpha_temporal"])
def test_svd_computes_the_diffusers_function(reference, merge):
    """The preset's choices (alpha on the spatial side, as AlphaBlender) and the mirrored blend
    (the mapping negates the logit) both give diffusers' outputs within float32 rounding."""
    res = get_preset("svd").temporal["*.res"]
    spec = reduced_spec(**{"*.res": {"op": res["op"], "params": {**res["params"], "merge": merge}}})
    network = loaded_network(spec, reference)
    inputs = reduced_inputs()
    with torch.no_grad():
        expected = reference(*inputs).sample
        got = network(*inputs)
    assert got.shape == expected.shape == (2, 3, 4, 16, 16)
    assert expected.abs().max() > 0.1  # not a vanishing output
    assert (got - expected).abs().max().item() < 1e-4
    # The comparison is sensitive: one wrong blend in one block shows far above the tolerance.
    with torch.no_grad():
        network.units["up_1_0_res"].slot.mix_factor.neg_()
        assert (network(*inputs) - expected).abs().max().item() > 1e-3


def test_norm_epsilons_and_groups_match_diffusers(reference):
    """Every GroupNorm and LayerNorm of the reference has its counterpart with the same epsilon and groups
    (diffusers builds residual blocks with 1e-6 at attention down levels and on the up path, 1e-5 elsewhere)."""
    spec = reduced_spec()
    state = reference.state_dict()
    mapped, _ = get_family("unet").reference_state_dict(spec, state, reference="diffusers")
    name_of = {t.data_ptr(): k for k, t in mapped.items()}  # norm weights are mapped as they are
    ours = dict(build_network(spec).named_modules())
    eps_seen = set()
    for name, module in reference.named_modules():
        if not isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            continue
        target = name_of[state[f"{name}.weight"].data_ptr()]
        counterpart = ours[target.rsplit(".", 1)[0]]
        assert counterpart.eps == module.eps, (name, target)
        if isinstance(module, torch.nn.GroupNorm):
            assert counterpart.num_groups == module.num_groups, (name, target)
        eps_seen.add(module.eps)
    assert eps_seen == {1e-5, 1e-6}


def test_full_size_mapping_covers_every_parameter_of_both():
    """At diffusers' default config (built on the meta device: no memory) every reference key finds its
    place and every parameter of the svd preset is filled with a tensor of its shape."""
    with torch.device("meta"):
        reference = diffusers.UNetSpatioTemporalConditionModel()
        network = build_network(preset_spec("svd"))
    mapped, unused = get_family("unet").reference_state_dict(preset_spec("svd"), reference.state_dict(),
                                                             reference="diffusers")
    target = network.state_dict()
    assert unused == []
    assert set(mapped) == set(target)
    assert all(tuple(mapped[k].shape) == tuple(t.shape) for k, t in target.items())
    assert len(mapped) == len(reference.state_dict())


def test_changed_slots_and_missing_levels_leave_reference_keys_unused(reference):
    state = reference.state_dict()
    spec = reduced_spec(**{"down.0.0.res": "none", "down.0.0.attn": "attn1d", "mid.3.1.res": "conv3d"})
    mapped, unused = get_family("unet").reference_state_dict(spec, state, reference="diffusers")
    assert {k for k in unused if ".temporal_res_block." in k or ".time_mixer." in k} >= {
        "down_blocks.0.resnets.0.temporal_res_block.conv1.weight", "down_blocks.0.resnets.0.time_mixer.mix_factor",
        "mid_block.resnets.1.temporal_res_block.conv1.weight"}
    assert "down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight" in unused
    assert not any(k.startswith("units.down_0_0_res.") or k.startswith("units.down_0_0_attn.") for k in mapped)
    assert "units.down_0_0_resblock.conv1.weight" in mapped  # the spatial block is the same

    # Three levels against a four-level reference: up blocks are matched by level, not by position.
    three = ArchSpec.create(dataclasses.replace(REDUCED_BACKBONE, channels=(32, 64, 64), layers_per_block=(1, 2, 1),
                                                attention=(True, True, True)), get_preset("svd").temporal)
    mapped, unused = get_family("unet").reference_state_dict(three, state, reference="diffusers")
    assert mapped["units.up_0_0_resblock.conv1.weight"] is state["up_blocks.3.resnets.0.spatial_res_block.conv1.weight"]
    assert any(k.startswith("down_blocks.3.") for k in unused) and any(k.startswith("up_blocks.0.") for k in unused)


def test_unknown_reference_is_refused():
    with pytest.raises(SpecError) as info:
        get_family("unet").reference_state_dict(reduced_spec(), {}, reference="sgm")
    assert info.value.field == "reference" and info.value.value == "sgm"


def test_equivalence_benchmark_runs_a_case_and_writes_its_provenance(tmp_path, monkeypatch):
    """benchmarks/bench_equivalence.py on the svd case at a reduced config (the lead runs the full size)."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from svd_reference import REDUCED_REFERENCE

    path = Path(__file__).parents[1] / "benchmarks" / "bench_equivalence.py"
    module_spec = importlib.util.spec_from_file_location("bench_equivalence", path)
    bench = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, "bench_equivalence", bench)  # dataclasses resolve annotations through it
    module_spec.loader.exec_module(bench)
    full = bench.CASES["svd"]
    assert full.reference_kwargs == {} and full.spec().name == "svd"  # the real config, a small input
    case = dataclasses.replace(full, name="svd-reduced", reference_kwargs=REDUCED_REFERENCE, spec=reduced_spec)
    written = bench.write_result(bench.run_case(case), tmp_path)
    record = json.loads(written.read_text())
    assert written.name == "equivalence-svd-reduced.json"
    assert record["passed"] and record["max_abs_diff"] < 1e-4 < record["output_max_abs"]
    assert record["reference"]["unused_keys"] == [] and record["vidnas"]["params"] == record["reference"]["params"]
    assert record["environment"]["versions"]["torch"] and record["reference"]["version"]["diffusers"]
    assert record["input_shapes"][0] == [1, 3, 8, 16, 16]
