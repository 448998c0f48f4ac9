"""Baselines beside the validation (FLOPs-linear, params-linear, scaled roofline) and the FLOPs-mislead space."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
from vidnas.latency_models import (
    BASELINES,
    DebugBackend,
    HarnessConfig,
    LatencyTable,
    TableMeta,
    baseline_reports,
    build_table,
    closest_datasheet,
    fit_baseline,
    fit_correction,
    validate_table,
)
from vidnas.search_space import count_spec, get_space

QUICK = HarnessConfig.quick()


def test_a_linear_baseline_recovers_intercept_and_slope():
    x = np.linspace(1e9, 5e9, 9)
    y = 2.0 + 3e-9 * x
    b = fit_baseline("flops_linear", x, y)
    assert b.intercept_ms == pytest.approx(2.0, rel=1e-3) and b.slope == pytest.approx(3e-9, rel=1e-3)
    assert b.predict(2e9) == pytest.approx(8.0, rel=1e-3) and b.fit_mape < 1e-4
    falling = fit_baseline("params_linear", x, 20.0 - 2e-9 * x)  # more parameters never make it faster
    assert falling.slope >= 0 and falling.intercept_ms >= 0
    with pytest.raises(SpecError) as info:
        fit_baseline("flops_linear", [1.0], [2.0])
    assert info.value.field == "baselines.flops_linear"
    with pytest.raises(SpecError) as info:
        fit_baseline("macs_cubic", x, y)
    assert (info.value.field, info.value.value) == ("baseline", "macs_cubic")


def test_closest_datasheet_device():
    def meta(device, name, backend="torch", dtype="float32"):
        return TableMeta(backend=backend, device=device, device_name=name, dtype=dtype, threads=1, fingerprint={})

    assert closest_datasheet(meta("cpu", "AMD EPYC")) == ("laptop-cpu", "float32")
    assert closest_datasheet(meta("cuda", "NVIDIA H200", dtype="bfloat16")) == ("h200", "bfloat16")
    assert closest_datasheet(meta("cuda:1", "NVIDIA A100-SXM4-80GB")) == ("a100", "float32")
    assert closest_datasheet(meta("ane", "arm64", backend="coreml", dtype="float16")) == ("phone-npu", "float16")


@pytest.fixture(scope="module")
def fitted_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("baselines") / "t.parquet"
    space = get_space("tiny")
    table = build_table(space, DebugBackend(), path, config=QUICK)
    fit_correction(table, space, DebugBackend(), n=8, seed=100, config=QUICK)
    table.save(path)
    return path


def test_validation_reports_the_baselines_beside_the_table(fitted_table):
    table = LatencyTable.load(fitted_table)
    report = validate_table(table, get_space("tiny"), DebugBackend(), n=6, seed=5, config=QUICK)
    base = report["baselines"]
    assert base["fitted_on"] == 8 and set(base["baselines"]) == set(BASELINES)
    assert base["device"] == "laptop-cpu"
    for name, r in base["baselines"].items():
        assert {"mape", "within_10pct", "spearman", "kendall", "worst", "fit"} <= set(r)
        assert r["fit"]["n"] == 8 and all(f"{name}_ms" in row for row in report["rows"])
    # The debug backend's latency is affine in FLOPs per unit plus a per-unit overhead: the
    # table (with its correction) is exact, FLOPs alone are close but not exact.
    assert report["answer"]["mape"] < 1e-6 < base["baselines"]["flops_linear"]["mape"] < 0.1


def test_baselines_refuse_a_table_without_stored_specs(fitted_table):
    table = LatencyTable.load(fitted_table)
    for row in table.meta.end_to_end:
        row.pop("spec")
    specs = get_space("tiny").random_specs(3, seed=1)
    out = baseline_reports(table.meta, specs, [1.0, 2.0, 3.0], batch=1)
    assert "table.end_to_end.spec" in out["error"] and "--refit" in out["error"]
    table.meta.end_to_end = []
    assert "table.end_to_end" in baseline_reports(table.meta, specs, [1.0, 2.0, 3.0], batch=1)["error"]


def test_validate_cli_prints_both_figures_the_answer_and_the_baselines(fitted_table):
    runner = CliRunner()
    result = runner.invoke(app, ["latency", "validate", "--lut", str(fitted_table), "--n", "4", "--quick"])
    assert result.exit_code == 0, result.output
    for text in ("reference-rescaled", "plain medians", "answer", "because", "flops_linear", "params_linear",
                 "roofline (laptop-cpu, scaled)"):
        assert text in result.stdout
    result = runner.invoke(app, ["latency", "validate", "--lut", str(fitted_table), "--n", "4", "--quick",
                                 "--basis", "plain", "--json"])
    report = json.loads(result.stdout)
    assert report["answer_basis"]["basis"] == "plain"
    assert report["answer"]["mape"] == pytest.approx(report["raw_corrected"]["mape"])
    result = runner.invoke(app, ["latency", "validate", "--lut", str(fitted_table), "--n", "4", "--basis", "ratio"])
    assert result.exit_code == 2 and "harness.basis" in result.stderr


def test_the_flops_mislead_space_mixes_zero_flop_and_dense_options():
    space = get_space("flops-mislead")
    ops = {o.op for g in space.groups for o in g.options}
    assert {"shift", "conv1d", "conv3d", "attn1d", "attn1d_window", "attn3d", "none"} <= ops
    params = {(o.op, k): v for g in space.groups for o in g.options for k, v in o.params.items()}
    assert params[("conv1d", "funnel")] == (0.25, 1.0) and params[("shift", "temporal_stride")] == (1, 2)
    assert params[("attn1d_window", "window")] == (2,)
    specs = space.random_specs(20, seed=0)
    flops = [count_spec(s).flops for s in specs]
    assert max(flops) > 1.3 * min(flops)
    shifted = next(s for s in specs if any(c.op == "shift" for c in s.temporal.values()))
    assert count_spec(shifted).flops < count_spec(shifted.replace_choices(
        {k: {"op": "conv1d"} for k, c in shifted.temporal.items() if c.op == "shift"})).flops
