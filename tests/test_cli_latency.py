"""`vidnas lut ...` and `vidnas latency ...` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vidnas.cli._app import app

runner = CliRunner()


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return json.loads(result.stdout)


def test_build_show_predict_validate_with_the_debug_backend(tmp_path):
    table = tmp_path / "t.parquet"
    built = invoke_json("lut", "build", "--space", "tiny-enum", "--backend", "debug", "--out", str(table),
                        "--fit", "5", "--quick")
    assert built["coverage"]["missing"] == [] and built["entries"] == built["coverage"]["needed"]
    assert built["meta"]["correction"]["n"] == 5
    shown = invoke_json("lut", "show", str(table))
    assert shown["entries"] == built["entries"]
    spec_dir = tmp_path / "specs"
    sample = invoke_json("space", "sample", "tiny-enum", "--n", "1", "--out", str(spec_dir))
    spec = sample["specs"][0]["path"]
    pred = invoke_json("latency", "predict", spec, "--lut", str(table), "--steps", "10", "--cfg", "sequential")
    assert pred["video"]["per_video_ms"] == 20 * pred["per_call_ms"]
    assert pred["corrected_ms"] is not None and len(pred["slots"]) == 12
    report = invoke_json("latency", "validate", "--lut", str(table), "--n", "4", "--quick")
    assert report["corrected"]["mape"] < 1e-6 and report["n"] == 4
    csv = tmp_path / "t.csv"
    runner.invoke(app, ["lut", "export", str(table), "--out", str(csv)])
    imported = invoke_json("lut", "import", str(csv), "--out", str(tmp_path / "again.parquet"))
    assert imported["entries"] == built["entries"]


def test_predict_refuses_another_backend_and_lists_missing_entries(tmp_path):
    table = tmp_path / "t.parquet"
    invoke_json("lut", "build", "--space", "tiny-enum", "--backend", "debug", "--out", str(table), "--fit", "0",
                "--quick")
    result = runner.invoke(app, ["latency", "predict", "tiny", "--lut", str(table), "--backend", "onnxruntime"])
    assert result.exit_code == 2 and "backend" in result.stderr
    result = runner.invoke(app, ["latency", "predict", "tiny", "--lut", str(table), "--frames", "4"])
    assert result.exit_code == 2 and "no entry" in result.stderr and "--measure-missing" in result.stderr
    filled = invoke_json("latency", "predict", "tiny", "--lut", str(table), "--frames", "4", "--measure-missing")
    assert filled["naive_ms"] > 0


def test_measure_on_torch_and_roofline_estimate():
    m = invoke_json("latency", "measure", "tiny", "--backend", "torch", "--threads", "1", "--quick")
    assert m["median_ms"] > 0 and m["fingerprint"]["backend"] == "torch" and "trusted" in m
    assert m["memory"]["total_bytes"] > m["memory"]["weights_bytes"]
    est = invoke_json("latency", "predict", "svd", "--roofline", "h100", "--dtype", "bfloat16", "--steps", "25")
    assert est["estimate"] is True and est["video"]["per_video_ms"] == 25 * est["per_call_ms"]


def test_scaling_and_errors():
    rows = invoke_json("latency", "scaling", "--ops", "conv1d,attn1d", "--frames", "8,16", "--backend", "debug",
                       "--quick")["rows"]
    assert {r["op"] for r in rows} == {"conv1d", "attn1d"} and len(rows) == 4
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "tensorrt"])
    assert result.exit_code == 2 and "tensorrt" in result.stderr
    result = runner.invoke(app, ["latency", "predict", "tiny"])
    assert result.exit_code == 2 and "--lut" in result.stderr


def test_backend_options_are_checked_by_the_backends_schema(tmp_path):
    """`-O KEY=VALUE` on every command that takes a backend: an unknown key or a bad value is refused,
    naming `-O KEY` and the value, before anything is measured."""
    out = str(tmp_path / "t.parquet")
    for args in (("lut", "build", "--out", out), ("latency", "measure", "tiny"),
                 ("lut", "adapt", "--from", out, "--out", str(tmp_path / "t2.parquet")),
                 ("latency", "scaling", "--ops", "conv1d", "--frames", "8")):
        result = runner.invoke(app, [*args, "--backend", "onnxruntime", "-O", "graph_optimisation=basic"])
        assert result.exit_code == 2 and "`-O graph_optimisation` = 'basic'" in result.stderr, (args, result.stderr)
        assert "graph_optimization" in result.stderr  # the options it has
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "onnxruntime", "-O",
                                 "graph_optimization=max"])
    assert result.exit_code == 2 and "`-O graph_optimization` = 'max'" in result.stderr and "basic" in result.stderr
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "debug", "-O", "seed=1.5"])
    assert result.exit_code == 2 and "`-O seed` = 1.5: must be an integer" in result.stderr
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "debug", "-O", "gflops"])
    assert result.exit_code == 2 and "`-O` = 'gflops': is not KEY=VALUE" in result.stderr
    m = invoke_json("latency", "measure", "tiny", "--backend", "debug", "-O", "gflops=20", "-O", "noise=0", "--quick")
    assert m["fingerprint"]["options"]["gflops"] == 20.0


def test_validate_takes_the_tables_backend_with_options(tmp_path):
    table = tmp_path / "t.parquet"
    invoke_json("lut", "build", "--space", "tiny-enum", "--backend", "debug", "--out", str(table), "--fit", "3",
                "--quick")
    result = runner.invoke(app, ["latency", "validate", "--lut", str(table), "--n", "2", "--quick", "-O", "nope=1"])
    assert result.exit_code == 2 and "`-O nope` = 1: is not an option of backend `debug`" in result.stderr
    report = invoke_json("latency", "validate", "--lut", str(table), "--n", "3", "--quick", "-O", "seed=3")
    assert report["n"] == 3 and report["fingerprint"]["backend"] == "debug"
    predict = ["latency", "predict", "tiny", "--lut", str(table), "--frames", "4"]
    result = runner.invoke(app, [*predict, "--measure-missing", "-O", "nope=1"])
    assert result.exit_code == 2 and "`-O nope` = 1" in result.stderr
    result = runner.invoke(app, [*predict, "-O", "seed=1"])
    assert result.exit_code == 2 and "needs --measure-missing" in result.stderr
    assert invoke_json(*predict, "--measure-missing", "-O", "seed=1")["naive_ms"] > 0


def test_the_deprecated_graph_optimization_flag_is_an_alias_of_the_option(tmp_path):
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "onnxruntime", "--threads", "1",
                                 "--quick", "--max-seconds", "0.2", "--graph-optimization", "basic", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fingerprint"]["options"]["graph_optimization"] == "basic"
    assert "--graph-optimization is deprecated; use -O graph_optimization=basic" in result.stderr
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "onnxruntime",
                                 "--graph-optimization", "basic", "-O", "graph_optimization=all"])
    assert result.exit_code == 2 and "`--graph-optimization` = 'basic': contradicts" in result.stderr
    result = runner.invoke(app, ["latency", "measure", "tiny", "--backend", "onnxruntime",
                                 "--graph-optimization", "max"])
    assert result.exit_code == 2 and "`-O graph_optimization` = 'max'" in result.stderr
    m = invoke_json("latency", "measure", "tiny", "--backend", "debug", "--quick", "--graph-optimization", "basic")
    assert m["fingerprint"]["backend"] == "debug"  # a backend without the option ignores it, as it always did


def test_backends_are_listed_with_their_typed_options_and_exports():
    listed = {b["name"]: b for b in invoke_json("lut", "backends")["backends"]}
    ort = {o["name"]: o for o in listed["onnxruntime"]["options"]}
    assert ort["graph_optimization"]["choices"] == ["disable", "basic", "extended", "all"]
    assert ort["graph_optimization"]["default"] == "all" and ort["spinning"]["type"] == "bool"
    assert listed["coreml"]["exports_bundle"] and not listed["torch"]["exports_bundle"]
    assert listed["debug"]["source"] == "vidnas"
    result = runner.invoke(app, ["lut", "export", "--backend", "torch", "--out", "x"])
    assert result.exit_code == 2 and "is not an export target" in result.stderr and "coreml" in result.stderr
    result = runner.invoke(app, ["lut", "export", "--backend", "coreml", "--out", "x", "-O", "precision=int4"])
    assert result.exit_code == 2 and "`-O precision` = 'int4'" in result.stderr


def test_lut_export_writes_the_bundle_of_any_backend_that_declares_one(tmp_path):
    """`lut export --backend B` asks B's registration for its bundle writer (Core ML's writes models and
    `time_coreml.py`): its options come from `-O`, the old flags (`--precision`) are aliases."""
    from vidnas.latency_models import BACKENDS, BackendOption, BundleExporter, register_backend

    written = {}

    def write(space, out, *, batch, progress, **options):
        written.update(space=space.name, out=str(out), batch=batch, **options)
        progress(1, 1, "unit")
        return {"units": [{"signature_id": "s1", "op": "conv1d"}, {"signature_id": "s2", "op": "x", "error": "no"}]}

    precision = BackendOption("precision", str, "float16", "", choices=("float16", "float32"))
    register_backend("bundled_test", summary="test", options=(precision,), measures_here=False,
                     bundle=BundleExporter(write, "time {out} there"))(lambda **kwargs: None)
    try:
        out = tmp_path / "bundle"
        result = invoke_json("lut", "export", "--backend", "bundled_test", "--space", "tiny-enum", "--out", str(out),
                             "-O", "precision=float32")
        assert written == {"space": "tiny-enum", "out": str(out), "batch": 1, "precision": "float32"}
        assert result["units"] == 2 and len(result["failed"]) == 1 and result["next"] == f"time {out} there"
        result = runner.invoke(app, ["lut", "export", "--backend", "bundled_test", "--out", str(out), "--precision",
                                     "float32", "--json"])
        assert result.exit_code == 0 and "--precision is deprecated" in result.stderr
        assert json.loads(result.stdout)["options"] == {"precision": "float32"}
    finally:
        BACKENDS.unregister("bundled_test")
    result = runner.invoke(app, ["lut", "export", "--backend", "coreml", "--out", str(out), "--compute-units",
                                 "CPU_ONLY", "-O", "compute_units=ALL"])
    assert result.exit_code == 2 and "`--compute-units` = 'CPU_ONLY': contradicts" in result.stderr
