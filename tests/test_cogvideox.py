"""CogVideoX in the transformer family: joint text tokens, expert AdaLN, sine-cosine positions.

The `cogvideox-2b` preset against diffusers' CogVideoXTransformer3DModel (same parameters, same FLOPs
under the same counter, the same function once its weights are loaded), the joint-text contract
(which ops accept it, what refuses it), counting against traces, and everything downstream."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from conftest import op_cases, randomize_
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
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
from vidnas.search_space.families.dit.presets import COGVIDEOX_2B, COGVIDEOX_TEMPORAL

# diffusers' CogVideoXTransformer3DModel() (its defaults are CogVideoX 2B), built on the meta device.
COGVIDEOX_2B_PARAMS = 1_693_783_872


def tiny_backbone(**changes):
    return dataclasses.replace(preset_spec("cogvideox-tiny").backbone, **changes)


# The preset against diffusers ---------------------------------------------------------------------


def test_cogvideox_preset_parameter_count_is_exact():
    spec = preset_spec("cogvideox-2b")
    bb = spec.backbone
    assert (bb.pixel_frames, bb.pixel_height, bb.pixel_width, bb.grid) == (49, 480, 720, (13, 30, 45))
    assert count_spec(spec).params == COGVIDEOX_2B_PARAMS
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        reference = diffusers.CogVideoXTransformer3DModel()
        ours = build_network(spec)
    assert sum(p.numel() for p in reference.parameters()) == COGVIDEOX_2B_PARAMS
    assert sum(p.numel() for p in ours.parameters()) == COGVIDEOX_2B_PARAMS


@pytest.mark.parametrize("shape", [(9, 240, 368), (49, 480, 720)], ids=["9x240x368", "49x480x720"])
def test_cogvideox_flops_equal_the_reference_under_the_same_counter(shape):
    """FLOPs per call: count_spec against diffusers' model run under fake tensors with
    torch.utils.flop_counter (CPU attention registered), at a reduced and at the real shape."""
    diffusers = pytest.importorskip("diffusers")
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    frames, height, width = shape
    spec = preset_spec("cogvideox-2b", frames=frames, height=height, width=width)
    bb = spec.backbone
    with torch.device("meta"):
        reference = diffusers.CogVideoXTransformer3DModel()
    with _fake_mode():
        reference = reference.to_empty(device="cpu")
        args = (torch.empty(1, bb.frames, 16, bb.latent_height, bb.latent_width), torch.empty(1, 226, 4096),
                torch.empty(1))
        ref_flops, _ = count_module_call(reference, args, args)
    ours = count_spec(spec).flops
    assert abs(ours / ref_flops - 1) < 0.01, (ours, ref_flops)


def _reduced_reference(layers: int = 2, seed: int = 0):
    """A randomly initialised CogVideoXTransformer3DModel at a reduced config (CogVideoX 2B's code path:
    spatial patches, sine-cosine positions, expert AdaLN, joint attention) and the same vidnas backbone."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(seed)
    ref = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=24,
        text_embed_dim=20, num_layers=layers, sample_width=12, sample_height=8, sample_frames=9,
        max_text_seq_length=7).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # no parameter left at a special value (zeros, ones)
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    bb = dataclasses.replace(COGVIDEOX_2B, in_channels=4, out_channels=4, heads=2, head_dim=16, depth=layers,
                             ffn_dim=128, text_dim=20, text_tokens=7, freq_dim=32, time_dim=24, frames=3,
                             latent_height=8, latent_width=12)
    return ref, bb


def _load(spec: ArchSpec, ref) -> torch.nn.Module:
    net = build_network(spec).eval()
    mapped, unmapped = get_family("dit").reference_state_dict(spec, ref.state_dict(), reference="diffusers")
    net.load_state_dict(mapped, strict=True)
    assert unmapped == []
    return net


@pytest.mark.parametrize("frames", [3, 2], ids=["positions-at-sample-size", "positions-recomputed"])
def test_cogvideox_network_is_the_diffusers_function(frames):
    """The reference's weights, mapped by name, give the same outputs (max abs difference < 1e-4), in the
    reference's layout (B, T, C, H, W), at its sample size and at another clip length."""
    ref, bb = _reduced_reference()
    net = _load(ArchSpec.create(bb, COGVIDEOX_TEMPORAL), ref)
    gen = torch.Generator().manual_seed(7)
    sample = torch.randn(2, frames, 4, 8, 12, generator=gen)
    timestep, context = torch.tensor([500.0, 20.0]), torch.randn(2, 7, 20, generator=gen)
    with torch.no_grad():
        ours = net(sample, timestep, context)
        theirs = ref(sample, context, timestep, return_dict=False)[0]
    assert ours.shape == theirs.shape == sample.shape
    assert (ours - theirs).abs().max() < 1e-4
    assert theirs.abs().max() > 0.1  # a real signal, not two zeros


def test_cogvideox_mapping_reports_what_a_smaller_spec_cannot_hold():
    ref, bb = _reduced_reference()
    spec = ArchSpec.create(dataclasses.replace(bb, depth=1), {**COGVIDEOX_TEMPORAL, "block.0.ff": {
        "op": "tok_ff", "params": {"funnel": 0.5}}})
    mapped, unmapped = get_family("dit").reference_state_dict(spec, ref.state_dict(), reference="diffusers")
    assert all(k.startswith(("transformer_blocks.1.", "transformer_blocks.0.ff.")) for k in unmapped)
    assert "transformer_blocks.0.ff.net.0.proj.weight" in unmapped and "transformer_blocks.1.norm1.linear.weight" \
        in unmapped
    assert "units.block_0_ff.slot.branch.modulation.linear.weight" in mapped  # the modulation still fits
    assert "units.head.norm_final.weight" in mapped and "units.text_embed.linear_1.weight" in mapped


def test_reference_weights_load_into_a_searched_joint_architecture():
    """`--init-from`: the units a searched architecture shares with CogVideoX take its weights, the new
    ones keep their initialisation, and the report says which."""
    from vidnas.search_space import load_reference_weights

    ref, bb = _reduced_reference()
    spec = ArchSpec.create(bb, {**COGVIDEOX_TEMPORAL, "block.1.attn": "none", "block.0.temporal": "conv1d",
                                "block.0.ff": {"op": "tok_ff", "params": {"funnel": 0.5}}})
    net = build_network(spec)
    report = load_reference_weights(net, spec, ref.state_dict())
    assert any(k.startswith("transformer_blocks.1.attn1.") for k in report.unused)
    assert "transformer_blocks.0.ff.net.0.proj.weight" in report.unused
    assert "units.block_0_ff.slot.branch.proj_in.weight" in report.initialised
    assert any(k.startswith("units.block_0_temporal.") for k in report.initialised)
    assert "units.block_0_ff" in report.partial  # its modulation loaded, its narrower projections did not
    torch.testing.assert_close(net.units["block_0_attn"].slot.branch.attn.to_q.weight,
                               ref.transformer_blocks[0].attn1.to_q.weight)


def test_sincos_positions_are_diffusers_table():
    diffusers = pytest.importorskip("diffusers")
    from vidnas.search_space.ops.token_branches import sincos_positions

    theirs = diffusers.models.embeddings.get_3d_sincos_pos_embed(64, (7, 5), 3, 1.875, 1.0).flatten(0, 1).float()
    torch.testing.assert_close(sincos_positions(64, (3, 5, 7), 1.875, 1.0), theirs, rtol=0, atol=0)
    shifted = sincos_positions(64, (2, 5, 7), 1.875, 1.0, frame_offset=1)
    torch.testing.assert_close(shifted, theirs[35:], rtol=0, atol=0)


# The joint-text contract -------------------------------------------------------------------------


def test_joint_styles_are_validated_together():
    with pytest.raises(SpecError) as err:
        dataclasses.replace(preset_spec("dit-tiny").backbone, time_dim=24).validate()
    assert err.value.field == "backbone.time_dim"
    for change, field in [({"modulation": "adaln_table"}, "backbone.modulation"),
                          ({"text_mode": "cross"}, "backbone.modulation"),
                          ({"positions": "rope3d"}, "backbone.positions"),
                          ({"text_dim": 0}, "backbone.text_mode"),
                          ({"heads": 3, "head_dim": 12}, "backbone.heads"),
                          ({"qk_norm_eps": 1.5}, "backbone.qk_norm_eps"), ({"pos_scale_spatial": 0.0},
                                                                 "backbone.pos_scale_spatial")]:
        with pytest.raises(SpecError) as err:
            tiny_backbone(**change).validate()
        assert err.value.field == field, change


@pytest.mark.parametrize("slot,op", [("block.0.attn", "tok_spatial"), ("block.1.attn", "tok_blockcausal"),
                                     ("block.0.attn", "tok_window"), ("block.1.cross", "tok_xattn")])
def test_a_joint_text_spec_refuses_ops_that_cannot_honour_it(slot, op):
    with pytest.raises(SpecError) as err:
        preset_spec("cogvideox-tiny").replace_choices({slot: op})
    assert err.value.field == f"temporal.{slot}.op" and err.value.value == op
    assert "joint" in err.value.problem and "tok_full" in err.value.hint


def test_frames_ops_see_the_video_tokens_and_pass_the_text_unchanged():
    """A frames op at the `temporal` slot of a joint backbone: the text prefix comes out as it went in,
    the video tokens change."""
    spec = preset_spec("cogvideox-tiny").replace_choices({"block.0.temporal": "attn1d"})
    net = build_network(spec).eval()
    randomize_(net, seed=3, std=0.1)
    sample, timestep, context, _ = net.example_inputs(batch=2)
    prefix = spec.backbone.prefix_tokens
    captured = {}
    unit = net.unit("block.0.temporal")
    unit.register_forward_hook(lambda module, args, out: captured.update(x=args[0], y=out))
    with torch.no_grad():
        net(sample, timestep, context)
    x, y = captured["x"], captured["y"]
    assert x.shape == y.shape == (2, prefix + spec.backbone.tokens, spec.backbone.dim)
    torch.testing.assert_close(y[:, :prefix], x[:, :prefix], rtol=0, atol=0)
    assert (y[:, prefix:] - x[:, prefix:]).abs().max() > 1e-3


def test_a_causal_joint_text_network_streams_chunk_by_chunk():
    """With only per-token ops and causal frame ops the text tokens never see the video, so the stream
    (text prefix with every chunk, positions offset) equals the whole clip."""
    spec = ArchSpec.create(tiny_backbone(), {
        **COGVIDEOX_TEMPORAL, "block.*.attn": "none",
        "block.0.temporal": {"op": "conv1d", "params": {"causal": True, "use_temb": True}},
        "block.1.temporal": "attn1d_causal"})
    assert spec.is_causal
    net = build_network(spec).eval()
    randomize_(net, seed=4, std=0.1)
    sample, timestep, context, _ = net.example_inputs(batch=1)
    with torch.no_grad():
        full = net(sample, timestep, context)
        state: dict = {}
        parts = [net.stream(sample[:, i : i + 2], timestep, state, commit=True, context=context) for i in (0, 2)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


# Counting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_joint_counts_match_a_trace_of_the_whole_network(seed):
    """count_spec (closed form) equals running the whole network under fake tensors: params and FLOPs
    exactly, activation peak within 1 %; the per-unit trace gives the same params and FLOPs."""
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    spec = get_space("cogvideox-tiny").random_specs(1, seed=seed)[0]
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
    assert abs(report.activation_bytes / peak - 1) < 0.01, (report.activation_bytes, peak)
    traced = count_spec(spec, batch=2, method="trace")
    assert (traced.params, traced.flops) == (report.params, report.flops)


JOINT_STYLE_VARIANTS = [
    {},
    {"positions": "none", "qk_norm": "none", "norm": "layer_norm"},
    {"patch_size": (2, 2, 2), "in_channels": 6, "text_projection": "mlp", "qk_norm": "rms_across_heads"},
]


@pytest.mark.parametrize("style", JOINT_STYLE_VARIANTS, ids=lambda s: ",".join(s) or "cogvideox")
def test_every_joint_unit_cost_matches_its_trace(style):
    from vidnas.search_space._tracing import trace_unit

    spec = ArchSpec.create(tiny_backbone(**style), {
        **COGVIDEOX_TEMPORAL, "block.0.temporal": {"op": "conv1d", "params": {"use_temb": True}},
        "block.1.temporal": "xattn1d", "block.1.attn": {"op": "tok_full", "params": {"heads": 1}},
        "block.0.ff": {"op": "tok_ff", "params": {"funnel": 0.5}}})
    for batch in (1, 2):
        for plan in (p for p in build_plan(spec) if not p.is_identity):
            cost = unit_cost(plan, batch)
            params, flops, peak = trace_unit(plan, spec, batch)
            assert (cost.params, cost.flops) == (params, flops), plan.name
            assert abs(cost.peak * 4 / peak - 1) < 0.02, (plan.name, cost.peak * 4, peak)


CROSS_STYLE_VARIANTS = [
    {"qk_norm": "layer_norm"},
    {"qk_norm": "layer_norm", "positions": "sincos3d", "norm": "layer_norm_affine", "text_projection": "linear",
     "qk_norm_eps": 1e-6},
    {"qk_norm": "layer_norm", "positions": "none", "cross_attn_norm": False},
]


@pytest.mark.parametrize("style", CROSS_STYLE_VARIANTS, ids=lambda s: ",".join(s))
def test_cogvideox_styles_on_a_cross_attention_backbone_run_and_cost_their_trace(style):
    """The styles CogVideoX brought (per-head q/k LayerNorm, sine-cosine positions, affine norms, a linear
    text projection) work on a Wan-style backbone too, cross-attention included."""
    from vidnas.search_space._tracing import trace_unit
    from vidnas.search_space.families.dit.presets import WAN_TEMPORAL

    bb = dataclasses.replace(preset_spec("dit-tiny").backbone, depth=1, **style)
    spec = ArchSpec.create(bb, {**WAN_TEMPORAL, "block.0.temporal": {"op": "conv1d", "params": {"use_temb": True}}})
    net = build_network(spec).eval()
    randomize_(net, seed=5, std=0.1)
    with torch.no_grad():
        assert torch.isfinite(net(*net.example_inputs(batch=2))).all()
    for batch in (1, 2):
        for plan in (p for p in build_plan(spec) if not p.is_identity):
            cost = unit_cost(plan, batch)
            params, flops, peak = trace_unit(plan, spec, batch)
            assert (cost.params, cost.flops) == (params, flops), plan.name
            assert abs(cost.peak * 4 / peak - 1) < 0.02, (plan.name, cost.peak * 4, peak)


def _frames_op_cases():
    first: dict[str, dict] = {}
    for op, params in op_cases():
        if op != "none":
            first.setdefault(op, params)
    return list(first.items())


@pytest.mark.parametrize("case", _frames_op_cases(), ids=lambda c: c[0])
def test_every_frames_op_runs_beside_joint_text_and_costs_its_trace(case):
    from vidnas.search_space._tracing import trace_unit

    op, params = case
    spec = preset_spec("cogvideox-tiny").replace_choices({"block.1.temporal": {"op": op, "params": params}})
    net = build_network(spec).eval()
    randomize_(net, seed=2, std=0.05)
    with torch.no_grad():
        assert torch.isfinite(net(*net.example_inputs(batch=2))).all()
    plan = next(p for p in build_plan(spec) if p.name == "block.1.temporal")
    for batch in (1, 2):
        cost = unit_cost(plan, batch)
        params_traced, flops, peak = trace_unit(plan, spec, batch)
        assert (cost.params, cost.flops) == (params_traced, flops)
        assert abs(cost.peak * 4 / peak - 1) < 0.02, (batch, cost.peak * 4, peak)


# Downstream ---------------------------------------------------------------------------------------

runner = CliRunner()


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return json.loads(result.stdout)


def test_space_show_reports_the_preset_with_exact_params():
    shown = invoke_json("space", "show", "cogvideox-2b")
    assert shown["params"] == COGVIDEOX_2B_PARAMS
    assert (shown["frames"], shown["height"], shown["width"]) == (49, 480, 720)
    assert shown["latent"] == {"channels": 16, "frames": 13, "height": 60, "width": 90}
    assert shown["op_counts"] == {"tok_full": 30, "none": 60, "tok_ff": 30}


def test_table_build_and_roofline_predict_on_the_joint_space(tmp_path):
    table = tmp_path / "t.parquet"
    built = invoke_json("lut", "build", "--space", "cogvideox-tiny", "--backend", "debug", "--out", str(table),
                        "--fit", "2", "--quick")
    assert built["coverage"]["missing"] == [] and built["entries"] == built["coverage"]["needed"]
    spec = get_space("cogvideox-tiny").random_specs(1, seed=2)[0]
    path = spec.save(tmp_path / "spec.json")
    assert invoke_json("latency", "predict", str(path), "--lut", str(table))["naive_ms"] > 0
    estimate = invoke_json("latency", "predict", "cogvideox-2b", "--roofline", "h100")
    assert estimate["estimate"] and estimate["per_call_ms"] >= count_spec(preset_spec("cogvideox-2b")).flops \
        / 989.4e12 * 1000


def test_every_unit_of_the_joint_space_exports_to_onnx(tmp_path):
    """Every distinct unit the table builder times runs under ONNX Runtime as in torch."""
    import onnxruntime as ort

    from vidnas.latency_models._builder import space_units
    from vidnas.search_space import UnitHarness, export_onnx, onnx_input_name, randomize_zero_layers_
    from vidnas.search_space import unit_example_inputs as inputs_of

    space = get_space("cogvideox-tiny")
    units = space_units(space)
    assert {p.kind for p in units} == {"time_embed", "text_embed", "patch_embed", "head", "temporal"}
    for i, plan in enumerate(units):
        harness = randomize_zero_layers_(UnitHarness(plan).eval())
        args = inputs_of(plan, space.base.backbone, 1)
        with torch.no_grad():
            expected = harness(*args).numpy()
        session = ort.InferenceSession(str(export_onnx(harness, args, tmp_path / f"{i}.onnx")),
                                       providers=["CPUExecutionProvider"])
        arrays = {onnx_input_name(k): a.numpy() for k, a in enumerate(args)}
        (got,) = session.run(None, {x.name: arrays[x.name] for x in session.get_inputs()})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=plan.name)


def test_a_joint_text_network_exports_to_onnx_with_parity_and_converts_to_coreml(tmp_path):
    import onnxruntime as ort

    from vidnas.search_space import NetworkHarness, export_onnx, onnx_input_name, randomize_zero_layers_
    from vidnas.search_space._export import convert_coreml

    spec = get_space("cogvideox-tiny").random_specs(1, seed=4)[0]
    harness = NetworkHarness(randomize_zero_layers_(build_network(spec))).eval()
    args = harness.example_inputs(1)
    with torch.no_grad():
        expected = harness(*args).numpy()
    session = ort.InferenceSession(str(export_onnx(harness, args, tmp_path / "net.onnx")),
                                   providers=["CPUExecutionProvider"])
    arrays = {onnx_input_name(i): a.numpy() for i, a in enumerate(args)}
    (got,) = session.run(None, {x.name: arrays[x.name] for x in session.get_inputs()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert convert_coreml(harness, args).get_spec().WhichOneof("Type") == "mlProgram"  # conversion only


def _bench(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(name, path)
    bench = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = bench  # its dataclasses resolve their annotations through it
    module_spec.loader.exec_module(bench)
    return bench


def test_counting_benchmark_runs_the_cogvideox_entry_at_a_reduced_size(tmp_path):
    pytest.importorskip("diffusers")
    result = _bench("bench_dit_counting").main(["--model", "cogvideox-2b", "--reduced", "--repeats", "0", "--out",
                                                str(tmp_path / "r.json")])
    counts = result["counts"]
    assert counts["params"]["vidnas_analytic"] == counts["params"]["vidnas_network"] == counts["params"]["reference"]
    assert counts["flops"]["vidnas_analytic"] == counts["flops"]["vidnas_trace"] == counts["flops"]["reference"]
    assert result["equivalence"]["unmapped"] == [] and result["equivalence"]["max_abs_difference"] < 1e-4


def test_equivalence_benchmark_case_runs_at_a_reduced_config():
    """benchmarks/bench_equivalence.py's cogvideox-2b case (full size is the lead's) on a reduced reference."""
    pytest.importorskip("diffusers")
    bench = _bench("bench_equivalence")
    case = dataclasses.replace(
        bench.CASES["cogvideox-2b"],
        reference_kwargs=dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=24, text_embed_dim=32,
                              num_layers=2, max_text_seq_length=8),
        spec=lambda: ArchSpec.create(tiny_backbone(in_channels=16, out_channels=16, text_dim=32, text_tokens=8,
                                                   time_dim=24, ffn_dim=128),
                                     COGVIDEOX_TEMPORAL).resized(frames=5, height=64, width=96))
    record = bench.run_case(case)
    assert record["passed"] and record["reference"]["unused_keys"] == []
    assert record["reference"]["params"] == record["vidnas"]["params"]
