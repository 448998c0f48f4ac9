"""Everything downstream of the search space on transformer specs: tables, prediction, roofline,
memory, streaming (measured and estimated), export, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
from vidnas.latency_models import (
    LatencyPredictor,
    measure_streaming,
    memory_bytes,
    roofline_estimate,
    roofline_stream_estimate,
)
from vidnas.search_space import ArchSpec, build_network, count_spec, get_space, preset_spec

runner = CliRunner()


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return json.loads(result.stdout)


def causal_dit_tiny():
    from vidnas.search_space.families.dit.presets import WAN_TEMPORAL

    return ArchSpec.create(preset_spec("dit-tiny").backbone, {
        **WAN_TEMPORAL, "block.*.attn": {"op": "tok_blockcausal", "params": {"chunk": 2}},
        "block.1.temporal": {"op": "conv1d", "params": {"causal": True}},
    })


def test_space_show_reports_decoded_frames_and_exact_params():
    shown = invoke_json("space", "show", "wan2.1-1.3b")
    assert shown["params"] == 1_418_996_800
    assert (shown["frames"], shown["height"], shown["width"]) == (81, 480, 832)
    assert shown["latent"] == {"channels": 16, "frames": 21, "height": 60, "width": 104}
    assert len(shown["slots"]) == 120 and shown["units"][0]["name"] == "time_embed"


def test_table_build_show_and_predict_on_a_dit_space(tmp_path):
    """Block-level units through the table builder (debug backend: synthetic times) and the predictor."""
    table = tmp_path / "t.parquet"
    built = invoke_json("lut", "build", "--space", "dit-tiny", "--backend", "debug", "--out", str(table),
                        "--fit", "3", "--quick")
    assert built["coverage"]["missing"] == [] and built["entries"] == built["coverage"]["needed"]
    shown = invoke_json("lut", "show", str(table))
    assert shown["entries"] == built["entries"]
    assert shown["meta"]["space_shape"]["frames"] == 13  # decoded frames, as get_space takes them
    spec = get_space("dit-tiny").random_specs(1, seed=3)[0]
    path = spec.save(tmp_path / "spec.json")
    predicted = invoke_json("latency", "predict", str(path), "--lut", str(table))
    assert predicted["naive_ms"] > 0 and len(predicted["slots"]) == 12
    from vidnas.latency_models import LatencyTable

    assert LatencyPredictor(LatencyTable.load(table)).predict(spec).naive_ms == pytest.approx(predicted["naive_ms"])


def test_every_kind_of_dit_unit_exports_to_onnx(tmp_path):
    """The units a table times run under ONNX Runtime as in torch: the conditioning, patch and head
    units and a frames op on the tokens (every token op has its own export test, in test_ops)."""
    import onnxruntime as ort

    from vidnas.latency_models._builder import space_units
    from vidnas.search_space import UnitHarness, export_onnx, onnx_input_name, randomize_zero_layers_
    from vidnas.search_space import unit_example_inputs as inputs_of

    space = get_space("dit-tiny")
    picked = [p for p in space_units(space) if p.slot is None or p.config["op"] == "conv1d"][:5]
    assert {p.kind for p in picked} == {"time_embed", "text_embed", "patch_embed", "head", "temporal"}
    for i, plan in enumerate(picked):
        harness = randomize_zero_layers_(UnitHarness(plan).eval())
        args = inputs_of(plan, space.base.backbone, 1)
        with torch.no_grad():
            expected = harness(*args).numpy()
        session = ort.InferenceSession(str(export_onnx(harness, args, tmp_path / f"{i}.onnx")),
                                       providers=["CPUExecutionProvider"])
        arrays = {onnx_input_name(k): a.numpy() for k, a in enumerate(args)}
        (got,) = session.run(None, {x.name: arrays[x.name] for x in session.get_inputs()})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=plan.name)


def test_roofline_and_memory_of_the_wan_preset():
    spec = preset_spec("wan2.1-1.3b")
    est = roofline_estimate(spec, "h100")
    assert est["estimate"] and sum(u["flops"] for u in est["units"]) == count_spec(spec).flops
    assert est["per_call_ms"] >= count_spec(spec).flops / 989.4e12 * 1000
    memory = memory_bytes(spec, dtype="float16")
    assert memory["weights_bytes"] == 2 * 1_418_996_800
    assert memory["activation_bytes"] == count_spec(spec, dtype="float16").activation_bytes


def test_roofline_stream_estimate_follows_the_cache():
    """Block-causal attention reads a growing cache: each chunk costs more than the last; a rolling
    window stops growing once full; the estimate is labelled and its frame rate is consistent."""
    spec = preset_spec("causvid", frames=33, height=240, width=416)
    est = roofline_stream_estimate(spec, "h100", chunk_frames=3, steps=4)
    times = est["per_chunk_ms"]
    assert est["estimate"] and est["chunks"] == 3 and est["passes_per_chunk"] == 5
    assert times[0] < times[1] < times[2]
    assert est["steady_fps"] == pytest.approx(12 * 1000 / est["steady_chunk_ms"])
    assert est["first_chunk_decoded_frames"] == 9
    rolling = ArchSpec.create(spec.backbone, {**dict(spec.temporal), "block.*.attn": {
        "op": "tok_causal_window", "params": {"chunk": 1, "window": 1}}})
    times = roofline_stream_estimate(rolling, "h100", chunk_frames=1, steps=4)["per_chunk_ms"]
    assert times[1] == pytest.approx(times[2]) == pytest.approx(times[-1])
    with pytest.raises(SpecError) as err:
        roofline_stream_estimate(spec, "h100", chunk_frames=2, steps=4)
    assert err.value.field == "chunk_frames"
    with pytest.raises(SpecError, match="future"):
        roofline_stream_estimate(preset_spec("wan2.1-1.3b"), "h100", chunk_frames=3, steps=4)


def test_latency_stream_command_estimates_causvid_on_a_roofline():
    est = invoke_json("latency", "stream", "causvid", "--height", "480", "--width", "832", "--roofline", "h100")
    assert est["estimate"] and est["chunk_frames"] == 3 and est["chunks"] == 7
    assert 0 < est["first_chunk_ms"] < est["per_chunk_ms"][-1] and est["steady_fps"] > 0


def test_streaming_a_causal_transformer_is_measured_chunk_by_chunk():
    result = measure_streaming(causal_dit_tiny(), chunk_frames=2, steps=1, repeats=1, threads=1)
    assert result["chunks"] == 2 and result["passes_per_chunk"] == 2 and result["first_chunk_ms"] > 0


def test_a_dit_network_exports_to_onnx_with_parity(tmp_path):
    import onnxruntime as ort

    from vidnas.search_space import NetworkHarness, export_onnx, onnx_input_name, randomize_zero_layers_

    harness = NetworkHarness(randomize_zero_layers_(build_network(get_space("dit-tiny").random_specs(
        1, seed=1)[0]))).eval()
    args = harness.example_inputs(1)
    with torch.no_grad():
        expected = harness(*args).numpy()
    session = ort.InferenceSession(str(export_onnx(harness, args, tmp_path / "net.onnx")),
                                   providers=["CPUExecutionProvider"])
    arrays = {onnx_input_name(i): a.numpy() for i, a in enumerate(args)}
    (got,) = session.run(None, {x.name: arrays[x.name] for x in session.get_inputs()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_short_search_over_a_dit_space_with_a_roofline_target(tmp_path):
    from vidnas.runners import parse_config, run_campaign

    config = parse_config({
        "name": "dit", "space": {"name": "dit-tiny"}, "target": {"roofline": "h100"},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "params", "direction": "maximize"}],
        "constraints": {"memory_bytes": 1_000_000_000}, "sampler": {"name": "random", "seed": 0}, "trials": 4,
        "workers": 1,
    })
    result = run_campaign(config, tmp_path / "run", local=True)
    assert result.trials == 4 and result.failed == 0
    pareto = json.loads((tmp_path / "run" / "pareto" / "pareto.json").read_text())["pareto"]
    assert pareto and all(ArchSpec.load(tmp_path / "run" / "pareto" / e["spec"]).family == "dit" for e in pareto)
