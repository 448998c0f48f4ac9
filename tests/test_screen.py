"""Cheap metrics first: architectures that break a cheap constraint are never evaluated, never counted."""

from __future__ import annotations

import pytest

from vidnas.runners import parse_config, run_campaign

BOUND = 1_450_000


def config(**overrides):
    data = {"name": "screen", "space": {"name": "tiny-enum"},
            "target": {"roofline": "laptop-cpu", "roofline_dtype": "float32"},
            "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                           {"metric": "params", "direction": "maximize"}],
            "constraints": {"params": BOUND}, "sampler": {"name": "random", "seed": 5}, "trials": 10}
    data.update(overrides)
    return parse_config(data)


def test_screened_architectures_never_reach_an_evaluation(tmp_path, monkeypatch):
    from vidnas.runners import _executors
    from vidnas.search_space import ArchSpec, count_spec

    evaluated = []
    real = _executors.evaluate

    def spy(spec_json, settings):
        evaluated.append(ArchSpec.from_json(spec_json))
        return real(spec_json, settings)

    monkeypatch.setattr(_executors, "evaluate", spy)
    result = run_campaign(config(), tmp_path / "run", local=True)
    assert len(evaluated) == result.trials == 10 and result.screened > 0
    assert all(count_spec(s).params <= BOUND for s in evaluated)


def test_the_report_counts_screened_trials_apart(tmp_path):
    import pandas as pd

    from vidnas.reports._report import trial_counts

    result = run_campaign(config(), tmp_path / "run", local=True)
    counts = trial_counts(pd.read_parquet(tmp_path / "run" / "trials.parquet"))
    assert counts["trials"] == 10 and counts["screened"] == result.screened > 0 and counts["failed"] == 0


def test_a_sampler_proposing_only_ruled_out_architectures_stops_the_campaign(tmp_path, monkeypatch):
    from vidnas.runners import _screen

    monkeypatch.setattr(_screen, "SCREEN_LIMIT", 6)
    result = run_campaign(config(constraints={"params": 1.0}), tmp_path / "run", local=True)
    assert result.trials == 0 and result.screened == 6
    assert result.stopped is not None and "6 architectures in a row" in result.stopped


def test_a_cheap_metric_that_cannot_be_computed_fails_the_trial_instead(tmp_path):
    """Batched guidance needs batch-2 entries a batch-1 table lacks: the evaluation fails with the reason."""
    import pandas as pd

    data = {"target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
            "video": {"steps": 2, "cfg": "batched"}, "constraints": {"video_ms": 1e9}, "trials": 2}
    result = run_campaign(config(**data), tmp_path / "run", local=True)
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    assert result.failed == 2 and result.screened == 0
    assert trials["attr.fail_reason"].str.contains("no entry at batch 2").all()


@pytest.mark.parametrize("metric", ["memory_bytes", "flops", "latency_ms"])
def test_every_cheap_metric_screens(metric, tmp_path):
    import pandas as pd

    from vidnas.runners import EvalSettings
    from vidnas.runners._cheap import CheapModel
    from vidnas.runners._driver import campaign_space

    space = campaign_space(config())
    settings = EvalSettings(metrics=(), table=None, roofline="laptop-cpu", roofline_dtype="float32", batch=1, steps=25,
                            cfg="none", proxy_clips=1, proxy_seed=0, proxy_train_steps=1, threads=1)
    values = CheapModel.for_settings(space, settings).metric(metric, CheapModel(space).enumerate_indices())
    bound = float(sorted(values)[len(values) // 2])  # the median: half the space is ruled out
    result = run_campaign(config(constraints={metric: bound}), tmp_path / "run", local=True)
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert result.trials == 10 and (done[f"attr.{metric}"] <= bound).all()
    assert (trials[trials["screened"]][f"attr.{metric}"] > bound).all()
