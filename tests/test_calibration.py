"""Calibration statistics and a small end-to-end calibration run."""

from __future__ import annotations

import json
import math

import pytest

from vidnas.proxies import (
    TrainConfig,
    calibrate,
    dominant_op,
    kendall,
    partial_kendall,
    precision_at_top,
    stratified_sample,
    within_bins_kendall,
)
from vidnas.search_space import get_space


def test_rank_statistics():
    x = [1, 2, 3, 4, 5, 6]
    assert kendall(x, x) == pytest.approx(1) and kendall(x, x[::-1]) == pytest.approx(-1)
    assert precision_at_top(list(range(20)), list(range(20))) == 1.0
    assert precision_at_top(list(range(20)), list(range(20))[::-1]) == 0.0
    # y depends on z only: x correlates with y through z, partial tau removes it
    z = [1, 2, 3, 4, 5, 6, 7, 8]
    y = [1, 2, 3, 4, 5, 6, 7, 8]
    xs = [2, 1, 4, 3, 6, 5, 8, 7]
    assert kendall(xs, y) > 0.5 and abs(partial_kendall(xs, y, z)) < kendall(xs, y)
    assert within_bins_kendall(x, x, [0, 0, 0, 1, 1, 1]) == 1.0
    assert math.isnan(within_bins_kendall(x, x, [0, 1, 2, 3, 4, 5]))


def test_stratified_sample_spreads_over_op_types():
    space = get_space("tiny")
    specs = stratified_sample(space, 12, seed=0)
    assert len({s.arch_id for s in specs}) == 12
    assert len({dominant_op(s) for s in specs}) >= 4


def test_small_calibration_runs_and_saves(tmp_path):
    import pandas as pd

    space = get_space("tiny", frames=4, height=64, width=64)
    result = calibrate(space, n=6, steps=3, seed=0, repeats=3, proxies=("flops", "grad_norm", "cross_frame_sensitivity",
                                                                       "heldout_loss_short"),
                       train=TrainConfig(batch_size=2, train_clips=4, heldout_clips=2))
    assert len(result.rows) == 6 and all(math.isfinite(r["heldout_loss"]) for r in result.rows)
    for stats in result.proxies.values():
        assert -1 <= stats["kendall"] <= 1 and len(stats["kendall_ci"]) == 2
        for key in ("spearman", "kendall_within_latency_bins", "partial_kendall_given_flops", "precision_at_top10"):
            assert key in stats
    assert result.noise_ceiling["n"] == 3
    assert result.ensemble["members_all_data"]
    out = result.save(tmp_path / "cal")
    assert len(pd.read_parquet(out / "rows.parquet")) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["steps"] == 3 and "ensemble" in summary


def test_calibration_rejects_bad_arguments():
    from vidnas._errors import SpecError

    with pytest.raises(SpecError):
        calibrate(get_space("tiny"), n=4, steps=0)
    with pytest.raises(SpecError):
        calibrate(get_space("tiny"), n=4, steps=2, proxies=("nope",))


def test_ground_truth_averaged_over_seeds_measures_the_ceiling_on_every_architecture():
    space = get_space("tiny", frames=4, height=64, width=64)
    result = calibrate(space, n=4, steps=2, seed=0, truth_seeds=2, proxies=("flops",),
                       train=TrainConfig(batch_size=2, train_clips=4, heldout_clips=2))
    assert result.noise_ceiling["n"] == 4 and result.config["truth_seeds"] == 2
    for row in result.rows:
        assert row["heldout_loss"] == pytest.approx((row["heldout_loss_seed1"] + row["heldout_loss_seed2"]) / 2)
