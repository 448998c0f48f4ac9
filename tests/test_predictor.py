"""Predictions from a table: sums, refusals, the correction, the vectorised space predictor, video costs."""

from __future__ import annotations

import numpy as np
import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import (
    Correction,
    DebugBackend,
    HarnessConfig,
    LatencyPredictor,
    MissingEntriesError,
    build_table,
    fit_correction,
    measure_network,
    roofline_estimate,
    validate_table,
    video_cost,
)
from vidnas.search_space import build_plan, get_space, preset_spec

QUICK = HarnessConfig.quick()


@pytest.fixture(scope="module")
def debug_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("lut") / "t.parquet"
    return build_table(get_space("tiny"), DebugBackend(), path, config=QUICK)


def test_naive_prediction_is_the_sum_of_entries(debug_table):
    spec = get_space("tiny").random_specs(1, seed=2)[0]
    p = LatencyPredictor(debug_table, correction=None).predict(spec)
    expected = sum(debug_table.median_ms(u.signature_id, 1) for u in build_plan(spec) if not u.is_identity)
    assert p.naive_ms == pytest.approx(expected) and p.corrected_ms is None
    assert [r["slot"] for r in p.slot_rows()] == [s.name for s in spec.slots()]


def test_missing_entries_are_listed_not_skipped(debug_table):
    spec = preset_spec("tiny", frames=4)  # other shapes: nothing in the table
    with pytest.raises(MissingEntriesError) as info:
        LatencyPredictor(debug_table).predict(spec)
    assert len(info.value.missing) > 5 and "conv_in" in str(info.value)
    filled = []

    def fill(plans, batch):
        for plan in plans:
            debug_table.add({"signature_id": plan.signature_id, "batch": batch, "median_ms": 1.0})
            filled.append(plan)

    p = LatencyPredictor(debug_table).predict(spec, measure_missing=fill)
    assert filled and p.naive_ms > 0


def test_correction_recovers_the_debug_backends_overheads(debug_table):
    """The debug backend runs a network as 0.4 ms + 0.9 x (sum of units); the fit must find it."""
    space = get_space("tiny")
    backend = DebugBackend()
    correction = fit_correction(debug_table, space, backend, n=8, seed=100, config=QUICK)
    assert correction.slope == pytest.approx(0.9, rel=1e-6)
    assert correction.intercept_ms == pytest.approx(0.4, rel=1e-4)
    report = validate_table(debug_table, space, backend, n=6, seed=5, config=QUICK)
    assert report["corrected"]["mape"] < 1e-6 < report["naive"]["mape"]
    assert not set(correction.arch_ids) & {r["arch_id"] for r in report["rows"]}  # held out


def test_correction_learns_a_per_unit_overhead():
    rng = np.random.default_rng(0)
    naive = rng.uniform(10, 20, 12)
    units = rng.integers(20, 40, 12)
    measured = 1.0 + 1.1 * naive - 0.05 * units
    c = Correction.fit(naive, measured, [str(i) for i in range(12)], units)
    assert (c.intercept_ms, c.slope, c.per_unit_ms) == pytest.approx((1.0, 1.1, 0.05))
    assert c.apply(15.0, 30) == pytest.approx(1.0 + 16.5 - 1.5)


def test_space_predictor_agrees_with_the_per_spec_predictor(debug_table):
    """The vectorised path gives the same numbers; its speed is measured in benchmarks/, not asserted here."""
    space = get_space("tiny")
    predictor = LatencyPredictor(debug_table)
    fast = predictor.compile(space)
    for spec in space.random_specs(10, seed=9):
        assert fast.predict(spec) == pytest.approx(predictor.predict(spec).ms)
    indices = fast.random_indices(100_000, seed=1)
    naive, corrected = fast.predict_indices(indices)
    assert naive.shape == (100_000,) and np.all(naive > 0) and np.all(np.isfinite(corrected))


def test_video_cost_modes():
    per_call = {1: 10.0, 2: 15.0}.__getitem__
    assert video_cost(per_call, steps=4, cfg="none")["per_video_ms"] == 40.0
    assert video_cost(per_call, steps=4, cfg="sequential")["per_video_ms"] == 80.0
    assert video_cost(per_call, steps=4, cfg="batched")["per_video_ms"] == 60.0
    with pytest.raises(SpecError) as info:
        video_cost(per_call, steps=4, cfg="double")
    assert info.value.field == "cfg"


def test_network_measurement_on_torch_runs():
    from vidnas.latency_models import TorchBackend

    m = measure_network(preset_spec("tiny"), TorchBackend(threads=1), config=QUICK)
    assert m.median_ms > 0


def test_roofline_is_labelled_and_orders_devices():
    spec = preset_spec("svd")
    phone = roofline_estimate(spec, "phone-npu")
    h200 = roofline_estimate(spec, "h200", dtype="bfloat16")
    assert phone["estimate"] is True and phone["model"] == "roofline"
    assert phone["per_call_ms"] > 10 * h200["per_call_ms"] > 0
    with pytest.raises(SpecError) as info:
        roofline_estimate(spec, "phone-npu", dtype="float32")
    assert info.value.field == "dtype"
    with pytest.raises(SpecError):
        roofline_estimate(spec, "toaster")


def test_robust_correction_ignores_one_disturbed_measurement():
    rng = np.random.default_rng(1)
    naive = rng.uniform(10, 30, 10)
    measured = 0.5 + 1.05 * naive
    measured[3] *= 1.6  # a burst of machine noise during one measurement
    c = Correction.fit(naive, measured, [str(i) for i in range(10)])
    assert c.slope == pytest.approx(1.05, rel=0.02) and c.model in ("scale", "affine")
    assert c.loo_error is not None and c.loo_error < 0.02


def test_networks_are_measured_in_groups_with_bounded_memory():
    """At most ``group_size`` prepared networks are alive at once; every spec gets its own paired figure."""
    import dataclasses
    import weakref

    from vidnas.latency_models import measure_networks

    alive: list = []
    peak = [0]

    @dataclasses.dataclass
    class Counting(DebugBackend):
        def prepare(self, module, inputs, *, key=None):
            run = super().prepare(module, inputs, key=key)

            class Held:  # stands for a session holding the network's memory
                clock = run.clock  # the debug backend's virtual clock

                def __call__(self):
                    run()

            held = Held()
            alive.append(weakref.ref(held))
            peak[0] = max(peak[0], sum(r() is not None for r in alive))
            return held

    specs = get_space("tiny").random_specs(5, seed=3)
    results = measure_networks(specs, Counting(), config=QUICK, group_size=2)
    assert peak[0] <= 3  # two networks of a group plus the group's reference workload
    assert len(results) == 5 and all(r.ratio is not None for r in results)
    direct = measure_networks(specs, DebugBackend(), config=QUICK, group_size=8)
    for grouped, whole in zip(results, direct):  # the debug backend is exact: grouping changes nothing
        assert grouped.ratio.median == pytest.approx(whole.ratio.median, rel=1e-6)
    with pytest.raises(SpecError) as info:
        measure_networks(specs, DebugBackend(), config=QUICK, group_size=0)
    assert info.value.field == "group_size"
