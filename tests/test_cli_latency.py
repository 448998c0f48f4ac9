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
