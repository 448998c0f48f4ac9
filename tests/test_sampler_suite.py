"""One suite for every registered sampler (built-in and plugins): options through the config,
determinism under a seed, constraints respected (cheap-infeasible architectures screened, recorded
and not counted), resume mid-campaign, and (for exhaustive samplers) the exact front, with and
without constraints. Fast: the 125-architecture ``tiny-enum`` space with roofline latency."""

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
    assert {"nsga2", "tpe", "random", "exhaustive", "screened-ehvi"} <= set(SAMPLERS)
    assert EXHAUSTIVE and get_sampler("nsga2").option("population_size").default == 16


def test_samplers_are_a_generic_registry_filled_by_entry_points():
    """The registry module imports no implementation: vidnas's own samplers are declared as an entry point,
    exactly as a plugin's are, and their options use the common option schema."""
    import ast
    from pathlib import Path

    import vidnas.runners._samplers as registry
    from vidnas._plugins import builtin_entry_points
    from vidnas._registry import Option, Registry
    from vidnas.runners import SAMPLERS, SamplerOption

    assert isinstance(SAMPLERS, Registry) and SAMPLERS.group == "vidnas.samplers" and SamplerOption is Option
    imported = [n.module for n in ast.walk(ast.parse(Path(registry.__file__).read_text(encoding="utf-8")))
                if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m and m.startswith("vidnas.runners.")], imported
    declared = {ep.value for ep in builtin_entry_points("vidnas.samplers")}
    assert {SAMPLERS.get(name).factory.__module__ for name in ("nsga2", "screened-ehvi")} <= declared
    assert SAMPLERS.origin("nsga2") == "vidnas"
    assert all(isinstance(o, Option) for name in SAMPLERS for o in get_sampler(name).options)
    with pytest.raises(SpecError) as info:
        get_sampler("cma")
    assert info.value.field == "config.sampler.name" and info.value.value == "cma"


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
    """Architectures over the bound are screened before evaluation: recorded with the reason, never counted."""
    result = run_campaign(config(name, constraints={"params": BOUND}, trials=12), runs / "run", local=True)
    import pandas as pd

    from vidnas.reports._report import trial_counts

    trials = pd.read_parquet(runs / "run" / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert (done["attr.params"] <= BOUND).all() and done["feasible"].all()  # nothing infeasible was evaluated
    screened = trials[trials["screened"]]
    assert (screened["state"] == "PRUNED").all() and (screened["attr.params"] > BOUND).all()
    assert screened.empty or screened["attr.fail_reason"].str.contains("screened: params").all()
    assert not screened["counted"].any() and len(screened) == result.screened
    expected = feasible_count(BOUND) if name in EXHAUSTIVE else 12
    assert result.trials == len(done) == expected  # the budget counts evaluated trials only
    assert trial_counts(trials)["screened"] == result.screened and trial_counts(trials)["trials"] == expected
    assert all(e["metrics"]["params"] <= BOUND for e in result.pareto)


def feasible_count(bound: float) -> int:
    from vidnas.search_space import count_spec, get_space

    return sum(count_spec(s).params <= bound for s in get_space("tiny-enum").enumerate())


class _Stop(Exception):
    pass


@pytest.mark.parametrize("bounded", [False, True], ids=["free", "bounded"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_resume_mid_campaign(name, bounded, runs):
    """A driver dies after 4 trials with one in flight: --resume finishes the budget, re-running that one
    (with a bound, screened trials stay recorded and uncounted across the restart)."""
    import optuna

    run = runs / "run"
    cfg = config(name, **({"constraints": {"params": BOUND}} if bounded else {}))

    def stop_after_four(progress):
        if progress.done >= 4:
            raise _Stop

    with pytest.raises(_Stop):
        run_campaign(cfg, run, local=True, on_progress=stop_after_four)
    from vidnas.runners._driver import open_storage
    from vidnas.search_space import get_space

    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg, run))
    before = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    from vidnas.runners._trials import mark_sampled

    def sampled(trial):  # as the driver does: sample the whole architecture, then say so
        spec = get_space("tiny-enum").sample(trial)
        mark_sampled(trial)
        return spec

    in_flight, asked = study.ask(), 1  # the trial the dead driver was evaluating: one it would have evaluated
    while bounded and _params_of(sampled(in_flight)) > BOUND:  # (it screens the others)
        in_flight, asked = study.ask(), asked + 1  # the skipped ones were left running too: stale, re-queued
    sampled(in_flight)
    result = run_campaign(None, run, resume=True, local=True)
    size = feasible_count(BOUND) if bounded else get_space("tiny-enum").size
    expected = size if name in EXHAUSTIVE else cfg.trials
    assert result.trials == expected and result.stale == asked
    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg, run))
    after = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())
    (requeued,) = [t for t in study.trials if t.user_attrs.get("requeued_from") == in_flight.number]
    assert requeued.params == in_flight.params and requeued.state.name == "COMPLETE"


def _params_of(spec) -> int:
    from vidnas.search_space import count_spec

    return count_spec(spec).params


@pytest.mark.parametrize("bound", [None, BOUND], ids=["free", "bounded"])
@pytest.mark.parametrize("name", EXHAUSTIVE)
def test_exhaustive_finds_the_exact_front(name, bound, runs):
    from vidnas.latency_models import roofline_estimate
    from vidnas.search_space import count_spec, get_space

    result = run_campaign(config(name, **({"constraints": {"params": bound}} if bound else {})), runs / "run",
                          local=True)
    space = get_space("tiny-enum")
    feasible = [s for s in space.enumerate() if bound is None or count_spec(s).params <= bound]
    assert result.trials == len(feasible) and result.failed == 0 and result.screened == space.size - len(feasible)
    points = {s.arch_id: (roofline_estimate(s, "laptop-cpu", dtype="float32")["per_call_ms"], -count_spec(s).params)
              for s in feasible}
    front = {a for a, p in points.items()
             if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values())}
    assert {e["arch_id"] for e in result.pareto} == front
