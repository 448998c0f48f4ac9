"""Search campaigns: config errors, FAIL trials, exhaustive search, resume after a kill, Ray shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidnas._errors import SpecError
from vidnas.runners import load_config, parse_config, run_campaign

# A fast campaign: the debug backend's synthetic table, FLOP and parameter objectives.
FAST = {
    "name": "fast",
    "space": {"name": "tiny-enum"},
    "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
    "objectives": [{"metric": "latency_ms", "direction": "minimize"}, {"metric": "params", "direction": "maximize"}],
    "sampler": {"name": "random", "seed": 0},
    "trials": 6,
    "workers": 2,
}


def config_with(**overrides):
    data = json.loads(json.dumps(FAST))
    data.update(overrides)
    return parse_config(data)


# Config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data, field", [
    ({"space": {"name": "huge"}}, "config.space.name"),
    ({"space": {"nmae": "tiny"}}, "config.space.nmae"),
    ({"trials": 0}, "config.trials"),
    ({"trials": "many"}, "config.trials"),
    ({"workers": 0}, "config.workers"),
    ({"target": {"backend": "tensorrt"}}, "config.target.backend"),
    ({"target": {"lut": "/nowhere.parquet"}}, "config.target.lut"),
    ({"target": {"build": {"quick": "yes"}}}, "config.target.build.quick"),
    ({"objectives": [{"metric": "accuracy", "direction": "maximize"}]}, "config.objectives[0].metric"),
    ({"objectives": [{"metric": "latency_ms", "direction": "down"}]}, "config.objectives[0].direction"),
    ({"objectives": [{"metric": "proxy:magic", "direction": "maximize"}]}, "config.objectives[0].metric"),
    ({"objectives": []}, "config.objectives"),
    ({"constraints": {"latency_ms": -1}}, "config.constraints.latency_ms"),
    ({"constraints": {"accuracy": 1}}, "config.constraints.accuracy"),
    ({"sampler": {"name": "cma"}}, "config.sampler.name"),
    ({"video": {"cfg": "twice"}}, "config.video.cfg"),
])
def test_config_errors_name_the_field_path_and_value(data, field):
    with pytest.raises(SpecError) as info:
        parse_config(data)
    assert info.value.field == field


def test_default_config_and_yaml_round_trip(tmp_path):
    default = load_config(None)
    assert default.space.name == "tiny" and default.target.backend == "onnxruntime"
    assert [o.metric for o in default.objectives] == ["latency_ms", "proxy:synflow"]
    path = tmp_path / "c.yaml"
    path.write_text(default.to_yaml())
    assert load_config(path) == default
    path.write_text("trials: [unclosed")
    with pytest.raises(SpecError, match="YAML"):
        load_config(path)


# Campaigns ---------------------------------------------------------------------------------------


def test_exhaustive_search_finds_the_exact_front(tmp_path):
    config = config_with(sampler={"name": "exhaustive"}, space={"name": "tiny-enum"})
    result = run_campaign(config, tmp_path / "run", local=True)
    assert result.trials == 125 and result.failed == 0
    # The true front, computed directly from every architecture.
    from vidnas.latency_models import LatencyPredictor, LatencyTable
    from vidnas.search_space import count_spec, get_space

    table = LatencyTable.load(tmp_path / "run" / "table.parquet")
    predictor = LatencyPredictor(table)
    points = {s.arch_id: (predictor.predict(s).ms, -count_spec(s).params) for s in get_space("tiny-enum").enumerate()}
    front = {a for a, p in points.items()
             if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values())}
    assert {e["arch_id"] for e in result.pareto} == front
    assert (tmp_path / "run" / "pareto" / "pareto.json").exists()
    assert len(list((tmp_path / "run" / "pareto").glob("*.json"))) == len(front) + 1


def test_constraints_and_failures_are_recorded(tmp_path):
    # batched CFG needs batch-2 table entries that the batch-1 table lacks: every trial FAILs with the reason.
    config = config_with(video={"steps": 4, "cfg": "batched"},
                         objectives=[{"metric": "video_ms", "direction": "minimize"},
                                     {"metric": "params", "direction": "maximize"}], trials=3)
    result = run_campaign(config, tmp_path / "fail", local=True)
    assert result.failed == 3 and result.pareto == []
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "fail" / "trials.parquet")
    assert trials["attr.fail_reason"].str.contains("no entry at batch 2").all()
    # a budget rules some architectures out before evaluation: screened, recorded, not counted, never Pareto
    config = config_with(constraints={"params": 1_450_000}, trials=12)
    result = run_campaign(config, tmp_path / "budget", local=True)
    assert all(e["metrics"]["params"] <= 1_450_000 for e in result.pareto)
    assert result.feasible == result.trials == 12 and result.screened > 0


def test_ray_campaign_runs_and_leaves_no_processes(tmp_path):
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_campaign(config_with(trials=4), tmp_path / "ray", local=False)
    assert result.trials == 4 and result.failed == 0
    from procs import alive

    deadline = time.time() + 5
    leftover = ["?"]
    while leftover and time.time() < deadline:
        leftover = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and alive(p)]
        time.sleep(0.2)
    assert leftover == []
    assert not (tmp_path / "ray" / "ray.pids").exists()


def test_a_slow_trial_times_out_and_the_campaign_goes_on(tmp_path):
    config = config_with(trials=3, workers=1, trial_timeout_s=0.5,
                         objectives=[{"metric": "latency_ms", "direction": "minimize"},
                                     {"metric": "proxy:heldout_loss_short", "direction": "minimize"}],
                         proxy={"clips": 2, "seed": 0, "train_steps": 200, "pretrain_steps": 2})
    result = run_campaign(config, tmp_path / "slow", local=False)
    assert result.failed == 3
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "slow" / "trials.parquet")
    assert trials["attr.fail_reason"].str.contains("timed out").all()


KILL = """
import sys, time
from vidnas.runners import parse_config, run_campaign
import vidnas.runners._executors as ex
original = ex.evaluate
def slow(spec_json, settings):
    time.sleep(0.4)
    return original(spec_json, settings)
ex.evaluate = slow
config = parse_config({cfg!r})
run_campaign(config, sys.argv[1], local=True)
"""


def test_resume_after_sigkill_loses_no_finished_trial(tmp_path):
    run = tmp_path / "run"
    cfg = {**FAST, "trials": 12}
    proc = subprocess.Popen([sys.executable, "-c", KILL.format(cfg=cfg), str(run)])
    import optuna

    deadline = time.time() + 300
    done = []
    while time.time() < deadline:
        if (run / "journal.log").exists():
            try:
                study = optuna.load_study(study_name="fast", storage=_journal(run))
            except KeyError:  # the journal file exists before the study is written into it
                time.sleep(0.1)
                continue
            done = [t for t in study.trials if t.state.name == "COMPLETE"]
            if len(done) >= 4:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="fast", storage=_journal(run))
    before = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert len(before) >= 4
    result = run_campaign(None, run, resume=True, local=True)
    study = optuna.load_study(study_name="fast", storage=_journal(run))
    after = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())  # nothing finished was lost or changed
    assert result.trials == 12
    stale = [t for t in study.trials if t.user_attrs.get("stale")]
    requeued = [t for t in study.trials if "requeued_from" in t.user_attrs]
    assert len(stale) <= 1  # at most the trial running at the kill
    # a stale trial is re-queued with its parameters if its whole architecture had been sampled before the
    # kill; one killed part way through sampling is replaced by a fresh trial
    assert len(requeued) == sum(1 for t in stale if t.user_attrs.get("sampled"))
    for t in requeued:
        original = next(s for s in study.trials if s.number == t.user_attrs["requeued_from"])
        assert t.params == original.params


def _journal(run: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(run / "journal.log")))


def test_existing_run_is_not_overwritten(tmp_path):
    run_campaign(config_with(trials=1), tmp_path / "r", local=True)
    with pytest.raises(SpecError, match="--resume"):
        run_campaign(config_with(trials=1), tmp_path / "r", local=True)
    with pytest.raises(SpecError, match="no campaign"):
        run_campaign(None, tmp_path / "nothing", resume=True, local=True)


def test_sqlite_storage_by_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_campaign(config_with(trials=3, storage=url), tmp_path / "sq", local=True)
    assert result.trials == 3 and (tmp_path / "study.db").exists()


@pytest.mark.slow
def test_export_writes_models_for_the_pareto_set(tmp_path):
    from vidnas.runners import export_run

    result = run_campaign(config_with(trials=2), tmp_path / "run", local=True)
    written = export_run(tmp_path / "run", ("onnx", "coreml"))
    assert len(written) == len(result.pareto) >= 1
    for record in written:
        assert Path(record["onnx"]).exists() and Path(record["coreml"]).exists()
    with pytest.raises(SpecError) as info:
        export_run(tmp_path / "run", ("tflite",))
    assert info.value.field == "--format"


def test_run_directory_opens_in_optuna_dashboard(tmp_path):
    """optuna-dashboard's own server (as a WSGI app) lists the campaign and its trials."""
    dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is in the test extras")
    from wsgiref.util import setup_testing_defaults

    run_campaign(config_with(trials=3), tmp_path / "run", local=True)
    app = dashboard.wsgi(_journal(tmp_path / "run"))

    def get(path):
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "fast" and summary["directions"] == ["minimize", "maximize"]
    study = get(f"/api/studies/{summary['study_id']}")
    assert len(study["trials"]) == 3
    assert study["objective_names"] == ["latency_ms", "params"]
    assert all(t["state"] == "Complete" for t in study["trials"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_campaign_on_an_existing_ray_cluster_leaves_it_running(tmp_path):
    """`--ray-address`: trials run on a cluster started by `ray start`; the campaign does not stop it."""
    import contextlib
    import os
    import shutil
    import socket

    import psutil

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        ray_bin = Path(shutil.which("ray") or "ray")
    port = _free_port()
    temp = Path(f"/tmp/vidnas-test-ray-{os.getpid()}")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                             f"--temp-dir={temp}", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:  # wait for the head's GCS port
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert head.poll() is None, "ray start exited"
            assert time.time() < deadline, "the Ray head did not come up"
            time.sleep(0.5)
        result = run_campaign(config_with(trials=4, ray={"address": f"127.0.0.1:{port}"}), tmp_path / "run",
                              local=False)
        assert result.trials == 4 and result.failed == 0
        assert head.poll() is None  # the cluster is left running
        assert not (tmp_path / "run" / "ray.pids").exists()
    finally:  # stop only what this test started: the head and its children, by PID
        procs = []
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(head.pid)
            procs = [parent, *parent.children(recursive=True)]
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_trial_stopped_part_way_through_sampling_is_replaced_not_requeued():
    import optuna

    from vidnas.runners._trials import mark_sampled, requeue_stale

    study = optuna.create_study(directions=["minimize"])
    partial = study.ask()
    partial.suggest_categorical("L0.res:op", ["none", "conv1d"])  # killed before the other choices
    whole = study.ask()
    whole.suggest_categorical("L0.res:op", ["none", "conv1d"])
    whole.suggest_int("L0.res:conv1d.kernel", 3, 5)
    mark_sampled(whole)
    assert sorted(requeue_stale(study)) == [partial.number, whole.number]
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert [t.user_attrs["requeued_from"] for t in waiting] == [whole.number]
    assert waiting[0].system_attrs["fixed_params"] == whole.params
    stale = {t.number: t.user_attrs["fail_reason"] for t in study.trials if t.user_attrs.get("stale")}
    assert "before the trial's whole architecture was sampled" in stale[partial.number]
    assert "re-queued" in stale[whole.number]


def test_opening_a_database_whose_schema_another_driver_is_creating_retries(tmp_path, monkeypatch):
    """Two drivers started at once on an empty database: the slower one's table creation fails on a
    duplicate (IntegrityError) and it opens the storage once the other has created it; other errors are
    not retried."""
    import optuna

    from vidnas.runners._driver import open_storage

    class IntegrityError(Exception):
        pass

    calls = []
    real = optuna.storages.RDBStorage

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise IntegrityError("duplicate key value violates unique constraint")
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = config_with(storage=url)
    assert open_storage(config, tmp_path) is not None and len(calls) == 2

    def broken(url, **kwargs):
        calls.append(url)
        raise ValueError("no such driver")

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    calls.clear()
    with pytest.raises(SpecError) as info:
        open_storage(config, tmp_path)
    assert len(calls) == 1 and info.value.field == "config.storage"


# Structure ---------------------------------------------------------------------------------------

RUNNERS = Path(__file__).resolve().parent.parent / "vidnas" / "runners"


def _parameters(node) -> list[str]:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_runner_function_takes_more_than_six_parameters():
    """What a campaign is made of travels as one object (runners._campaign.Campaign), options as dataclasses."""
    import ast

    long = []
    for path in sorted(RUNNERS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and len(_parameters(node)) > 6:
                long.append(f"{path.name}:{node.lineno} {getattr(node, 'name', 'lambda')}{_parameters(node)}")
    assert not long, long


@pytest.mark.parametrize("module", ["_evaluate", "_quality"])
def test_evaluation_modules_hold_no_module_level_caches(module):
    """Per-process state (predictor, quality context, models) lives on an EvalCache passed in, not in globals."""
    import ast
    import importlib

    tree = ast.parse((RUNNERS / f"{module}.py").read_text(encoding="utf-8"))
    containers = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp, ast.Call)
    found = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        value = getattr(node, "value", None)
        for target in targets:
            name = getattr(target, "id", None)
            if name != "__all__" and isinstance(value, containers):
                found.append(name)
    assert not found, found
    loaded = importlib.import_module(f"vidnas.runners.{module}")
    mutable = [k for k, v in vars(loaded).items() if not k.startswith("__") and isinstance(v, (dict, list, set))]
    assert not mutable, mutable


def test_an_eval_cache_builds_once_per_settings_and_pickles_empty(tmp_path):
    import dataclasses
    import pickle

    from vidnas.latency_models import DebugBackend, HarnessConfig, build_table
    from vidnas.runners import EvalCache, EvalSettings, evaluate
    from vidnas.runners._evaluate import cheap_metrics
    from vidnas.search_space import get_space

    harness = dataclasses.replace(HarnessConfig.quick(), max_seconds=0.05)
    debug_table = build_table(get_space("tiny-enum"), DebugBackend(), tmp_path / "t.parquet", config=harness)
    settings = EvalSettings(metrics=("latency_ms",), table=(debug_table.meta.to_dict(), debug_table.rows()),
                            roofline=None, roofline_dtype="float32", batch=1, steps=5, cfg="none", proxy_clips=1,
                            proxy_seed=0, proxy_train_steps=1, threads=1)
    cache = EvalCache()  # a worker process's
    predictor = cache.predictor(settings)
    assert cache.predictor(pickle.loads(pickle.dumps(settings))) is predictor  # same content: a Ray task's copy
    spec = get_space("tiny-enum").base
    assert evaluate(spec.to_json(), settings, cache)["latency_ms"] == cheap_metrics(spec, settings)["latency_ms"]
    assert cache.predictor(settings) is predictor
    own = settings.cache.predictor(settings)  # the settings' own cache (the driver's) kept what cheap_metrics built
    assert own is not predictor and cheap_metrics(spec, settings) and settings.cache.predictor(settings) is own
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and copy.cache.predictor(copy) is not own  # settings cross processes with an empty cache
    assert len(pickle.dumps(EvalCache())) < 200
