"""Paired ratio, level-rescaled or plain median: the harness's choice from synthetic timing series, and
re-measurement of flagged items."""

from __future__ import annotations

import dataclasses
import math
import random
import zlib

import pytest

from vidnas._errors import SpecError
from vidnas.latency_models import (
    DebugBackend,
    HarnessConfig,
    LatencyTable,
    Series,
    build_table,
    combine,
    decide_basis,
    fit_correction,
    measure_group,
    measure_networks,
    validate_table,
)
from vidnas.latency_models._backends import VirtualClock
from vidnas.latency_models._builder import row_series
from vidnas.search_space import get_space

QUICK = HarnessConfig.quick()
TARGET = 0.02


def tracking(n: int, seed: int = 0, *, drift: float = 0.08, noise: float = 0.005) -> Series:
    """The machine's speed wanders (a random walk) and slows item and reference alike."""
    rng = random.Random(seed)
    speed, item, ref = 0.0, [], []
    for _ in range(n):
        speed += rng.gauss(0, drift)
        item.append(10 * math.exp(speed + rng.gauss(0, noise)))
        ref.append(1 * math.exp(speed + rng.gauss(0, noise)))
    return Series(tuple(item), tuple(ref))


def competing(n: int, seed: int = 0, *, anti: bool = False) -> Series:
    """The item is steady; the reference varies on its own (or against the item: both fight for cores)."""
    rng = random.Random(seed)
    item, ref = [], []
    for _ in range(n):
        load = rng.gauss(0, 0.15)
        item.append(10 * math.exp(rng.gauss(0, 0.01) + (0.3 * load if anti else 0.0)))
        ref.append(1 * math.exp(-load if anti else load))
    return Series(tuple(item), tuple(ref))


def quiet(n: int, seed: int = 0) -> Series:
    """A quiet machine: small independent noise on both."""
    rng = random.Random(seed)
    return Series(tuple(10 * math.exp(rng.gauss(0, 0.004)) for _ in range(n)),
                  tuple(1 * math.exp(rng.gauss(0, 0.004)) for _ in range(n)))


def test_a_reference_that_tracks_the_machine_is_used():
    items = [[tracking(40, seed)] for seed in range(4)]
    basis = decide_basis(items, target_rel_ci=TARGET)
    assert basis.basis == "paired" and "tracks" in basis.reason
    assert basis.ratio_rel_ci < basis.plain_rel_ci
    assert basis.correlation > 0.9


@pytest.mark.parametrize("anti", [False, True])
def test_a_reference_that_competes_or_varies_on_its_own_is_not(anti):
    items = [[competing(40, seed, anti=anti)] for seed in range(4)]
    basis = decide_basis(items, target_rel_ci=TARGET)
    assert basis.basis == "plain" and "variation of its own" in basis.reason
    assert basis.ratio_rel_ci > max(basis.plain_rel_ci, TARGET) and basis.reference_rel_ci > TARGET
    if anti:
        assert basis.correlation < -0.5


def contended(n: int, seed: int = 0) -> Series:
    """Item and reference fight for cores: a round that slows one spares the other."""
    rng = random.Random(seed)
    load = [rng.gauss(0, 0.1) for _ in range(n)]
    return Series(tuple(10 * math.exp(0.5 * v) for v in load), tuple(1 * math.exp(-0.5 * v) for v in load))


def test_a_reference_noisy_per_round_but_pinned_in_level_rescales_the_group():
    items = [[contended(200, seed)] for seed in range(4)]
    basis = decide_basis(items, target_rel_ci=0.012)
    assert basis.basis == "level" and "level is pinned down" in basis.reason
    assert basis.ratio_rel_ci > 0.012 >= basis.reference_rel_ci and basis.correlation < -0.9
    assert basis.rescaled


def test_the_level_basis_takes_out_a_uniformly_slower_machine():
    """The machine runs 30 % slower than when the table was built (typical reference 1.0 ms):
    the level figure recovers the table's 10 ms, the plain median does not."""
    slow = [Series(tuple(v * 1.3 for v in quiet(40, 1).item_ms), tuple(v * 1.3 for v in competing(40, 1).reference_ms))]
    basis = decide_basis([slow], target_rel_ci=0.05, forced="level")
    t = combine(slow, basis, target_rel_ci=0.05, max_cv=0.5, tolerance=0.05)
    assert t.ms(1.0) == pytest.approx(t.plain.median_ms / t.reference.median_ms, rel=1e-12)
    assert t.ms(1.0) == pytest.approx(10, rel=0.06) and t.plain.median_ms == pytest.approx(13, rel=0.01)
    assert t.rescaled_ms(None) is None and t.ms(None) == t.plain.median_ms


def test_on_a_quiet_machine_the_ratio_is_kept_for_its_drift_correction():
    """Independent small noise: the ratio is a little wider than the plain median but within the target."""
    items = [[quiet(60, seed)] for seed in range(4)]
    basis = decide_basis(items, target_rel_ci=TARGET)
    assert basis.ratio_rel_ci > basis.plain_rel_ci and basis.ratio_rel_ci <= TARGET
    assert basis.basis == "paired" and "drift correction" in basis.reason


def test_forced_basis_and_no_reference():
    items = [[competing(30, 1)]]
    assert decide_basis(items, target_rel_ci=TARGET, forced="paired").basis == "paired"
    assert "forced" in decide_basis(items, target_rel_ci=TARGET, forced="paired").reason
    plain = decide_basis([[Series((1.0, 1.1, 0.9, 1.0))]], target_rel_ci=TARGET)
    assert plain.basis == "plain" and plain.ratio_rel_ci is None and "no reference" in plain.reason
    with pytest.raises(SpecError) as info:
        decide_basis(items, target_rel_ci=TARGET, forced="ratio")
    assert info.value.field == "harness.basis" and info.value.value == "ratio"
    with pytest.raises(SpecError) as info:
        HarnessConfig(basis="ratio")
    assert info.value.field == "harness.basis"
    with pytest.raises(SpecError) as info:
        HarnessConfig(remeasure_rounds=-1)
    assert info.value.field == "harness.remeasure_rounds"
    with pytest.raises(SpecError) as info:
        Series((1.0, 2.0), (1.0,))
    assert info.value.field == "series.reference_ms"


def test_the_chosen_figure_is_the_accurate_one():
    """Under drift the paired figure recovers the true 10x ratio; with a competing reference
    the plain median recovers the item's 10 ms while the ratio scatters."""
    drifted = [tracking(40, 3, drift=0.1)]
    t = combine(drifted, decide_basis([drifted], target_rel_ci=TARGET), target_rel_ci=TARGET, max_cv=0.15,
                tolerance=0.05)
    assert t.paired and t.ratio.median == pytest.approx(10, rel=0.01) and t.trusted
    assert t.ms(1.0) == pytest.approx(10, rel=0.01)
    noisy = [competing(40, 3)]
    t = combine(noisy, decide_basis([noisy], target_rel_ci=TARGET), target_rel_ci=TARGET, max_cv=0.15,
                tolerance=0.05)
    assert not t.paired and t.ms(1.0) == pytest.approx(10, rel=0.01) and t.trusted


def test_a_disturbed_pass_is_outvoted_and_disagreement_is_flagged():
    good = [quiet(30, seed) for seed in range(2)]
    burst = Series(tuple(v * 1.3 for v in quiet(30, 9).item_ms), quiet(30, 9).reference_ms)
    basis = decide_basis([[burst, *good]], target_rel_ci=TARGET, forced="plain")
    t = combine([burst, *good], basis, target_rel_ci=TARGET, max_cv=0.15, tolerance=0.05)
    assert t.used == (1, 2) and t.drift < 0.05 and t.trusted
    assert t.plain.median_ms == pytest.approx(10, rel=0.01)
    t = combine([burst, good[0]], basis, target_rel_ci=TARGET, max_cv=0.15, tolerance=0.05)
    assert not t.trusted and "disagree" in t.reason and t.drift == pytest.approx(0.3, abs=0.02)


def test_an_item_faster_than_the_reference_is_judged_on_the_references_scale():
    """20 % noise on a 0.02 ms unit is 0.4 % of a typical (1 ms) unit: trusted; on a 10 ms unit: not."""
    def noisy(ms: float) -> Series:
        rng = random.Random(4)
        return Series(tuple(ms * math.exp(rng.gauss(0, 0.2)) for _ in range(20)),
                      tuple(math.exp(rng.gauss(0, 0.002)) for _ in range(20)))

    for ms, trusted in ((0.02, True), (10.0, False)):
        passes = [noisy(ms)]
        basis = decide_basis([passes], target_rel_ci=0.02)
        t = combine(passes, basis, target_rel_ci=0.02, max_cv=0.15, tolerance=0.05)
        assert t.trusted is trusted, t.reason


def test_agreeing_passes_outweigh_a_wide_spread_of_single_samples():
    """Widely spread samples (a loaded machine) flag a single pass; a second, agreeing pass confirms the median."""
    def spread(seed: int) -> Series:
        rng = random.Random(seed)
        return Series(tuple(10 * math.exp(rng.gauss(0, 0.4)) for _ in range(600)))

    one = [spread(1)]
    t = combine(one, decide_basis([one], target_rel_ci=0.05), target_rel_ci=0.05, max_cv=0.3, tolerance=0.05)
    assert not t.trusted and "robust CV" in t.reason and t.plain.rel_ci <= 0.05
    two = [spread(1), spread(2)]
    t = combine(two, decide_basis([two], target_rel_ci=0.05), target_rel_ci=0.05, max_cv=0.3, tolerance=0.05)
    assert t.trusted and t.drift <= 0.05 and t.plain.robust_cv > 0.3


def test_series_round_trip_through_json():
    s = tracking(7)
    again = Series.from_dict(s.to_dict())
    assert again.item_ms == pytest.approx(s.item_ms, rel=1e-5) and again.inner_loops == s.inner_loops


# Runners with a controllable clock -------------------------------------------------------------


class Machine:
    """A shared machine whose speed every runner sees (a random walk per call) or not."""

    def __init__(self, seed: int, drift: float) -> None:
        self.rng = random.Random(seed)
        self.speed = 0.0
        self.drift = drift

    def runner(self, ms: float, *, own_noise: float = 0.0, shares_speed: bool = True):
        clock = VirtualClock()

        def run() -> None:
            self.speed += self.rng.gauss(0, self.drift)
            factor = math.exp((self.speed if shares_speed else 0.0) + self.rng.gauss(0, own_noise))
            clock.now += ms * factor / 1000

        run.clock = clock
        return run


def test_measure_group_pairs_with_a_reference_that_shares_the_machine():
    machine = Machine(0, drift=0.03)
    config = HarnessConfig(min_runs=20, max_runs=60, max_seconds=100, min_sample_seconds=0.0)
    result = measure_group({"a": machine.runner(10), "b": machine.runner(20)}, machine.runner(1), config)
    assert result.basis.basis == "paired"
    assert result.timings["a"].ratio.median == pytest.approx(10, rel=0.02)
    assert result.timings["b"].ratio.median == pytest.approx(20, rel=0.02)


def test_measure_group_drops_a_reference_that_is_noisy_on_its_own():
    machine = Machine(1, drift=0.0)
    config = HarnessConfig(min_runs=20, max_runs=40, max_seconds=100, min_sample_seconds=0.0)
    result = measure_group({"a": machine.runner(10, own_noise=0.003), "b": machine.runner(20, own_noise=0.003)},
                           machine.runner(1, own_noise=0.4), config)
    assert result.basis.basis == "plain"
    assert all(t.trusted and t.ms(1.0) == pytest.approx(t.plain.median_ms) for t in result.timings.values())
    assert result.timings["b"].ms(1.0) == pytest.approx(20, rel=0.01)


def test_sampling_stops_once_the_chosen_figure_is_pinned_down():
    """A reference too noisy to pin down in the budget does not keep the items sampling to it;
    one that can be pinned is sampled until it is, and the group then rescales."""
    machine = Machine(2, drift=0.0)
    config = HarnessConfig(min_runs=10, max_runs=300, max_seconds=100, min_sample_seconds=0.0)
    result = measure_group({"a": machine.runner(10, own_noise=0.002)}, machine.runner(1, own_noise=0.5), config)
    assert result.timings["a"].plain.runs <= 15 and result.basis.basis == "plain"
    machine = Machine(3, drift=0.0)
    result = measure_group({"a": machine.runner(10, own_noise=0.002)}, machine.runner(1, own_noise=0.05), config)
    assert 15 < result.timings["a"].plain.runs < 300 and result.basis.rescaled
    assert result.timings["a"].rel_ci <= 0.02


# Re-measurement ------------------------------------------------------------------------------


@dataclasses.dataclass
class FlakyFirstPass(DebugBackend):
    """Every network is disturbed (slow and noisy) the first time it is prepared, steady afterwards."""

    prepared: dict = dataclasses.field(default_factory=dict)

    def prepare(self, module, inputs, *, key=None):
        run = super().prepare(module, inputs, key=key)
        first = key not in self.prepared and str(key).startswith("net-")
        self.prepared[key] = self.prepared.get(key, 0) + 1
        if not first:
            return run
        rng = random.Random(str(key))
        clock = run.clock

        def disturbed() -> None:
            start = clock.now
            run()
            clock.now = start + (clock.now - start) * rng.uniform(1.0, 3.0)

        disturbed.clock = clock
        return disturbed


def test_flagged_networks_are_measured_again_until_trusted():
    specs = get_space("tiny").random_specs(3, seed=4)
    backend = FlakyFirstPass()
    results = measure_networks(specs, backend, config=QUICK)
    assert all(r.trusted and r.passes >= 2 for r in results)
    exact = measure_networks(specs, DebugBackend(), config=QUICK)
    for r, e in zip(results, exact):  # the disturbed first pass disagreed, a third confirmed the second
        assert r.passes == 3 and r.timing.used == (1, 2)
        assert r.ratio.median == pytest.approx(e.ratio.median, rel=1e-6)
        assert r.plain_ms == pytest.approx(e.plain_ms, rel=1e-6)


def test_persistently_noisy_networks_stay_flagged_after_the_bounded_rounds():
    specs = get_space("tiny").random_specs(2, seed=5)
    config = dataclasses.replace(QUICK, remeasure_rounds=2, target_rel_ci=0.005)
    results = measure_networks(specs, DebugBackend(noise=0.3), config=config)
    assert all(not r.trusted and r.passes == 3 for r in results)
    none = measure_networks(specs, DebugBackend(noise=0.3), config=dataclasses.replace(config, remeasure_rounds=0))
    assert all(r.passes == 1 for r in none)


@dataclasses.dataclass
class FlakyUnits(DebugBackend):
    """Units are 30 % slow the first time they are prepared (a burst of load during pass 1)."""

    prepared: dict = dataclasses.field(default_factory=dict)

    def prepare(self, module, inputs, *, key=None):
        run = super().prepare(module, inputs, key=key)
        count = self.prepared[key] = self.prepared.get(key, 0) + 1
        if count > 1 or getattr(module, "plan", None) is None or module.plan.name == "reference":
            return run
        clock = run.clock

        def slow() -> None:
            start = clock.now
            run()
            clock.now = start + (clock.now - start) * 1.3

        slow.clock = clock
        return slow


def test_table_entries_that_disagree_are_measured_again_and_confirmed(tmp_path):
    space = get_space("tiny-enum")
    table = build_table(space, FlakyUnits(), tmp_path / "t.parquet", config=QUICK)
    exact = build_table(space, DebugBackend(), tmp_path / "exact.parquet", config=QUICK)
    ref = table.reference_ms
    rows = table.rows()
    big = [r for r in rows if r["median_ms"] >= 0.2 * ref]  # 30 % of these is more than 5 % of a typical unit
    small = [r for r in rows if r["median_ms"] < 0.15 * ref]
    assert big and small and all(r["trusted"] for r in rows)
    for row in big:  # pass 1 was outvoted by passes 2 and 3
        assert row["passes"] == 3 and row["drift"] == pytest.approx(0.0, abs=1e-4)
        assert table.latency_ms(row) == pytest.approx(exact.median_ms(row["signature_id"], 1), rel=1e-6)
    for row in small:  # judged on the reference's scale: confirmed by the second pass
        assert row["passes"] == 2
        assert abs(table.latency_ms(row) - exact.median_ms(row["signature_id"], 1)) <= 0.05 * ref
    again = LatencyTable.load(tmp_path / "t.parquet")
    assert len(row_series(again.get(big[0]["signature_id"], 1))) == 3  # the rounds of every pass are kept


def test_without_remeasurement_disagreeing_entries_stay_flagged(tmp_path):
    config = dataclasses.replace(QUICK, remeasure_rounds=0)
    table = build_table(get_space("tiny-enum"), FlakyUnits(), tmp_path / "t.parquet", config=config)
    big = [r for r in table.rows() if r["median_ms"] >= 0.2 * table.reference_ms]
    assert big and all(not r["trusted"] and "disagree" in r["reason"] and r["passes"] == 2 for r in big)


# The validation's answer -----------------------------------------------------------------------


@dataclasses.dataclass
class SharedDrift(DebugBackend):
    """Every runner shares one machine whose speed wanders: the reference tracks the networks."""

    drift: float = 0.02
    machine: Machine | None = None

    def prepare(self, module, inputs, *, key=None):
        base = self.latency_ms(module, inputs)
        self.machine = self.machine or Machine(self.seed, self.drift)
        return self.machine.runner(base)


@dataclasses.dataclass
class NoisyReference(DebugBackend):
    """Steady networks beside a reference workload that varies on its own."""

    def prepare(self, module, inputs, *, key=None):
        base = self.latency_ms(module, inputs)
        plan = getattr(module, "plan", None)
        machine = Machine(zlib.crc32(str(key).encode()), 0.0)
        return machine.runner(base, own_noise=0.4 if plan is not None and plan.name == "reference" else 0.002)


@pytest.mark.parametrize("backend, answer, basis", [(SharedDrift(), "rescaled", "paired"),
                                                   (NoisyReference(), "plain", "plain")])
def test_validation_states_which_figures_it_stands_behind(tmp_path, backend, answer, basis):
    space = get_space("tiny-enum")
    config = HarnessConfig(min_runs=15, max_runs=40, max_seconds=100, min_sample_seconds=0.0, target_rel_ci=0.02)
    table = build_table(space, DebugBackend(), tmp_path / "t.parquet", config=QUICK)
    report = validate_table(table, space, backend, n=4, seed=3, config=config)
    assert report["answer_basis"]["basis"] == answer and report["answer_basis"][f"{basis}_networks"] == 4
    assert report["answer_basis"]["reason"] and report["answer_basis"]["networks"] == 4
    assert {"mape", "within_10pct", "spearman", "kendall", "worst"} <= set(report["answer"])
    key = "naive" if answer == "rescaled" else "raw_naive"
    assert report["answer"]["mape"] == pytest.approx(report[key]["mape"])
    assert all(r["basis"] == basis for r in report["rows"])


@dataclasses.dataclass
class NoisySecondReference(DebugBackend):
    """A session ``speed`` times slower than the table's; the reference of the second group varies on its own."""

    speed: float = 1.3
    references: int = 0

    def prepare(self, module, inputs, *, key=None):
        base = self.speed * self.latency_ms(module, inputs)
        plan = getattr(module, "plan", None)
        reference = plan is not None and plan.name == "reference"
        self.references += reference
        noisy = reference and self.references > 1
        machine = Machine(zlib.crc32(f"{key}{self.references}".encode()), 0.0)
        return machine.runner(base, own_noise=0.15 if noisy else 0.002)


@pytest.mark.parametrize("speed", [1.3, 1.0], ids=["drifted", "steady"])
def test_the_correction_is_fitted_on_one_basis_for_every_network(tmp_path, speed):
    """Groups that chose different bases are not mixed in the fit: rescaled figures (the drift cancelled)
    beside plain ones 30 % slower would teach the correction that drift as overhead. The group whose
    reference is too variable to rescale by is rescaled by its level when that shows the drift, and
    keeps its plain medians when the machine did not drift."""
    space = get_space("tiny-enum")
    config = HarnessConfig(min_runs=15, max_runs=40, max_seconds=100, min_sample_seconds=0.0, target_rel_ci=0.02,
                           remeasure_rounds=0)
    table = build_table(space, DebugBackend(), tmp_path / "t.parquet", config=QUICK)
    correction = fit_correction(table, space, NoisySecondReference(speed=speed), n=12, seed=5, config=config)
    rows = table.meta.end_to_end
    assert {r["basis"] for r in rows[:8]} == {"paired"} and {r["basis"] for r in rows[8:]} == {"plain"}
    assert correction.basis == "rescaled" and {r["fit_basis"] for r in rows} == {"rescaled"}
    assert all(r["measured_ms"] == pytest.approx(r["rescaled_measured_ms"]) for r in rows)
    assert all(r["raw_measured_ms"] == pytest.approx(speed * r["measured_ms"], rel=0.02) for r in rows[:8])
    if speed == 1.0:  # no drift shown: the plain medians stand, the noisy reference does not move them
        assert all(r["measured_ms"] == r["raw_measured_ms"] for r in rows[8:])
    else:  # rescaled by the noisy reference's level: the drift is cancelled up to that reference's noise
        assert all(r["measured_ms"] == pytest.approx(r["raw_measured_ms"] / speed, rel=0.08) for r in rows[8:])
    for r in rows:  # the drift is cancelled, not learnt: the correction stays near the table's own figures
        assert correction.apply(r["naive_ms"], r["units"]) == pytest.approx(r["measured_ms"], rel=0.08)
    table.save(tmp_path / "t.parquet")
    assert LatencyTable.load(tmp_path / "t.parquet").meta.correction["basis"] == "rescaled"
