"""screened-ehvi: never a cheap-infeasible or repeated architecture, and better than random where quality is known.

The shared sampler suite (test_sampler_suite.py) runs it too; these tests are its own."""

from __future__ import annotations

import statistics

import numpy as np
import optuna
import pytest

from vidnas._errors import SpecError
from vidnas._pareto import hypervolume, non_dominated
from vidnas.runners import parse_config, run_campaign
from vidnas.runners._cheap import CheapModel
from vidnas.runners._driver import make_sampler
from vidnas.search_space import get_space

ROOFLINE = {"roofline": "laptop-cpu", "roofline_dtype": "float32"}
BOUND = 1_450_000  # a params bound that splits tiny-enum


def campaign(**overrides):
    data = {"name": "sehvi", "space": {"name": "tiny-enum"}, "target": ROOFLINE,
            "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                           {"metric": "params", "direction": "maximize"}],
            "sampler": {"name": "screened-ehvi", "seed": 1}, "trials": 12}
    data.update(overrides)
    return parse_config(data)


def test_a_campaign_selects_it_and_it_never_proposes_a_cheap_infeasible_architecture(tmp_path):
    import pandas as pd

    result = run_campaign(campaign(constraints={"params": BOUND}), tmp_path / "run", local=True)
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    assert result.trials == 12 and result.screened == 0 and result.feasible == 12
    assert (trials["attr.params"] <= BOUND).all() and not trials["screened"].any()


def test_it_never_repeats_an_architecture_even_with_trials_in_flight():
    space = get_space("tiny-enum")
    config = campaign(trials=60)
    cheap = CheapModel.for_settings(space, _settings())
    study = optuna.create_study(directions=config.directions(), sampler=make_sampler(config, space, cheap))
    seen = []
    for _ in range(20):  # three asked before any is told: the running ones must not be proposed again
        batch = [study.ask() for _ in range(3)]
        specs = [space.sample(t) for t in batch]
        seen += [s.arch_id for s in specs]
        for t, s in zip(batch, specs):
            values = cheap.metrics(["latency_ms", "params"], cheap.encode(s)[None])
            study.tell(t, [float(values["latency_ms"][0]), float(values["params"][0])])
    assert len(seen) == len(set(seen)) == 60


def test_a_pool_smaller_than_the_space_grows_by_neighbours_and_still_never_repeats():
    space = get_space("tiny-enum-3k")
    config = campaign(space={"name": "tiny-enum-3k"}, sampler={"name": "screened-ehvi", "seed": 0, "pool_size": 40},
                      trials=50, objectives=[{"metric": "params", "direction": "minimize"},
                                             {"metric": "proxy:synflow", "direction": "maximize"}])
    cheap = CheapModel(space)
    quality = _quality(cheap)
    study = optuna.create_study(directions=config.directions(), sampler=make_sampler(config, space, cheap))
    seen = []
    for _ in range(50):
        trial = study.ask()
        indices = cheap.encode(space.sample(trial))
        seen.append(int(cheap.codes(indices[None])[0]))
        study.tell(trial, [float(cheap.metric("params", indices[None])[0]), float(quality(indices[None])[0])])
    assert len(set(seen)) == 50
    records = [t.system_attrs["screened_ehvi"] for t in study.trials]
    assert max(r["candidates"] for r in records) > 40  # neighbours of the front joined the pool
    assert {r["mode"] for r in records} == {"startup", "ehvi"}


def _settings():
    from vidnas.runners import EvalSettings

    return EvalSettings(metrics=(), table=None, roofline="laptop-cpu", roofline_dtype="float32", batch=1, steps=5,
                        cfg="none", proxy_clips=1, proxy_seed=0, proxy_train_steps=1, threads=1)


def _quality(cheap: CheapModel):
    """A known expensive objective (to maximise): seeded per-option effects plus a reward for size."""
    weights = np.random.default_rng(0).normal(size=int(cheap.sizes.sum()))
    smallest = cheap.metric("params", cheap.enumerate_indices()).min()

    def quality(indices: np.ndarray) -> np.ndarray:
        return weights[indices + cheap.offsets].sum(axis=-1) + 3.0 * np.log(cheap.metric("params", indices) / smallest)

    return quality


def _hypervolume_shares(sampler: str, seeds: range, budget: int) -> list[float]:
    """Hypervolume share of the exhaustive front reached in ``budget`` trials (params down, quality up)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space("tiny-enum-3k")
    cheap = CheapModel(space)
    quality = _quality(cheap)
    everything = cheap.enumerate_indices()
    points = np.stack([cheap.metric("params", everything), -quality(everything)], axis=1)
    lo, hi = points.min(axis=0), points.max(axis=0)
    front = np.flatnonzero(non_dominated(points.tolist()))
    best = hypervolume(((points[front] - lo) / (hi - lo)).tolist(), [1.1, 1.1])
    shares = []
    for seed in seeds:
        config = parse_config({"space": {"name": "tiny-enum-3k"}, "sampler": {"name": sampler, "seed": seed},
                               "objectives": [{"metric": "params", "direction": "minimize"},
                                              {"metric": "proxy:synflow", "direction": "maximize"}],
                               "target": ROOFLINE, "trials": budget})
        study = optuna.create_study(directions=config.directions(), sampler=make_sampler(config, space, cheap))
        evaluated = set()
        for _ in range(budget):
            trial = study.ask()
            indices = cheap.encode(space.sample(trial))
            code = int(cheap.codes(indices[None])[0])
            evaluated.add(code)
            study.tell(trial, [float(points[code, 0]), float(-points[code, 1])])
        rows = sorted(evaluated)
        shares.append(hypervolume(((points[rows] - lo) / (hi - lo)).tolist(), [1.1, 1.1]) / best)
    return shares


def test_its_surrogate_and_ehvi_beat_random_where_the_expensive_objective_is_known():
    """3,072 architectures, 30 evaluations (1 %), five seeds each: screened-ehvi beats random at every seed (paired),
    and the medians differ by more than 0.1 of the exhaustive front's hypervolume."""
    ours = _hypervolume_shares("screened-ehvi", range(5), 30)
    random = _hypervolume_shares("random", range(5), 30)
    assert all(a > b for a, b in zip(ours, random))
    assert statistics.median(ours) >= statistics.median(random) + 0.1
    assert statistics.median(ours) >= 0.9


def test_two_expensive_objectives_are_refused_with_the_reason():
    config = campaign(objectives=[{"metric": "proxy:synflow", "direction": "maximize"},
                                  {"metric": "proxy:snip", "direction": "maximize"}])
    with pytest.raises(SpecError) as info:
        make_sampler(config, get_space("tiny-enum"), CheapModel(get_space("tiny-enum")))
    assert info.value.field == "config.objectives" and "nsga2 or tpe" in info.value.hint


def test_constraints_that_leave_nothing_are_an_error_naming_them():
    config = campaign(constraints={"params": 1.0})
    space = get_space("tiny-enum")
    study = optuna.create_study(directions=config.directions(),
                                sampler=make_sampler(config, space, CheapModel.for_settings(space, _settings())))
    with pytest.raises(SpecError) as info:
        space.sample(study.ask())
    assert info.value.field == "config.constraints" and "loosen" in info.value.hint


def test_the_cheap_front_is_walked_exactly_when_every_objective_is_cheap():
    """Latency and params are both known for every architecture: 12 trials find 12 points of the exact front."""
    space = get_space("tiny-enum")
    cheap = CheapModel.for_settings(space, _settings())
    everything = cheap.enumerate_indices()
    values = cheap.metrics(["latency_ms", "params"], everything)
    points = np.stack([values["latency_ms"], -values["params"]], axis=1)
    front = set(np.flatnonzero(non_dominated(points.tolist())).tolist())
    config = campaign(trials=min(12, len(front)))
    study = optuna.create_study(directions=config.directions(), sampler=make_sampler(config, space, cheap))
    found = []
    for _ in range(config.trials):
        trial = study.ask()
        code = int(cheap.codes(cheap.encode(space.sample(trial))[None])[0])
        found.append(code)
        study.tell(trial, [float(values["latency_ms"][code]), float(values["params"][code])])
    assert set(found) <= front
