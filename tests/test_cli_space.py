"""`vidnas space ...` from the command line: --json purity, files written, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from vidnas.cli._app import app

runner = CliRunner()


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ops_json_lists_the_registry():
    data = run_json("space", "ops")
    names = {op["name"] for op in data["ops"]}
    assert {"conv1d", "attn3d_blockcausal", "shift"} <= names
    attn = next(op for op in data["ops"] if op["name"] == "attn1d")
    assert any(p["name"] == "heads" and p["default_rule"] for p in attn["params"])


def test_show_svd_json_prints_the_reference_count_and_nothing_else():
    # A real process: stdout must be exactly one JSON object.
    out = subprocess.run([sys.executable, "-m", "vidnas.cli", "space", "show", "svd", "--json"],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["params"] == 1_524_623_082
    for key in ("arch_id", "flops", "activation_bytes", "spec", "slots"):
        assert key in data
    assert (data["frames"], data["height"], data["width"]) == (14, 576, 1024)


def test_show_resizes_and_reads_spec_files(tmp_path):
    small = run_json("space", "show", "tiny", "--frames", "4", "--height", "64", "--width", "64")
    assert small["latent"] == {"channels": 4, "frames": 4, "height": 8, "width": 8}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small["spec"]))
    again = run_json("space", "show", str(path))
    assert again["arch_id"] == small["arch_id"] and again["flops"] == small["flops"]


def test_sample_writes_spec_files(tmp_path):
    data = run_json("space", "sample", "tiny", "--n", "3", "--seed", "1", "--out", str(tmp_path / "specs"))
    assert len(data["specs"]) == 3
    for entry in data["specs"]:
        shown = run_json("space", "show", entry["path"])
        assert shown["arch_id"] == entry["arch_id"]


def test_errors_name_the_field_and_value(tmp_path):
    result = runner.invoke(app, ["space", "show", "not-a-preset"])
    assert result.exit_code == 2
    assert "not-a-preset" in result.stderr and "SPEC" in result.stderr
    result = runner.invoke(app, ["space", "show", "svd", "--height", "500"])
    assert result.exit_code == 2 and "height" in result.stderr and "500" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "vidnas.arch_spec", "version": 1, "backbone": {},
                               "temporal": {"x": "conv4d"}}))
    result = runner.invoke(app, ["space", "show", str(bad)])
    assert result.exit_code == 2 and "temporal" in result.stderr
