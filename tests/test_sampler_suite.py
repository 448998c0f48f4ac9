"""One suite for every registered sampler (built-in and plugins): options through the config,
determinism under a seed, constraints respected, resume mid-campaign, and (for exhaustive
samplers) the exact front. Fast: the 125-architecture ``tiny-enum`` space with roofline latency."""

from __future__ import annotations

import pytest

from vidnas._errors import SpecError
from vidnas.runners import get_sampler, list_samplers, load_config, parse_config, run_campaign

SAMPLERS = list_samplers()
EXHAUSTIVE = [s for s in SAMPLERS if get_sampler(s).exhaustive]
BOUND = 1_450_000  # a params budget some tiny-enum architectures break


def config(name: str, **overrides):
    data = {
        "name": f"suite-{name}",
        "space": {"name": "tiny-enum"},
        "target": {"roofline": "laptop-cpu", "roofline_dtype": "float32"},
        "objectives": [{"metric": "latency_ms", "direction": "minimize"},
                       {"metric": "params", "direction": "maximize"}],
        "sampler": {"name": name, "seed": 3, **({"population_size": 4} if name == "nsga2" else {})},
        "trials": 10,  # NSGA-II: two generations and a half
    }
    data.update(overrides)
    return parse_config(data)


@pytest.fixture
def runs(tmp_path):
    """Run directories in memory where the machine has /dev/shm: the journal's fsync per write dominates."""
    import shutil
    import tempfile
    from pathlib import Path

    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="vidnas-suite-", dir=shm))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sequence(run_dir) -> list[tuple[int, str]]:
    import optuna

    from vidnas.runners._driver import open_storage

    cfg = load_config(run_dir / "config.yaml")
    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg, run_dir))
    return [(t.number, t.user_attrs.get("arch_id")) for t in study.trials]


def test_the_built_in_samplers_are_registered():
    assert {"nsga2", "tpe", "random", "exhaustive"} <= set(SAMPLERS)
    assert EXHAUSTIVE and get_sampler("nsga2").option("population_size").default == 16


@pytest.mark.parametrize("name", SAMPLERS)
def test_options_round_trip_and_unknown_ones_are_refused(name, tmp_path):
    cfg = config(name)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg
    with pytest.raises(SpecError) as info:
        config(name, sampler={"name": name, "no_such_option": 1})
    assert info.value.field == "config.sampler.no_such_option" and info.value.value == 1
    for option in get_sampler(name).options:  # a value of the wrong type names the option
        wrong = "many" if option.kind is not str else 7
        with pytest.raises(SpecError) as info:
            config(name, sampler={"name": name, option.name: wrong})
        assert info.value.field == f"config.sampler.{option.name}"


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_trials(name, runs):
    a = run_campaign(config(name), runs / "a", local=True)
    b = run_campaign(config(name), runs / "b", local=True)
    assert a.trials == b.trials and a.failed == 0
    assert sequence(runs / "a") == sequence(runs / "b")


@pytest.mark.parametrize("name", SAMPLERS)
def test_constraints_are_respected(name, runs):
    result = run_campaign(config(name, constraints={"params": BOUND}, trials=12), runs / "run", local=True)
    import pandas as pd

    trials = pd.read_parquet(runs / "run" / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert (done["feasible"] == (done["attr.params"] <= BOUND)).all()
    assert all(e["metrics"]["params"] <= BOUND for e in result.pareto)
    assert not trials[trials["pareto"]]["feasible"].eq(False).any()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name", SAMPLERS)
def test_resume_mid_campaign(name, runs):
    """A driver dies after 4 trials with one in flight: --resume finishes the budget, re-running that one."""
    import optuna

    run = runs / "run"
    cfg = config(name)

    def stop_after_four(progress):
        if progress.done >= 4:
            raise _Stop

    with pytest.raises(_Stop):
        run_campaign(cfg, run, local=True, on_progress=stop_after_four)
    from vidnas.runners._driver import open_storage
    from vidnas.search_space import get_space

    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg, run))
    before = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    in_flight = study.ask()  # the trial the dead driver was evaluating
    get_space("tiny-enum").sample(in_flight)
    result = run_campaign(None, run, resume=True, local=True)
    expected = get_space("tiny-enum").size if name in EXHAUSTIVE else cfg.trials
    assert result.trials == expected and result.stale == 1
    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg, run))
    after = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())
    (requeued,) = [t for t in study.trials if t.user_attrs.get("requeued_from") == in_flight.number]
    assert requeued.params == in_flight.params and requeued.state.name == "COMPLETE"


@pytest.mark.parametrize("name", EXHAUSTIVE)
def test_exhaustive_finds_the_exact_front(name, runs):
    from vidnas.latency_models import roofline_estimate
    from vidnas.search_space import count_spec, get_space

    result = run_campaign(config(name), runs / "run", local=True)
    space = get_space("tiny-enum")
    assert result.trials == space.size and result.failed == 0
    points = {s.arch_id: (roofline_estimate(s, "laptop-cpu", dtype="float32")["per_call_ms"], -count_spec(s).params)
              for s in space.enumerate()}
    front = {a for a, p in points.items()
             if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values())}
    assert {e["arch_id"] for e in result.pareto} == front
