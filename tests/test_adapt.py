"""`lut adapt`: a table mapped onto a new target from a few measurements, and its refusals."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.cli._app import app
from vidnas.latency_models import (
    DebugBackend,
    HarnessConfig,
    LatencyPredictor,
    LatencyTable,
    adapt_table,
    build_table,
    fit_adaptation,
    fit_correction,
)
from vidnas.latency_models._adapt import Features, network_features
from vidnas.search_space import get_space

QUICK = HarnessConfig.quick()
# Two "devices": the target is slower per FLOP, pays more per unit and per call, fuses less.
SOURCE = DebugBackend()
TARGET = DebugBackend(gflops=20.0, overhead_ms=0.2, network_overhead_ms=1.0, fusion=0.8)


@pytest.fixture(scope="module")
def source_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("adapt") / "source.parquet"
    space = get_space("tiny")
    table = build_table(space, SOURCE, path, config=QUICK)
    fit_correction(table, space, SOURCE, n=6, seed=100, config=QUICK)
    table.save(path)
    return path


def test_adapted_table_predicts_the_new_target(source_table, tmp_path):
    """The debug target is affine in the source's sums and unit counts: ten networks pin it down."""
    source = LatencyTable.load(source_table)
    table, report = adapt_table(source, TARGET, k=10, validate=6, seed=1, config=QUICK, source_path=source_table)
    v = report["validation"]
    assert v["n"] == 6 and v["within_10pct"] == 1.0 and v["mape"] < 1e-3
    assert report["method"] in ("affine+units", "per_op")
    meta = table.meta
    assert meta.adapted["from"] == str(source_table) and meta.adapted["k"] == 10
    assert meta.adapted["source"]["backend"] == "debug" and meta.adapted["validation"]["mape"] == v["mape"]
    assert meta.fingerprint["options"]["gflops"] == 20.0 and meta.space == "tiny"
    assert len(meta.end_to_end) == 10 and all(r["spec"] for r in meta.end_to_end)
    assert set(meta.correction["arch_ids"]).isdisjoint(r["arch_id"] for r in v["worst"])  # held out
    table.save(tmp_path / "new.parquet")
    again = LatencyTable.load(tmp_path / "new.parquet")
    assert again.meta.adapted["method"] == report["method"]
    # The mapped table and the fitted map agree for any network of the space.
    from vidnas.latency_models._adapt import Adaptation

    adaptation = Adaptation(**{**report["adaptation"], "arch_ids": tuple(report["adaptation"]["arch_ids"])})
    predictor = LatencyPredictor(again)
    for spec in get_space("tiny").random_specs(4, seed=77):
        f = network_features(source, spec)
        assert predictor.predict(spec).ms == pytest.approx(adaptation.predict(f), rel=1e-9)


def test_three_networks_give_a_global_scale(source_table):
    source = LatencyTable.load(source_table)
    table, report = adapt_table(source, TARGET, k=3, validate=3, seed=2, config=QUICK)
    loo = report["adaptation"]["loo_errors"]
    assert set(loo) == {"scale", "flops_linear", "params_linear"}  # judged by leave-one-out on the 3
    assert report["method"] == "scale" and loo["scale"] <= 1.1 * min(loo.values())
    assert table.meta.correction["model"] == "adapted:scale" and report["chosen"].startswith("scale")


def test_the_plain_flops_fit_is_kept_when_the_table_misleads(tmp_path):
    """A source whose units cost mostly a per-call overhead, a target that costs FLOPs alone: the
    adapted table cannot beat a FLOPs-linear fit, so adapt stands behind the fit and says so."""
    space = get_space("tiny")
    overhead_bound = DebugBackend(overhead_ms=5.0)
    flops_bound = DebugBackend(gflops=20.0, overhead_ms=0.0, network_overhead_ms=0.0, fusion=1.0)
    source = build_table(space, overhead_bound, tmp_path / "s.parquet", config=QUICK)
    table, report = adapt_table(source, flops_bound, k=4, validate=4, seed=3, config=QUICK)
    assert report["method"] == "flops_linear", report["adaptation"]["loo_errors"]
    assert "flops_linear" in report["chosen"] and "adapted table" in report["chosen"]
    assert report["validation"]["within_10pct"] == 1.0
    from vidnas.search_space import count_spec

    a = report["adaptation"]
    for spec in space.random_specs(3, seed=9):
        expected = a["intercept_ms"] + a["scale"] * count_spec(spec).flops
        assert LatencyPredictor(table).predict(spec).ms == pytest.approx(expected, rel=1e-6)


def synthetic(n: int, seed: int = 0) -> tuple[list[Features], list[float]]:
    """Networks whose target time scales op `a` by 2, `b` by 1, `c` by 0.5, plus 3 ms per call."""
    rng = random.Random(seed)
    feats, times = [], []
    for i in range(n):
        ops = {op: rng.uniform(0.5, 4.0) for op in "abc" if rng.random() < 0.8}
        backbone = 10.0
        naive = backbone + sum(ops.values())
        feats.append(Features(str(i), naive, naive, backbone, ops, 10 + len(ops)))
        times.append(3.0 + backbone + 2.0 * ops.get("a", 0) + ops.get("b", 0) + 0.5 * ops.get("c", 0))
    return feats, times


def test_per_op_scales_are_learnt_when_ops_move_apart():
    feats, times = synthetic(16)
    a = fit_adaptation(feats, times)
    assert a.model == "per_op"
    assert a.op_scales["a"] == pytest.approx(2.0, rel=0.1) and a.op_scales["c"] == pytest.approx(0.5, rel=0.15)
    held, truth = synthetic(20, seed=1)
    errors = [abs(a.predict(f) - y) / y for f, y in zip(held, truth)]
    assert max(errors) < 0.05
    scale_only = fit_adaptation(feats, times, models=("scale",))
    assert scale_only.model == "scale"
    assert max(abs(scale_only.predict(f) - y) / y for f, y in zip(held, truth)) > 0.05


def test_refusals_name_the_field(source_table, tmp_path):
    source = LatencyTable.load(source_table)
    cases = [
        (dict(k=2), "n", 2),
        (dict(k=5, validate=2), "validate", 2),
    ]
    for kwargs, field, value in cases:
        with pytest.raises(SpecError) as info:
            adapt_table(source, TARGET, config=QUICK, **kwargs)
        assert (info.value.field, info.value.value) == (field, value)
    with pytest.raises(SpecError) as info:  # the source's own target: nothing to adapt
        adapt_table(source, DebugBackend(), k=5, config=QUICK)
    assert info.value.field == "--backend/--device/--threads" and "own target" in str(info.value)
    unknown = LatencyTable.load(source_table)
    unknown.meta.space = "no-such-space"
    with pytest.raises(SpecError) as info:
        adapt_table(unknown, TARGET, k=5, config=QUICK)
    assert (info.value.field, info.value.value) == ("table.space", "no-such-space")
    unknown.meta.space = None
    with pytest.raises(SpecError) as info:
        adapt_table(unknown, TARGET, k=5, config=QUICK)
    assert info.value.field == "table.space"
    empty = LatencyTable(source.meta)
    with pytest.raises(SpecError) as info:
        adapt_table(empty, TARGET, k=5, config=QUICK, source_path="empty.parquet")
    assert (info.value.field, info.value.value) == ("table", "empty.parquet")
    feats, times = synthetic(4)
    with pytest.raises(SpecError) as info:
        fit_adaptation(feats, times[:3])
    assert info.value.field == "measured_ms"
    with pytest.raises(SpecError) as info:
        fit_adaptation(feats, times, models=("cubic",))
    assert (info.value.field, info.value.value) == ("models", "cubic")


def test_lut_adapt_from_the_command_line(tmp_path):
    runner = CliRunner()
    table = tmp_path / "t.parquet"
    built = runner.invoke(app, ["lut", "build", "--space", "tiny-enum", "--backend", "debug", "--threads", "1",
                                "--out", str(table), "--fit", "4", "--quick", "--json"])
    assert built.exit_code == 0, built.output
    out = tmp_path / "t2.parquet"
    result = runner.invoke(app, ["lut", "adapt", "--from", str(table), "--backend", "debug", "--threads", "2",
                                 "--n", "5", "--validate", "3", "--out", str(out), "--quick", "--json"])
    assert result.exit_code == 0, result.output + str(result.exception)
    summary = json.loads(result.stdout)
    assert summary["meta"]["threads"] == 2 and summary["meta"]["adapted"]["k"] == 5
    assert summary["adaptation"]["validation"]["n"] == 3 and out.exists()
    same = runner.invoke(app, ["lut", "adapt", "--from", str(table), "--backend", "debug", "--threads", "1",
                               "--n", "5", "--out", str(tmp_path / "t3.parquet"), "--quick"])
    assert same.exit_code == 2 and "own target" in " ".join(same.stderr.split())
    assert "lut adapt" not in same.stderr  # refused before any measurement starts
    small = runner.invoke(app, ["lut", "adapt", "--from", str(table), "--backend", "debug", "--threads", "2",
                                "--n", "2", "--out", str(tmp_path / "t4.parquet"), "--quick"])
    assert small.exit_code == 2 and "`n` = 2" in " ".join(small.stderr.split())
    onto = runner.invoke(app, ["lut", "adapt", "--from", str(table), "--backend", "debug", "--threads", "2",
                               "--n", "5", "--out", str(table), "--quick"])
    assert onto.exit_code == 2 and "--out" in onto.stderr
