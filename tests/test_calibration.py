"""Calibration statistics and a small end-to-end calibration run."""

from __future__ import annotations

import json
import math

import pytest

from vidnas.proxies import (
    PretrainConfig,
    SupernetConfig,
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


FAST_PRETRAIN = PretrainConfig(steps=2, batch_size=2, train_clips=4)
FAST_SUPERNET = SupernetConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2, eval_timesteps=(200, 800),
                               finetune_steps=1)


def test_small_calibration_runs_measures_the_truths_reliability_and_saves(tmp_path):
    import pandas as pd

    space = get_space("tiny", frames=4, height=64, width=64)
    result = calibrate(space, n=6, steps=2, seed=0, proxies=("flops", "grad_norm", "cross_frame_sensitivity",
                                                             "heldout_loss_short", "supernet", "supernet_ft"),
                       train=TrainConfig(batch_size=2, train_clips=4, heldout_clips=2), pretrain=FAST_PRETRAIN,
                       supernet=FAST_SUPERNET)
    assert len(result.rows) == 6 and all(math.isfinite(r["heldout_loss"]) for r in result.rows)
    for row in result.rows:  # the truth is the mean of two independently trained seeds
        assert row["heldout_loss"] == pytest.approx((row["heldout_loss_seed1"] + row["heldout_loss_seed2"]) / 2)
    for stats in result.proxies.values():
        assert -1 <= stats["kendall"] <= 1 and len(stats["kendall_ci"]) == 2
        for key in ("spearman", "kendall_within_latency_bins", "partial_kendall_given_flops", "precision_at_top10"):
            assert key in stats
    reliability = result.truth_reliability
    assert reliability["n"] == 6 and -1 <= reliability["kendall_between_seeds"] <= 1
    assert len(reliability["kendall_between_seeds_ci"]) == 2 and "spearman_brown_mean_of_two" in reliability
    assert result.ensemble["members_all_data"]
    assert result.config["backbone_id"] and result.config["supernet"]["step"] == 2
    out = result.save(tmp_path / "cal")
    assert len(pd.read_parquet(out / "rows.parquet")) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["steps"] == 2 and summary["version"] == 2 and "truth_reliability" in summary


def test_calibration_rejects_bad_arguments():
    from vidnas._errors import SpecError

    with pytest.raises(SpecError):
        calibrate(get_space("tiny"), n=4, steps=0)
    with pytest.raises(SpecError):
        calibrate(get_space("tiny"), n=4, steps=2, proxies=("nope",))
    with pytest.raises(SpecError) as info:
        calibrate(get_space("tiny"), n=4, steps=2, truth_seeds=1)
    assert info.value.field == "truth_seeds"


def test_ground_truth_trainings_are_cached_so_a_calibration_resumes(tmp_path):
    from vidnas.proxies import PretrainConfig, TrainConfig, pretrain_backbone, train_truths

    space = get_space("tiny", frames=4, height=64, width=64)
    specs = space.random_specs(2, seed=9)
    pretrain = PretrainConfig(steps=2, batch_size=2, train_clips=4)
    backbone = pretrain_backbone(space.base, pretrain)
    config = TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2)
    first = train_truths(specs, config, [0, 1], backbone, pretrain)
    calls = []
    again = train_truths(specs, config, [0, 1], backbone, pretrain, progress=lambda i, n: calls.append(i))
    assert calls == [4]  # all four found in the cache, nothing trained
    assert {k: v.heldout_loss for k, v in first.items()} == {k: v.heldout_loss for k, v in again.items()}
