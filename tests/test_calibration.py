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
                       supernet=FAST_SUPERNET, second_seed_n=4, store=tmp_path / "store")
    assert len(result.rows) == 6 and all(math.isfinite(r["heldout_loss"]) for r in result.rows)
    for i, row in enumerate(result.rows):  # the truth is the first seed; the first four also have a second
        assert row["heldout_loss"] == row["heldout_loss_seed1"]
        assert math.isfinite(row["heldout_loss_seed2"]) == (i < 4)
        if i < 4:
            assert row["heldout_loss_seed2"] != row["heldout_loss_seed1"]
    for stats in result.proxies.values():
        assert -1 <= stats["kendall"] <= 1 and len(stats["kendall_ci"]) == 2
        for key in ("spearman", "kendall_within_latency_bins", "partial_kendall_given_flops", "precision_at_top10"):
            assert key in stats
    reliability = result.truth_reliability
    assert reliability["n"] == 4 and -1 <= reliability["kendall_between_seeds"] <= 1
    assert reliability["architectures"] == [r["arch_id"] for r in result.rows[:4]]
    assert result.config["second_seed_n"] == 4 and result.config["protocol_id"]
    assert len(list((tmp_path / "store" / result.config["protocol_id"]).glob("*-s*.json"))) == 10
    assert len(reliability["kendall_between_seeds_ci"]) == 2 and "spearman_brown_mean_of_two" in reliability
    assert result.ensemble["members_all_data"]
    assert result.config["backbone_id"] and result.config["supernet"]["step"] == 2
    # Stopped part way (a run missing from the store): reported for what is recorded, nothing trained.
    store_folder = tmp_path / "store" / result.config["protocol_id"]
    (store_folder / f"{result.rows[5]['arch_id']}-s0.json").unlink()
    partial = calibrate(space, n=6, steps=2, seed=0, proxies=("flops",), fit=False,
                        train=TrainConfig(batch_size=2, train_clips=4, heldout_clips=2), pretrain=FAST_PRETRAIN,
                        second_seed_n=4, store=tmp_path / "store", recorded_only=True)
    assert partial.config["n"] == 5 and partial.config["n_sample"] == 6 and partial.truth_reliability["n"] == 4
    assert len(list(store_folder.glob("*-s*.json"))) == 9
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
        calibrate(get_space("tiny"), n=4, steps=2, second_seed_n=1)
    assert info.value.field == "second_seed_n" and info.value.value == 1
    with pytest.raises(SpecError) as info:
        calibrate(get_space("tiny"), n=4, steps=2, second_seed_n=5)
    assert info.value.field == "second_seed_n"


def test_ground_truth_trainings_are_cached_so_a_calibration_resumes(tmp_path):
    from vidnas.proxies import PretrainConfig, TrainConfig, pretrain_backbone, train_truths

    space = get_space("tiny", frames=4, height=64, width=64)
    specs = space.random_specs(2, seed=9)
    pretrain = PretrainConfig(steps=2, batch_size=2, train_clips=4)
    backbone = pretrain_backbone(space.base, pretrain)
    config = TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2)
    first = train_truths(specs, config, [0, 1], backbone, pretrain, store=tmp_path / "store")
    calls = []
    again = train_truths(specs, config, [0, 1], backbone, pretrain, store=tmp_path / "store",
                         progress=lambda i, n: calls.append(i))
    assert calls == [4]  # all four found in the cache, nothing trained
    assert {k: v.heldout_loss for k, v in first.items()} == {k: v.heldout_loss for k, v in again.items()}


def _truth_setting(tmp_path):
    from vidnas.proxies import pretrain_backbone

    space = get_space("tiny", frames=4, height=32, width=32)
    pretrain = PretrainConfig(steps=2, batch_size=2, train_clips=4)
    backbone = pretrain_backbone(space.base, pretrain)
    return space, pretrain, backbone, TrainConfig(steps=3, batch_size=2, train_clips=4, heldout_clips=2)


def test_truth_store_keeps_one_record_per_architecture_protocol_and_seed(tmp_path):
    from vidnas.proxies._truth import TruthStore, train_truth_runs

    space, pretrain, backbone, config = _truth_setting(tmp_path)
    specs = space.random_specs(2, seed=3)
    out = train_truth_runs([(specs[0], 0), (specs[1], 0), (specs[0], 1)], config, backbone, pretrain,
                           store=tmp_path / "store")
    store = TruthStore(tmp_path / "store", config, backbone.backbone_id)
    records = store.records()
    assert sorted((r["arch_id"], r["seed"]) for r in records) == sorted(out)
    assert all(r["protocol_id"] == store.protocol_id and r["spec"]["temporal"] for r in records)
    protocol = json.loads((store.folder / "protocol.json").read_text())
    assert protocol["train"]["steps"] == 3 and protocol["backbone_id"] == backbone.backbone_id
    # Another protocol (more steps) is another folder: nothing of the first is reused for it.
    longer = TrainConfig(steps=4, batch_size=2, train_clips=4, heldout_clips=2)
    assert TruthStore(tmp_path / "store", longer, backbone.backbone_id).protocol_id != store.protocol_id
    # Threads do not change the protocol.
    threaded = TrainConfig(steps=3, batch_size=2, train_clips=4, heldout_clips=2, threads=2)
    assert TruthStore(tmp_path / "store", threaded, backbone.backbone_id).protocol_id == store.protocol_id
    # A damaged record counts as missing and is trained again; the others are reused.
    store.path(specs[1].arch_id, 0).write_text("{trunc")
    calls = []
    again = train_truth_runs([(specs[0], 0), (specs[1], 0), (specs[0], 1)], config, backbone, pretrain,
                             store=tmp_path / "store", progress=lambda i, n: calls.append((i, n)))
    assert calls == [(2, 3), (3, 3)]
    assert again[(specs[1].arch_id, 0)].heldout_loss == pytest.approx(out[(specs[1].arch_id, 0)].heldout_loss)


def test_truth_store_resumes_after_a_kill(tmp_path):
    """A calibration killed with SIGKILL keeps every run it finished; the next call trains only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    from vidnas.proxies._truth import TruthStore

    script = textwrap.dedent(f"""
        import sys, time
        from vidnas.proxies import PretrainConfig, TrainConfig, pretrain_backbone
        from vidnas.proxies._truth import train_truth_runs
        from vidnas.search_space import get_space
        space = get_space("tiny", frames=4, height=32, width=32)
        pretrain = PretrainConfig(steps=2, batch_size=2, train_clips=4)
        backbone = pretrain_backbone(space.base, pretrain)
        config = TrainConfig(steps=int(sys.argv[1]), batch_size=2, train_clips=4, heldout_clips=2)
        specs = space.random_specs(6, seed=5)
        train_truth_runs([(s, 0) for s in specs], config, backbone, pretrain, store={str(tmp_path / "store")!r},
                         progress=lambda i, n: print(i, n, flush=True))
    """)
    path = tmp_path / "job.py"
    path.write_text(script)
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, str(path), "60"], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    seen = 0
    while time.time() < deadline and seen < 2:  # two runs recorded, then kill mid-way through the third
        line = proc.stdout.readline()
        if line:
            seen = int(line.split()[0])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen >= 2
    _, _, backbone, _ = _truth_setting(tmp_path)
    config = TrainConfig(steps=60, batch_size=2, train_clips=4, heldout_clips=2)
    store = TruthStore(tmp_path / "store", config, backbone.backbone_id)
    kept = {(r["arch_id"], r["seed"]) for r in store.records()}
    assert 2 <= len(kept) < 6 and not list(store.folder.glob("*.tmp*"))
    done = subprocess.run([sys.executable, str(path), "60"], capture_output=True, text=True, env=env, timeout=600)
    first = done.stdout.split("\n")[0].split()
    assert int(first[0]) == len(kept) and int(first[1]) == 6  # the recorded runs were reused
    assert len(store.records()) == 6
