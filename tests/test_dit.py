"""The video diffusion transformer family: spec, slots, network, streaming, counting against traces,
and the Wan 2.1 / CausVid presets against diffusers' WanTransformer3DModel (same parameters,
same FLOPs under the same counter, the same function once its weights are loaded)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import randomize_

from vidnas._errors import SpecError
from vidnas.search_space import (
    ArchSpec,
    build_network,
    build_plan,
    count_spec,
    get_family,
    get_space,
    preset_spec,
    unit_cost,
)
from vidnas.search_space.families.dit.presets import WAN_TEMPORAL
from vidnas.search_space.families.dit.spec import DiTBackbone

# diffusers' WanTransformer3DModel with Wan 2.1 1.3B's config, built on the meta device.
WAN_1_3B_PARAMS = 1_418_996_800
WAN_1_3B_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                       out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                       qk_norm="rms_norm_across_heads", eps=1e-6)


# Spec ---------------------------------------------------------------------------------------------


def test_dit_specs_name_their_family_and_round_trip(tmp_path):
    spec = preset_spec("dit-tiny")
    assert spec.family == "dit" and get_family("dit").backbone_type is DiTBackbone
    path = spec.save(tmp_path / "dit.json")
    loaded = ArchSpec.load(path)
    assert loaded == spec and loaded.arch_id == spec.arch_id and loaded.backbone.patch_size == (1, 2, 2)
    assert [s.name for s in spec.slots()[:4]] == ["block.0.attn", "block.0.temporal", "block.0.cross", "block.0.ff"]
    layouts = {s.position: (s.shape.layout, s.shape.channels_last) for s in spec.slots()}
    assert layouts == {"attn": ("tokens", False), "temporal": ("frames", True), "cross": ("tokens", False),
                       "ff": ("tokens", False)}


def test_backbone_errors_name_the_field():
    bb = preset_spec("dit-tiny").backbone
    for change, field in [({"heads": 0}, "backbone.heads"), ({"patch_size": (1, 3, 2)}, "backbone.latent_height"),
                          ({"qk_norm": "layer_norm_per_head"}, "backbone.qk_norm"),
                          ({"modulation": "expert_adaln"}, "backbone.modulation"),
                          ({"out_channels": 8}, "backbone.out_channels"), ({"head_dim": 5}, "backbone.head_dim")]:
        with pytest.raises(SpecError) as err:
            dataclasses.replace(bb, **change).validate()
        assert err.value.field == field
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict({**preset_spec("dit-tiny").to_dict(), "backbone": {"depth": 2, "mlp": 3}})
    assert err.value.field == "backbone.mlp"


def test_pixel_sizes_map_to_latents_and_width_scales_heads():
    spec = preset_spec("wan2.1-1.3b")
    bb = spec.backbone
    assert (bb.frames, bb.latent_height, bb.latent_width, bb.grid) == (21, 60, 104, (21, 30, 52))
    assert (bb.pixel_frames, bb.pixel_height, bb.pixel_width) == (81, 480, 832)
    small = preset_spec("wan2.1-1.3b", frames=17, height=256, width=448, width_mult=0.5)
    assert (small.backbone.frames, small.backbone.latent_height, small.backbone.heads,
            small.backbone.head_dim) == (5, 32, 6, 128)
    with pytest.raises(SpecError) as err:
        preset_spec("wan2.1-1.3b", frames=80)
    assert err.value.field == "frames" and "77 or 81" in str(err.value)
    with pytest.raises(SpecError) as err:
        preset_spec("wan2.1-1.3b", height=472)
    assert err.value.field == "height" and "16" in str(err.value)


# The network -------------------------------------------------------------------------------------


def test_forward_shapes_and_identity_of_inserted_ops():
    """Token ops start as the identity: the network equals the one without them, given the same weights."""
    spec = preset_spec("dit-tiny")
    net = build_network(spec).eval()
    args = net.example_inputs(batch=2)
    with torch.no_grad():
        out = net(*args)
    bb = spec.backbone
    assert out.shape == (2, bb.frames, bb.out_channels, bb.latent_height, bb.latent_width)
    bare = build_network(spec.replace_choices({s: "none" for s in spec.temporal}))
    bare.load_state_dict({k: v for k, v in net.state_dict().items() if k in bare.state_dict()}, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(bare(*args), out)
    randomize_(net, seed=1, std=0.1)
    with torch.no_grad():
        assert not torch.allclose(net(*args), out)


@pytest.mark.parametrize("seed", range(4))
def test_random_dit_tiny_architectures_run(seed):
    spec = get_space("dit-tiny").random_specs(1, seed=seed)[0]
    net = build_network(spec).eval()
    randomize_(net, seed=seed, std=0.05)
    with torch.no_grad():
        out = net(*net.example_inputs(batch=1))
    assert torch.isfinite(out).all()


def _causal_tiny() -> ArchSpec:
    return preset_spec("dit-tiny").replace_choices({
        "block.0.attn": {"op": "tok_blockcausal", "params": {"chunk": 2}},
        "block.1.attn": {"op": "tok_causal_window", "params": {"chunk": 1, "window": 1}},
        "block.2.attn": {"op": "tok_window", "params": {"reach": 0}},
        "block.0.temporal": {"op": "conv1d", "params": {"causal": True, "use_temb": True}},
        "block.1.temporal": "attn1d_causal",
        "block.2.temporal": {"op": "shift", "params": {"causal": True}},
    })


def test_causal_network_streams_chunk_by_chunk():
    """A transformer whose ops are all causal gives the same output chunk by chunk, with its KV caches
    and rotary positions offset by the frames already seen, as on the whole clip."""
    spec = _causal_tiny()
    assert spec.is_causal and spec.causal_block_frames == 2
    net = build_network(spec).eval()
    randomize_(net, seed=4, std=0.1)
    sample, timestep, context, _ = net.example_inputs(batch=1)
    with torch.no_grad():
        full = net(sample, timestep, context)
        state: dict = {}
        parts = []
        for start in range(0, spec.backbone.frames, 2):
            chunk = sample[:, start : start + 2]
            preview = net.stream(chunk, timestep, state, commit=False, context=context)
            parts.append(net.stream(chunk, timestep, state, commit=True, context=context))
            torch.testing.assert_close(preview, parts[-1])
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_non_causal_network_refuses_to_stream():
    net = build_network(preset_spec("dit-tiny"))
    sample, timestep, context, _ = net.example_inputs()
    with pytest.raises(ValueError, match="causal"):
        net.stream(sample[:, :2], timestep, {}, commit=True, context=context)


# Counting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_a_trace_of_the_whole_network(seed):
    """count_spec (closed form, assembled from the plan) equals running the whole network under fake
    tensors: params and FLOPs exactly, activation peak within 1 %."""
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    spec = get_space("dit-tiny").random_specs(1, seed=seed)[0]
    report = count_spec(spec, batch=2)
    with torch.device("meta"):
        net = build_network(spec)
    assert report.params == sum(p.numel() for p in net.parameters())
    with _fake_mode():
        net = net.to_empty(device="cpu")
        bb = spec.backbone
        args = (torch.empty(2, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width), torch.empty(2),
                torch.empty(2, bb.text_tokens, bb.text_dim))
        flops, peak = count_module_call(net, args, args)
    assert report.flops == flops
    assert abs(report.activation_bytes / peak - 1) < 0.01
    traced = count_spec(spec, batch=2, method="trace")
    assert (traced.params, traced.flops) == (report.params, report.flops)


STYLE_VARIANTS = [
    {"qk_norm": "none", "positions": "none", "norm": "rms_norm", "cross_attn_norm": False, "ff_activation": "gelu"},
    {"patch_size": (2, 2, 2), "in_channels": 6},
    {"text_dim": 0, "heads": 3},
]


@pytest.mark.parametrize("style", STYLE_VARIANTS, ids=lambda s: ",".join(s))
def test_every_unit_cost_matches_its_trace_in_every_style(style):
    from vidnas.search_space._tracing import trace_unit

    bb = dataclasses.replace(preset_spec("dit-tiny").backbone, depth=1, **style)
    temporal = {**WAN_TEMPORAL, "block.0.temporal": {"op": "conv1d", "params": {"use_temb": True}}}
    if not bb.text_dim:
        temporal["block.0.cross"] = "none"
    spec = ArchSpec.create(bb, temporal)
    for batch in (1, 2):
        for plan in (p for p in build_plan(spec) if not p.is_identity):
            cost = unit_cost(plan, batch)
            params, flops, peak = trace_unit(plan, spec, batch)
            assert (cost.params, cost.flops) == (params, flops), plan.name
            assert abs(cost.peak * 4 / peak - 1) < 0.02, (plan.name, cost.peak * 4, peak)


def test_block_dropping_removes_every_parameter_of_the_block():
    spec = preset_spec("dit-tiny")
    dropped = spec.replace_choices({f"block.1.{p}": "none" for p in ("attn", "temporal", "cross", "ff")})
    full, less = count_spec(spec), count_spec(dropped)
    per_block = sum(u.params for u in full.units if u.name.startswith("block.1."))
    assert less.params == full.params - per_block
    assert sum(u.flops for u in less.units if u.name.startswith("block.1.")) == 0
    with torch.device("meta"):
        net = build_network(dropped)
    assert not any(k.startswith("units.block_1_") for k in net.state_dict())


# Against diffusers' WanTransformer3DModel ----------------------------------------------------------


def _reduced_reference(patch=(1, 2, 2), layers=2, seed=0):
    """A randomly initialised WanTransformer3DModel at a reduced config (Wan's code path, small sizes)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    ref = diffusers.WanTransformer3DModel(patch_size=patch, num_attention_heads=2, attention_head_dim=12,
                                          in_channels=4, out_channels=4, text_dim=32, freq_dim=16, ffn_dim=40,
                                          num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                          eps=1e-6).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # no parameter left at a special value (zeros, ones)
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    bb = DiTBackbone(in_channels=4, out_channels=4, patch_size=patch, heads=2, head_dim=12, depth=layers, ffn_dim=40,
                     text_dim=32, text_tokens=7, freq_dim=16, frames=4, latent_height=8, latent_width=12)
    return ref, bb


def _load(spec: ArchSpec, ref) -> torch.nn.Module:
    net = build_network(spec).eval()
    mapped, unmapped = get_family("dit").reference_state_dict(spec, ref.state_dict(), reference="diffusers")
    net.load_state_dict(mapped, strict=True)
    assert unmapped == []
    return net


@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2)], ids=["patch122", "patch222"])
def test_wan_network_is_the_diffusers_function(patch):
    """The reference's weights, mapped by name, give the same outputs (max abs difference < 1e-4)."""
    ref, bb = _reduced_reference(patch)
    net = _load(ArchSpec.create(bb, WAN_TEMPORAL), ref)
    gen = torch.Generator().manual_seed(7)
    sample = torch.randn(2, 4, 4, 8, 12, generator=gen)
    timestep, context = torch.tensor([500.0, 20.0]), torch.randn(2, 7, 32, generator=gen)
    with torch.no_grad():
        ours = net(sample, timestep, context)
        theirs = ref(sample.transpose(1, 2), timestep, context, return_dict=False)[0].transpose(1, 2)
    assert (ours - theirs).abs().max() < 1e-4


def test_causvid_first_chunk_is_wan_on_that_chunk_and_later_chunks_never_see_the_future():
    """Block-causal attention (CausVid's) on the reference's weights: the first chunk sees only itself,
    so it equals diffusers' Wan run on that chunk alone; later chunks stream from the cache."""
    ref, bb = _reduced_reference()
    spec = ArchSpec.create(bb, {**WAN_TEMPORAL, "block.*.attn": {"op": "tok_blockcausal", "params": {"chunk": 2}}})
    net = _load(spec, ref)
    gen = torch.Generator().manual_seed(8)
    sample, timestep, context = torch.randn(1, 4, 4, 8, 12, generator=gen), torch.tensor([300.0]), \
        torch.randn(1, 7, 32, generator=gen)
    with torch.no_grad():
        ours = net(sample, timestep, context)
        first = ref(sample[:, :2].transpose(1, 2), timestep, context, return_dict=False)[0].transpose(1, 2)
        whole = ref(sample.transpose(1, 2), timestep, context, return_dict=False)[0].transpose(1, 2)
        state: dict = {}
        streamed = torch.cat([net.stream(sample[:, i : i + 2], timestep, state, commit=True, context=context)
                              for i in (0, 2)], dim=1)
    assert (ours[:, :2] - first).abs().max() < 1e-4
    assert (ours[:, 2:] - whole[:, 2:]).abs().max() > 1e-3  # the full-attention reference sees the future
    torch.testing.assert_close(streamed, ours, rtol=1e-4, atol=1e-5)


def test_reference_mapping_reports_what_a_smaller_spec_cannot_hold():
    ref, bb = _reduced_reference()
    spec = ArchSpec.create(dataclasses.replace(bb, depth=1), {**WAN_TEMPORAL, "block.0.ff": {
        "op": "tok_ff", "params": {"funnel": 0.5}}, "block.0.cross": "none"})
    mapped, unmapped = get_family("dit").reference_state_dict(spec, ref.state_dict(), reference="diffusers")
    assert all(k.startswith("blocks.1.") or ".attn2." in k or k.startswith("blocks.0.norm2") or
               k.startswith("blocks.0.ffn.") for k in unmapped)
    assert any(k.startswith("blocks.1.") for k in unmapped) and "blocks.0.ffn.net.0.proj.weight" in unmapped
    assert "units.block_0_attn.slot.branch.attn.to_q.weight" in mapped
    assert "units.block_0_ff.slot.branch.modulation.table" in mapped  # the table's rows 3-5 still fit
    with pytest.raises(SpecError) as err:
        get_family("dit").reference_state_dict(spec, ref.state_dict(), reference="original")
    assert err.value.field == "reference"


def test_wan_preset_parameter_count_is_exact():
    spec = preset_spec("wan2.1-1.3b")
    assert count_spec(spec).params == WAN_1_3B_PARAMS
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        reference = diffusers.WanTransformer3DModel(**WAN_1_3B_CONFIG)
        ours = build_network(spec)
    assert sum(p.numel() for p in reference.parameters()) == WAN_1_3B_PARAMS
    assert sum(p.numel() for p in ours.parameters()) == WAN_1_3B_PARAMS


@pytest.mark.parametrize("shape", [(9, 128, 128), (81, 480, 832)], ids=["9x128x128", "81x480x832"])
def test_wan_preset_flops_equal_the_reference_under_the_same_counter(shape):
    """FLOPs per call: count_spec against diffusers' model run under fake tensors with
    torch.utils.flop_counter (CPU attention registered), at a reduced and at the real shape."""
    diffusers = pytest.importorskip("diffusers")
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    frames, height, width = shape
    spec = preset_spec("wan2.1-1.3b", frames=frames, height=height, width=width)
    bb = spec.backbone
    with torch.device("meta"):
        reference = diffusers.WanTransformer3DModel(**WAN_1_3B_CONFIG)
    with _fake_mode():
        reference = reference.to_empty(device="cpu")
        args = (torch.empty(1, 16, bb.frames, bb.latent_height, bb.latent_width), torch.empty(1),
                torch.empty(1, 512, 4096))
        ref_flops, _ = count_module_call(reference, args, args)
    ours = count_spec(spec).flops
    assert abs(ours / ref_flops - 1) < 0.01, (ours, ref_flops)


def test_causvid_is_wan_with_block_causal_attention():
    wan, causvid = preset_spec("wan2.1-1.3b"), preset_spec("causvid")
    assert causvid.backbone == wan.backbone and causvid.is_causal and not wan.is_causal
    assert causvid.causal_block_frames == 3
    assert count_spec(causvid).params == WAN_1_3B_PARAMS
    # 7 chunks of 3 frames: chunk j attends j + 1 chunks, so attention costs (1 + ... + 7) / 7^2 of Wan's.
    full = {u.name: u.flops for u in count_spec(wan).units if u.name == "block.0.attn"}["block.0.attn"]
    causal = {u.name: u.flops for u in count_spec(causvid).units if u.name == "block.0.attn"}["block.0.attn"]
    t, h, w = wan.backbone.grid
    tokens, d = t * h * w, wan.backbone.dim
    projections = 8 * tokens * d * d
    assert causal - projections == (full - projections) * 28 // 49


def test_counting_benchmark_runs_at_a_reduced_size(tmp_path):
    """benchmarks/bench_dit_counting.py (the full-size run is the lead's) on a two-block model."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("diffusers")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dit_counting.py"
    module_spec = importlib.util.spec_from_file_location("bench_dit_counting", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    result = bench.main(["--reduced", "--repeats", "0", "--out", str(tmp_path / "r.json")])
    counts = result["counts"]
    assert counts["params"]["vidnas_analytic"] == counts["params"]["vidnas_network"] == counts["params"]["reference"]
    assert counts["flops"]["vidnas_analytic"] == counts["flops"]["vidnas_trace"] == counts["flops"]["reference"]
    assert result["equivalence"]["unmapped"] == [] and result["equivalence"]["max_abs_difference"] < 1e-4
    assert (tmp_path / "r.json").exists()


def _frames_op_cases():
    """The first tested parameters of every op of the frame contract."""
    from conftest import op_cases

    first: dict[str, dict] = {}
    for op, params in op_cases():
        if op != "none":
            first.setdefault(op, params)
    return list(first.items())


@pytest.mark.parametrize("case", _frames_op_cases(), ids=lambda c: c[0])
def test_every_frames_op_runs_at_the_temporal_slot_of_a_transformer(case):
    """The `temporal` slot sees the tokens as channels-last frames: any op of the frame contract runs
    there, and its unit (adapter included) costs what a trace of it measures."""
    from vidnas.search_space._tracing import trace_unit

    op, params = case
    spec = preset_spec("dit-tiny").replace_choices({"block.1.temporal": {"op": op, "params": params}})
    net = build_network(spec).eval()
    randomize_(net, seed=2, std=0.05)
    with torch.no_grad():
        assert torch.isfinite(net(*net.example_inputs(batch=2))).all()
    plan = next(p for p in build_plan(spec) if p.name == "block.1.temporal")
    cost = unit_cost(plan, 2)
    params_traced, flops, peak = trace_unit(plan, spec, 2)
    assert (cost.params, cost.flops) == (params_traced, flops)
    assert abs(cost.peak * 4 / peak - 1) < 0.02, (cost.peak * 4, peak)
