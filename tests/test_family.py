"""The backbone seam: families behind one registry, spec format 2 (version 1 still loads),
one plan interpreter, and build_network as the only way vidnas builds a network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vidnas._errors import SpecError
from vidnas.search_space import (
    PRESETS,
    ArchSpec,
    PlanWalk,
    UnitPlan,
    build_network,
    build_plan,
    count_spec,
    get_family,
    get_space,
    list_families,
    module_key,
    preset_spec,
    unit_cost,
)


def test_unet_is_a_registered_family_and_specs_name_theirs():
    assert "unet" in list_families()
    spec = preset_spec("tiny")
    assert spec.family == "unet" and get_family("unet").backbone_type is type(spec.backbone)
    data = spec.to_dict()
    assert data["version"] == 2 and data["family"] == "unet"
    assert ArchSpec.from_dict(data) == spec


def test_version_1_specs_load_with_the_same_arch_id():
    """Files written before families existed (no `family`, version 1) are UNets; their ids,
    which key caches and tables, are unchanged."""
    for spec in [preset_spec("tiny"), *get_space("tiny").random_specs(3, seed=5)]:
        v1 = spec.to_dict()
        del v1["family"]
        v1["version"] = 1
        loaded = ArchSpec.from_dict(v1)
        assert loaded == spec and loaded.arch_id == spec.arch_id
    # A pinned id: the tiny preset's id from the version-1 era.
    assert preset_spec("tiny").arch_id == "1a65752282fb8d6e"


def test_format_errors_name_family_and_version():
    data = preset_spec("tiny").to_dict()
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict({**data, "family": "rnn"})
    assert err.value.field == "family" and err.value.value == "rnn" and "unet" in str(err.value)
    missing = dict(data)
    del missing["family"]
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(missing)
    assert err.value.field == "family"
    v1_with_family = {**data, "version": 1}
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(v1_with_family)
    assert err.value.field == "family"


def test_plan_walk_pops_what_was_pushed():
    plans = [
        UnitPlan("a", "k", {}, (1, 1, 1), (1, 1, 1), 1, push="skip"),
        UnitPlan("b", "k", {}, (1, 1, 1), (1, 1, 1), 1, push="residual"),
        UnitPlan("c", "k", {}, (1, 1, 1), (1, 1, 1), 1, pop="residual"),
        UnitPlan("d", "k", {}, (1, 1, 1), (1, 1, 1), 1, pop="skip"),
    ]
    seen = []
    walk = PlanWalk()

    def apply(plan, h, aux):
        seen.append((plan.name, h, aux, sorted(map(str, walk.alive()))))
        return h + plan.name

    assert walk.run(plans, "x", apply) == "xabcd"
    # b pushes its input ("xa") before running; c pops it; d pops a's output ("xa").
    assert seen == [("a", "x", None, []), ("b", "xa", None, ["xa", "xa"]), ("c", "xab", "xa", ["xa"]),
                    ("d", "xabc", "xa", [])]


def test_build_network_builds_what_the_plan_lists():
    spec = preset_spec("tiny")
    net = build_network(spec)
    assert [p.name for p in net.plan] == [p.name for p in build_plan(spec)]
    assert set(net.units) == {p.name.replace(".", "_") for p in build_plan(spec)}


def test_nothing_outside_the_backbone_modules_builds_a_network_directly():
    """Every network is built through build_network (proxies, latency, export, supernet...)."""
    root = Path(__file__).resolve().parent.parent / "vidnas"
    allowed = re.compile(r"search_space/families/[a-z_]+/[a-z_]+\.py$")
    offenders = []
    for path in root.rglob("*.py"):
        if allowed.search(str(path)):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(VideoUNet|VideoDiT)\(", line):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_unet_spec_json_mentions_its_family(tmp_path):
    path = preset_spec("tiny").save(tmp_path / "tiny.json")
    assert json.loads(path.read_text())["family"] == "unet"


# Shared suite: every registered family (built-in or a plugin's) -------------------------------------


def smallest_preset(family: str):
    """The spec of ``family``'s preset with the fewest FLOPs per call (skips a family without presets)."""
    names = [name for name, preset in PRESETS.items() if preset.backbone.family == family]
    if not names:
        pytest.skip(f"family `{family}` has no preset")
    return min((preset_spec(name) for name in names), key=lambda spec: count_spec(spec).flops)


@pytest.mark.parametrize("family", list_families())
def test_every_family_honours_the_network_contract(family):
    """``forward(sample, timestep, context, added_time_ids)`` maps ``(B, T, C_in, H, W)`` to
    ``(B, T, C_out, H, W)``; the network exposes the plan it runs, its units keyed by
    ``module_key`` and ``example_inputs``; every unit runs alone on its family's inputs."""
    import torch

    from vidnas.search_space import UnitHarness, unit_example_inputs

    spec = smallest_preset(family)
    bb, plans = spec.backbone, build_plan(spec)
    net = build_network(spec).eval()
    assert [p.name for p in net.plan] == [p.name for p in plans] and {p.family for p in plans} == {family}
    assert set(net.units) == {module_key(p.name) for p in plans}
    assert count_spec(spec).params == sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        out = net(*net.example_inputs(2, seed=0))
        assert tuple(out.shape) == (2, bb.frames, bb.output_channels, bb.latent_height, bb.latent_width)
        for plan in {p.signature_id: p for p in plans if not p.is_identity}.values():
            inputs = unit_example_inputs(plan, bb, 2, seed=0)
            assert get_family(family).batch_of(plan, inputs) == 2, plan.name
            assert torch.isfinite(UnitHarness(plan).eval()(*inputs)).all(), plan.name


@pytest.mark.parametrize("family", list_families())
def test_every_family_unit_cost_matches_its_trace(family):
    """Where a family states a unit's cost in closed form, params and FLOPs equal a fake-tensor trace."""
    from vidnas.search_space._tracing import trace_unit

    spec = smallest_preset(family)
    for plan in {p.signature_id: p for p in build_plan(spec) if not p.is_identity}.values():
        cost = unit_cost(plan, 2)
        if cost is not None:
            params, flops, _ = trace_unit(plan, spec, 2)
            assert (cost.params, cost.flops) == (params, flops), plan.name
