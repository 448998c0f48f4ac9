"""The LTX-Video and Latte presets against diffusers' LTXVideoTransformer3DModel and
LatteTransformer3DModel: the same parameters, the same FLOPs under the same counter, the same
function once the reference's weights are loaded; their styles' costs against traces; and
everything downstream (space show, tables, ONNX, roofline, the denoising proxy, streaming)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import randomize_
from dit_reference import latte_reference, ltx_reference
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
from vidnas.search_space import (
    ArchSpec,
    build_network,
    build_plan,
    count_spec,
    get_family,
    preset_spec,
    unit_cost,
)
from vidnas.search_space.families.dit.presets import LATTE_TEMPORAL, WAN_TEMPORAL
from vidnas.search_space.families.dit.weights import diffusers_forward

# diffusers' references built on the meta device at the presets' configurations.
LTX_PARAMS = 1_923_385_472
LATTE_PARAMS = 1_057_246_880
LATTE_1 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
               cross_attention_dim=1152, attention_bias=True, sample_size=32, patch_size=2,
               activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
               norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, video_length=16)
REFERENCES = {"ltx-video": ("LTXVideoTransformer3DModel", {}, LTX_PARAMS),
              "latte": ("LatteTransformer3DModel", LATTE_1, LATTE_PARAMS)}


def _load(spec: ArchSpec, reference) -> torch.nn.Module:
    net = build_network(spec).eval()
    mapped, unmapped = get_family("dit").reference_state_dict(spec, reference.state_dict(), reference="diffusers")
    assert unmapped == []
    net.load_state_dict(mapped, strict=True)
    return net


def _inputs(spec: ArchSpec, batch: int = 2, seed: int = 7):
    bb = spec.backbone
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
    timestep = torch.tensor([500.0, 20.0, 900.0][:batch])
    return sample, timestep, torch.randn(batch, bb.text_tokens, bb.text_dim, generator=gen)


# The presets -------------------------------------------------------------------------------------


def test_presets_are_the_models_at_their_pipelines_shapes():
    ltx = preset_spec("ltx-video").backbone
    assert (ltx.pixel_frames, ltx.pixel_height, ltx.pixel_width) == (161, 512, 704)  # LTXPipeline's defaults
    assert (ltx.frames, ltx.latent_height, ltx.latent_width, ltx.tokens) == (21, 16, 22, 7392)
    assert (ltx.vae_scale_factor, ltx.vae_temporal_factor, ltx.frame_rate, ltx.text_tokens) == (32, 8, 25.0, 128)
    assert (ltx.dim, ltx.depth, ltx.ffn_dim, ltx.patch_size) == (2048, 28, 8192, (1, 1, 1))
    latte = preset_spec("latte")
    bb = latte.backbone
    assert (bb.pixel_frames, bb.pixel_height, bb.pixel_width, bb.grid) == (16, 256, 256, (16, 16, 16))
    assert (bb.latent_channels, bb.output_channels, bb.input_channels, bb.condition_channels) == (4, 8, 4, 0)
    ops = {name: choice.op for name, choice in latte.temporal.items()}
    assert ops["block.0.attn"] == ops["block.54.attn"] == "tok_spatial" and ops["block.0.cross"] == "tok_xattn"
    assert ops["block.1.attn"] == ops["block.55.attn"] == "tok_temporal" and ops["block.55.cross"] == "none"
    assert [p.name for p in build_plan(latte)][3:9] == ["block.0.attn", "block.0.temporal", "block.0.cross",
                                                        "block.0.ff", "frame_pos", "block.1.attn"]
    resized = preset_spec("ltx-video", frames=9, height=256, width=384).backbone
    assert (resized.frames, resized.latent_height, resized.latent_width) == (2, 8, 12)
    with pytest.raises(SpecError) as err:
        preset_spec("ltx-video", frames=10)
    assert err.value.field == "frames" and "9 or 17" in str(err.value)


@pytest.mark.parametrize("preset", list(REFERENCES))
def test_parameter_count_equals_the_reference_built_on_meta(preset):
    class_name, config, params = REFERENCES[preset]
    spec = preset_spec(preset)
    assert count_spec(spec).params == params
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        reference = getattr(diffusers, class_name)(**config)
        ours = build_network(spec)
    assert sum(p.numel() for p in reference.parameters()) == params
    assert sum(p.numel() for p in ours.parameters()) == params


@pytest.mark.parametrize("preset", list(REFERENCES))
def test_flops_equal_the_reference_under_the_same_counter_at_the_real_shape(preset):
    """FLOPs per call: count_spec against the reference run under fake tensors with torch.utils.flop_counter
    (CPU attention registered), called as its pipeline calls it (161x512x704 and 16x256x256)."""
    diffusers = pytest.importorskip("diffusers")
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    class_name, config, _ = REFERENCES[preset]
    spec = preset_spec(preset)
    bb = spec.backbone
    with torch.device("meta"):
        reference = getattr(diffusers, class_name)(**config)

    class Call(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, sample, timestep, context):
            return diffusers_forward(self.model, spec, sample, timestep, context)

    with _fake_mode():
        call = Call(reference.to_empty(device="cpu"))
        args = (torch.empty(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width), torch.empty(1),
                torch.empty(1, bb.text_tokens, bb.text_dim))
        reference_flops, _ = count_module_call(call, args, args)
    ours = count_spec(spec).flops
    assert abs(ours / reference_flops - 1) < 0.01, (ours, reference_flops)


# The same function -------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [1, 2], ids=["patch1", "patch2"])
def test_ltx_network_is_the_diffusers_function(patch):
    """LTX-Video's reference weights, mapped by name, give its outputs (max abs difference < 1e-4), its
    patches packed and its positions in seconds and pixels as LTXPipeline gives them."""
    reference, spec = ltx_reference(patch)
    net = _load(spec, reference)
    sample, timestep, context = _inputs(spec)
    with torch.no_grad():
        ours = net(sample, timestep, context)
        theirs = diffusers_forward(reference, spec, sample, timestep, context)
        other_rate = diffusers_forward(reference, dataclasses.replace(
            spec, backbone=dataclasses.replace(spec.backbone, frame_rate=24.0)), sample, timestep, context)
    assert ours.shape == (2, 3, 8, 4 * patch, 6 * patch)
    assert (ours - theirs).abs().max() < 1e-4
    assert (ours - other_rate).abs().max() > 1e-3  # the positions matter: another frame rate moves them


@pytest.mark.parametrize("size", [(8, 8), (12, 8)], ids=["native", "resized"])
def test_latte_network_is_the_diffusers_function(size):
    """Latte's spatial and temporal blocks as alternating blocks, its 2-D table (at its native grid and
    recomputed at another) and temporal table, its per-frame text and learnt-sigma head."""
    reference, spec = latte_reference(height=size[0], width=size[1])
    net = _load(spec, reference)
    sample, timestep, context = _inputs(spec)
    with torch.no_grad():
        ours = net(sample, timestep, context)
        theirs = diffusers_forward(reference, spec, sample, timestep, context)
    assert ours.shape == (2, 3, 8, *size)
    assert (ours - theirs).abs().max() < 1e-4


def test_reference_mapping_reports_what_a_smaller_spec_cannot_hold():
    reference, spec = latte_reference()
    bb = spec.backbone
    smaller = ArchSpec.create(dataclasses.replace(bb, depth=3), {**LATTE_TEMPORAL, "block.0.ff": {
        "op": "tok_ff", "params": {"funnel": 0.5}}})
    mapped, unmapped = get_family("dit").reference_state_dict(smaller, reference.state_dict(), reference="diffusers")
    assert {k.split(".ff.")[0] for k in unmapped if ".ff." in k} >= {"transformer_blocks.0"}
    assert all(k.startswith(("temporal_transformer_blocks.1.", "transformer_blocks.0.ff.")) for k in unmapped)
    assert "units.block_2_cross.slot.branch.attn.to_k.weight" in mapped  # spatial block 1 is our block 2
    assert "units.block_1_attn.slot.branch.attn.to_q.weight" in mapped  # temporal block 0 is our block 1
    ltx, ltx_spec = ltx_reference()
    mapped, unmapped = get_family("dit").reference_state_dict(
        ltx_spec.replace_choices({"block.1.cross": "none"}), ltx.state_dict(), reference="diffusers")
    assert unmapped and all(k.startswith("transformer_blocks.1.attn2.") for k in unmapped)


# Styles: costs against traces, errors --------------------------------------------------------------


STYLES = [
    ({"positions": "rope_ltx", "frame_rate": 25.0, "qk_norm_eps": 1e-5, "norm": "rms_norm", "cross_attn_norm": False,
      "patch_size": (1, 1, 1), "vae_scale_factor": 32, "vae_temporal_factor": 8}, WAN_TEMPORAL),
    ({"positions": "rope_ltx", "frame_rate": 25.0, "heads": 3, "head_dim": 10},  # fewer heads than the table
     {**WAN_TEMPORAL, "block.0.attn": {"op": "tok_factorised", "params": {"heads": 2}}}),
    ({"positions": "sincos2d", "pos_base": 2, "frame_pos_block": 1, "qk_norm": "none", "cross_attn_norm": False,
      "cross_attn_per_frame": True, "out_channels": 8, "learned_sigma": True, "depth": 2}, LATTE_TEMPORAL),
    ({"positions": "sincos2d", "cross_attn_per_frame": True, "frame_pos_block": 0}, WAN_TEMPORAL),
]


def _style_spec(style: dict, temporal: dict) -> ArchSpec:
    style = dict(style)
    bb = dataclasses.replace(preset_spec("dit-tiny").backbone, depth=style.pop("depth", 1), **style)
    return ArchSpec.create(bb, temporal)


@pytest.mark.parametrize("case", STYLES, ids=["ltx", "ltx-funnelled", "latte", "sincos-wan"])
def test_unit_costs_and_network_counts_match_traces_in_the_new_styles(case):
    """Every unit's closed form equals its fake-tensor trace (params, FLOPs exactly; peak within 2 %),
    and the whole network's count equals a trace of the network (peak within 1 %)."""
    from vidnas.search_space._tracing import _fake_mode, count_module_call, trace_unit

    spec = _style_spec(*case)
    for batch in (1, 2):
        for plan in (p for p in build_plan(spec) if not p.is_identity):
            cost = unit_cost(plan, batch)
            params, flops, peak = trace_unit(plan, spec, batch)
            assert (cost.params, cost.flops) == (params, flops), plan.name
            assert abs(cost.peak * 4 / peak - 1) < 0.02, (plan.name, cost.peak * 4, peak)
    report = count_spec(spec, batch=2)
    with torch.device("meta"):
        net = build_network(spec)
    assert report.params == sum(p.numel() for p in net.parameters())
    bb = spec.backbone
    with _fake_mode():
        net = net.to_empty(device="cpu")
        args = (torch.empty(2, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width), torch.empty(2),
                torch.empty(2, bb.text_tokens, bb.text_dim))
        flops, peak = count_module_call(net, args, args)
    assert report.flops == flops
    assert abs(report.activation_bytes / peak - 1) < 0.01


def test_per_frame_text_is_the_same_function_at_a_higher_cost():
    spec = _style_spec({"cross_attn_norm": False}, WAN_TEMPORAL)
    per_frame = ArchSpec.create(dataclasses.replace(spec.backbone, cross_attn_per_frame=True), WAN_TEMPORAL)
    net, other = build_network(spec).eval(), build_network(per_frame).eval()
    randomize_(net, seed=3, std=0.1)
    other.load_state_dict(net.state_dict(), strict=True)
    args = net.example_inputs(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(other(*args), net(*args), rtol=1e-5, atol=1e-5)
    bb = spec.backbone
    extra = 2 * 2 * (bb.frames - 1) * bb.text_tokens * bb.dim * bb.dim  # k and v, once more per extra frame
    assert count_spec(per_frame).flops - count_spec(spec).flops == extra


@pytest.mark.parametrize("change, field", [
    ({"positions": "rope_ltx", "frame_rate": 0.0}, "backbone.frame_rate"),
    ({"head_norm": "group_norm"}, "backbone.head_norm"),
    ({"learned_sigma": True, "out_channels": 3}, "backbone.out_channels"),
    ({"learned_sigma": True, "out_channels": 10}, "backbone.out_channels"),
    ({"frame_pos_block": 3}, "backbone.frame_pos_block"),
    ({"qk_norm_eps": 1.5}, "backbone.qk_norm_eps"),
    ({"positions": "sincos2d", "heads": 3, "head_dim": 6}, "backbone.head_dim"),
    ({"pos_base": -1}, "backbone.pos_base"),
])
def test_new_style_errors_name_the_field(change, field):
    bb = preset_spec("dit-tiny").backbone
    with pytest.raises(SpecError) as err:
        dataclasses.replace(bb, **change).validate()
    assert err.value.field == field


def test_streaming_with_ltx_positions_and_latte_tables_equals_the_whole_clip():
    """Block-causal attention under LTX-Video's positions and Latte's tables: chunk by chunk (positions
    offset by the frames seen) as on the whole clip."""
    causal = {**WAN_TEMPORAL, "block.*.attn": {"op": "tok_blockcausal", "params": {"chunk": 2}}}
    for style, _ in (STYLES[0], STYLES[2]):
        spec = _style_spec(style, causal)
        assert spec.is_causal
        net = build_network(spec).eval()
        randomize_(net, seed=5, std=0.1)
        sample, timestep, context, _ = net.example_inputs(batch=1)
        with torch.no_grad():
            whole = net(sample, timestep, context)
            state: dict = {}
            parts = [net.stream(sample[:, i : i + 2], timestep, state, commit=True, context=context)
                     for i in range(0, spec.backbone.frames, 2)]
        torch.testing.assert_close(torch.cat(parts, dim=1), whole, rtol=1e-4, atol=1e-5)


# Downstream ---------------------------------------------------------------------------------------


runner = CliRunner()


@pytest.mark.parametrize("preset, params, latent", [
    ("ltx-video", LTX_PARAMS, {"channels": 128, "frames": 21, "height": 16, "width": 22}),
    ("latte", LATTE_PARAMS, {"channels": 4, "frames": 16, "height": 32, "width": 32}),
])
def test_space_show_reports_exact_params(preset, params, latent):
    result = runner.invoke(app, ["space", "show", preset, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["params"] == params and shown["latent"] == latent


def _tiny_space(style: dict, temporal: dict):
    from vidnas.search_space._sampling import OpOption, SearchSpace, SlotGroup

    base = _style_spec(style, temporal)
    ff = [OpOption("tok_ff", {"funnel": (0.5, 1.0)}), OpOption("none", {})]
    groups = tuple(SlotGroup(f"block.{i}.ff", (f"block.{i}.ff",), tuple(ff)) for i in range(base.backbone.depth))
    return SearchSpace("tiny-style", base, groups, "feed-forward funnels on a tiny transformer in a model's style")


@pytest.mark.parametrize("case", [STYLES[0], STYLES[2]], ids=["ltx", "latte"])
def test_tables_onnx_export_and_roofline_of_tiny_variants(case, tmp_path):
    """Every unit of a tiny variant exports to ONNX and runs as in torch; a table of its space builds
    (debug backend) and predicts; the roofline counts the same FLOPs."""
    import onnxruntime as ort

    from vidnas.latency_models import LatencyPredictor, build_table, get_backend, roofline_estimate, space_units
    from vidnas.search_space import UnitHarness, export_onnx, onnx_input_name, randomize_zero_layers_
    from vidnas.search_space import unit_example_inputs as inputs_of

    space = _tiny_space(*case)
    units = space_units(space)
    assert {"patch_embed", "head", "temporal"} <= {p.kind for p in units}
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
    table = build_table(space, get_backend("debug"), tmp_path / "t.parquet")
    spec = space.random_specs(1, seed=0)[0]
    assert LatencyPredictor(table).predict(spec).naive_ms > 0
    estimate = roofline_estimate(spec, "h100")
    assert sum(u["flops"] for u in estimate["units"]) == count_spec(spec).flops


@pytest.mark.parametrize("preset, params", [("ltx-video", LTX_PARAMS), ("latte", LATTE_PARAMS)])
def test_roofline_and_memory_of_the_presets(preset, params):
    from vidnas.latency_models import memory_bytes, roofline_estimate

    spec = preset_spec(preset)
    estimate = roofline_estimate(spec, "h100")
    assert estimate["estimate"] and sum(u["flops"] for u in estimate["units"]) == count_spec(spec).flops
    assert memory_bytes(spec, dtype="float16")["weights_bytes"] == 2 * params


def test_denoising_proxy_scores_the_noise_channels_of_a_learnt_sigma_head():
    """Latte predicts 8 channels for 4 latent ones: the task feeds 4 and scores the first 4."""
    from vidnas.proxies._denoise import DenoisingTask

    _, spec = latte_reference()
    bb = spec.backbone
    assert (bb.latent_channels, bb.output_channels) == (4, 8)
    task = DenoisingTask(spec)
    net = build_network(spec)
    batch = next(iter(torch.utils.data.DataLoader(task.dataset(2, 0), batch_size=2)))
    args, target = task.model_inputs(batch, torch.tensor([10, 500]), task.noise(2, torch.Generator().manual_seed(0)))
    assert args[0].shape[2] == 4 and target.shape[2] == 4 and net(*args).shape[2] == 8
    assert torch.isfinite(task.loss(net, batch, torch.Generator().manual_seed(0)))


def test_counting_and_equivalence_benchmarks_run_the_new_models_at_a_reduced_size(tmp_path, monkeypatch):
    """benchmarks/bench_dit_counting.py and bench_equivalence.py (full sizes are the lead's) on reduced models."""
    import importlib.util
    import sys
    from pathlib import Path

    from dit_reference import LATTE_REDUCED, LTX_REDUCED

    pytest.importorskip("diffusers")
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    modules = {}
    for name in ("bench_dit_counting", "bench_equivalence"):
        module_spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(module_spec)
        monkeypatch.setitem(sys.modules, name, modules[name])  # dataclasses resolve annotations through it
        module_spec.loader.exec_module(modules[name])
    for model in ("ltx-video", "latte"):
        result = modules["bench_dit_counting"].main(["--model", model, "--reduced", "--repeats", "0", "--out",
                                                     str(tmp_path / f"{model}.json")])
        counts = result["counts"]
        assert counts["params"]["vidnas_analytic"] == counts["params"]["vidnas_network"] == \
            counts["params"]["reference"]
        assert counts["flops"]["vidnas_analytic"] == counts["flops"]["vidnas_trace"] == counts["flops"]["reference"]
        assert result["equivalence"]["unmapped"] == [] and result["equivalence"]["max_abs_difference"] < 1e-4
    bench = modules["bench_equivalence"]
    assert bench.CASES["ltx-video"].reference_kwargs == {} and bench.CASES["latte"].reference_kwargs == LATTE_1
    for name, (reference, small), config in (("ltx-video", ltx_reference(), LTX_REDUCED),
                                             ("latte", latte_reference(), LATTE_REDUCED)):
        full = bench.CASES[name]
        assert full.spec().name == name  # the real config, a small input
        case = dataclasses.replace(full, name=f"{name}-reduced", reference_kwargs=config,
                                   spec=lambda small=small: small)
        record = bench.run_case(case)
        assert record["passed"] and record["max_abs_diff"] < 1e-4 < record["output_max_abs"]
        assert record["vidnas"]["params"] == record["reference"]["params"] == \
            sum(p.numel() for p in reference.parameters())


def test_a_searched_variant_takes_the_reference_weights_it_shares(tmp_path):
    """`--init-from`: a Latte checkpoint (safetensors) loads into a variant whose temporal block 1 is a
    block-causal attention and whose last feed-forward is funnelled: what exists in both is loaded."""
    from safetensors.torch import save_file

    from vidnas.search_space import load_reference_weights, read_checkpoint

    reference, spec = latte_reference()
    path = tmp_path / "latte.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    variant = spec.replace_choices({"block.3.attn": {"op": "tok_blockcausal", "params": {"chunk": 1}},
                                    "block.3.ff": {"op": "tok_ff", "params": {"funnel": 0.5}}})
    net = build_network(variant)
    report = load_reference_weights(net, variant, read_checkpoint(path).state, source=str(path))
    assert "units.block_3_attn.slot.branch.attn.to_q.weight" in report.loaded  # any self-attention takes attn1
    assert any(k.startswith("units.block_3_ff.") for k in report.initialised)  # a narrower feed-forward
    assert report.unused and all(k.startswith("temporal_transformer_blocks.1.ff.") for k in report.unused)
    assert not any(k.startswith(("units.block_0", "units.block_1", "units.block_2")) for k in report.initialised)
