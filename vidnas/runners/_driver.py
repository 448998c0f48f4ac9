"""The campaign driver: Optuna ask/tell in the driver, trial evaluations as Ray tasks.

As many evaluations are in flight as there are workers. Each finished evaluation is
told to Optuna with its metrics as user attributes and its constraints through
``trial.set_constraint``; a failing or timed-out evaluation becomes a FAIL trial with its
reason, and the campaign goes on. Optuna's storage is the source of truth: a journal
file in the run directory by default, so a killed campaign resumes where it stopped
(trials the dead driver left RUNNING are marked FAIL and, when they had been sampled,
re-queued with the same parameters) and ``optuna-dashboard RUN_DIR/journal.log`` opens it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._cache import cache_dir
from vidnas._errors import SpecError, VidnasError
from vidnas._pareto import non_dominated
from vidnas.runners._config import CampaignConfig, load_config
from vidnas.runners._evaluate import EvalSettings, evaluate, load_ensemble
from vidnas.search_space import ArchSpec, SearchSpace, get_space

STUDY_FILE = "journal.log"
CONFIG_FILE = "config.yaml"


@dataclasses.dataclass
class Progress:
    """What the progress display shows."""

    total: int
    done: int = 0
    failed: int = 0
    feasible: int = 0
    pareto: int = 0


def campaign_space(config: CampaignConfig) -> SearchSpace:
    s = config.space
    return get_space(s.name, frames=s.frames, height=s.height, width=s.width, width_mult=s.width_mult,
                     field="config.space.name")


# Storage and samplers ---------------------------------------------------------------------------


def open_storage(config: CampaignConfig, run_dir: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    url = config.storage
    if url is None:
        return JournalStorage(JournalFileBackend(str(run_dir / STUDY_FILE)))
    if url.endswith(".log") and "://" not in url:
        return JournalStorage(JournalFileBackend(url))
    if "://" not in url:
        raise SpecError("config.storage", url, "is not an Optuna storage URL or a journal .log path",
                        "e.g. sqlite:///study.db or postgresql://user@host/db")
    return optuna.storages.RDBStorage(url)


def make_sampler(config: CampaignConfig):
    import optuna

    s = config.sampler
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=s.population_size, seed=s.seed)
    if s.name == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, constant_liar=True, n_startup_trials=10)
    return optuna.samplers.RandomSampler(seed=s.seed)  # random, and exhaustive (every trial enqueued)


def requeue_stale(study) -> list[int]:
    """Trials a dead driver left RUNNING: mark them FAIL and enqueue their parameters again.

    A trial killed before its architecture was sampled has no parameters; it is marked
    stale (so it does not count against the budget) and a fresh trial takes its place.
    Returns the numbers of the stale trials.
    """
    from optuna.trial import TrialState

    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = ("driver stopped while the trial ran; re-queued" if trial.params
                  else "driver stopped before the trial was sampled; not counted")
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number}, skip_if_exists=False)
        stale.append(trial.number)
    return stale


def counted_trials(study) -> int:
    """Finished trials that count against the budget (stale re-queued ones excluded)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
               if not t.user_attrs.get("stale"))


# Latency source --------------------------------------------------------------------------------


def resolve_table(config: CampaignConfig, space: SearchSpace, run_dir: Path,
                  log: Callable[[str], None] = lambda m: None):
    """The campaign's latency table: given, cached, or built now (None for a roofline estimate)."""
    from vidnas.latency_models import (
        HarnessConfig,
        LatencyTable,
        build_table,
        fingerprint_id,
        fit_correction,
        get_backend,
    )

    t = config.target
    if t.roofline is not None:
        return None, None
    if t.lut is not None:
        return LatencyTable.load(t.lut), Path(t.lut)
    options = {"graph_optimization": t.graph_optimization} if t.backend == "onnxruntime" else {}
    backend = get_backend(t.backend, device=t.device, threads=t.threads, **options)
    harness = HarnessConfig.quick() if t.build.quick else HarnessConfig()
    harness = dataclasses.replace(harness, max_seconds=t.build.max_seconds)
    key = "-".join([space.name, *(f"{k}{v}" for k, v in sorted(space.shape.items())), t.backend, t.device,
                    f"b{t.batch}", fingerprint_id(backend.fingerprint()), "quick" if t.build.quick else "full"])
    path = (cache_dir() / "tables" / f"{key}.parquet") if t.build.cache else run_dir / "table.parquet"
    log(f"latency table: {path} ({'resuming' if path.exists() else 'building'})")
    table = build_table(space, backend, path, batch=t.batch, config=harness,
                        progress=lambda i, n, plan, row: log(f"table entry {i}/{n}") if plan else None)
    if t.build.fit and table.meta.correction is None:
        fit_correction(table, space, backend, n=t.build.fit, seed=1000, batch=t.batch, config=harness)
        table.save(path)
    return table, path


# The campaign --------------------------------------------------------------------------------


@dataclasses.dataclass
class CampaignResult:
    run_dir: Path
    study_name: str
    trials: int
    complete: int
    failed: int
    feasible: int
    pareto: list[dict[str, Any]]
    seconds: float


def _settings(config: CampaignConfig, table, log: Callable[[str], None] = lambda m: None) -> EvalSettings:
    from vidnas.runners._quality import prepare_quality

    metrics = tuple(dict.fromkeys([o.metric for o in config.objectives] + list(config.constraints)))
    ensembles, ensemble_rows = {}, {}
    for m in metrics:
        if m.startswith("ensemble:"):
            ensembles[m[9:]], ensemble_rows[m[9:]] = load_ensemble(m[9:])
    quality_metrics = list(metrics) + [f"proxy:{member['proxy']}" for summary in ensembles.values()
                                       for member in summary["ensemble"]["members_all_data"]]
    quality = prepare_quality(config, quality_metrics, log)
    return EvalSettings(
        metrics=metrics,
        table=(table.meta.to_dict(), table.rows()) if table is not None else None,
        roofline=config.target.roofline, roofline_dtype=config.target.roofline_dtype, batch=config.target.batch,
        steps=config.video.steps, cfg=config.video.cfg, proxy_clips=config.proxy.clips, proxy_seed=config.proxy.seed,
        proxy_train_steps=config.proxy.train_steps, threads=max(1, int(config.ray.cpus_per_trial)),
        ensembles=ensembles, ensemble_rows=ensemble_rows, quality=quality, proxy_data=config.proxy.data,
    )


def _tell(study, trial, config: CampaignConfig, result: dict[str, Any] | None, reason: str | None,
          turnaround: float) -> bool:
    """Record one evaluation in the study; return whether the trial is feasible."""
    from optuna.trial import TrialState

    trial.set_user_attr("turnaround_seconds", turnaround)
    if result is None:
        trial.set_user_attr("fail_reason", reason or "unknown failure")
        study.tell(trial, state=TrialState.FAIL)
        return False
    for key, value in result.items():
        if key != "seconds":
            trial.set_user_attr(key, value)
    trial.set_user_attr("eval_seconds", result["seconds"]["total"])
    trial.set_user_attr("seconds", result["seconds"])
    feasible = True
    for metric, bound in config.constraints.items():
        if metric not in result:
            trial.set_user_attr("fail_reason", f"constraint metric {metric} was not computed")
            study.tell(trial, state=TrialState.FAIL)
            return False
        trial.set_constraint(metric, float(result[metric]) - bound)
        feasible &= float(result[metric]) <= bound
    missing = [o.metric for o in config.objectives if o.metric not in result]
    if missing:
        trial.set_user_attr("fail_reason", f"objectives not computed: {missing}")
        study.tell(trial, state=TrialState.FAIL)
        return False
    study.tell(trial, [float(result[o.metric]) for o in config.objectives])
    return feasible


def run_campaign(config: CampaignConfig | None, run_dir: str | Path, *, resume: bool = False,
                 on_progress: Callable[[Progress], None] | None = None,
                 log: Callable[[str], None] = lambda m: None, local: bool = False) -> CampaignResult:
    """Run (or resume) a campaign in ``run_dir``. ``local=True`` evaluates in the driver (no Ray)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = Path(run_dir)
    started = time.perf_counter()
    if resume:
        if not (run_dir / CONFIG_FILE).exists():
            raise SpecError("RUN_DIR", str(run_dir), "holds no campaign to resume (no config.yaml)")
        config = load_config(run_dir / CONFIG_FILE)
    else:
        config = config or load_config(None)
        if (run_dir / CONFIG_FILE).exists():
            raise SpecError("RUN_DIR", str(run_dir), "already holds a campaign", "use --resume to continue it")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    space = campaign_space(config)
    table, table_path = resolve_table(config, space, run_dir, log)
    settings = _settings(config, table, log)
    storage = open_storage(config, run_dir)
    study = optuna.create_study(study_name=config.name, storage=storage, directions=config.directions(),
                                sampler=make_sampler(config), load_if_exists=True)
    with warnings.catch_warnings():  # experimental in Optuna, stable enough for labelling dashboards
        warnings.simplefilter("ignore")
        study.set_metric_names([o.metric for o in config.objectives])
    total = config.trials
    if config.sampler.name == "exhaustive":
        total = space.size
        if not resume and space.size > 100_000:
            raise SpecError("config.sampler.name", "exhaustive", f"space {space.name} has {space.size:.3g} "
                                                                 "architectures; too many to enumerate")
        if not resume:
            for spec in space.enumerate():
                study.enqueue_trial(space.params_of(spec))
    stale = requeue_stale(study) if resume else []
    if stale:
        log(f"{len(stale)} trials left running by the stopped driver marked stale (sampled ones re-queued): {stale}")
    _write_campaign_json(run_dir, config, space, table, table_path, status="running", quality=settings.quality)
    progress = Progress(total=total)
    _refresh_progress(study, config, progress)
    if on_progress:
        on_progress(progress)
    if local:
        _loop_local(study, space, config, settings, total, progress, on_progress)
    else:
        _loop_ray(study, space, config, settings, total, progress, on_progress, run_dir)
    pareto = export_pareto(study, config, run_dir)
    write_trials(study, config, run_dir)
    _write_campaign_json(run_dir, config, space, table, table_path, status="finished", quality=settings.quality)
    _refresh_progress(study, config, progress)
    return CampaignResult(run_dir, config.name, progress.done, progress.done - progress.failed, progress.failed,
                          progress.feasible, pareto, time.perf_counter() - started)


def _loop_local(study, space, config, settings, total, progress, on_progress) -> None:
    while counted_trials(study) < total:
        trial = study.ask()
        spec = space.sample(trial)
        t0 = time.perf_counter()
        try:
            result, reason = evaluate(spec.to_json(), settings), None
        except Exception as exc:  # the campaign goes on; the trial records why it failed
            result, reason = None, f"{type(exc).__name__}: {exc}"
        _tell(study, trial, config, result, reason, time.perf_counter() - t0)
        _refresh_progress(study, config, progress)
        if on_progress:
            on_progress(progress)


def _loop_ray(study, space, config, settings, total, progress, on_progress, run_dir: Path) -> None:
    import ray

    from vidnas.runners._ray import RaySession

    workers = config.workers
    session = RaySession(run_dir, address=config.ray.address, num_cpus=workers * config.ray.cpus_per_trial,
                         num_gpus=workers * config.ray.gpus_per_trial if config.ray.gpus_per_trial else None)
    with session:
        task = ray.remote(num_cpus=config.ray.cpus_per_trial, num_gpus=config.ray.gpus_per_trial,
                          max_retries=0)(evaluate)
        settings_ref = ray.put(settings)
        pending: dict[Any, tuple[Any, ArchSpec, float]] = {}
        asked = counted_trials(study)
        while asked < total or pending:
            while len(pending) < workers and asked < total:
                trial = study.ask()
                spec = space.sample(trial)
                pending[task.remote(spec.to_json(), settings_ref)] = (trial, spec, time.perf_counter())
                asked += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            now = time.perf_counter()
            for ref in list(pending):
                trial, spec, t0 = pending[ref]
                if ref in ready:
                    try:
                        result, reason = ray.get(ref), None
                    except Exception as exc:  # RayTaskError wraps the evaluation's exception
                        cause = getattr(exc, "cause", None) or exc
                        result, reason = None, f"{type(cause).__name__}: {str(cause).splitlines()[0][:500]}"
                elif now - t0 > config.trial_timeout_s:
                    ray.cancel(ref, force=True)
                    result, reason = None, f"timed out after {config.trial_timeout_s:.0f} s"
                else:
                    continue
                del pending[ref]
                _tell(study, trial, config, result, reason, now - t0)
                _refresh_progress(study, config, progress)
                if on_progress:
                    on_progress(progress)


def _refresh_progress(study, config: CampaignConfig, progress: Progress) -> None:
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("stale")]
    progress.done = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    progress.failed = sum(t.state == TrialState.FAIL for t in trials)
    progress.feasible = sum(t.state == TrialState.COMPLETE and _feasible(t) for t in trials)
    progress.pareto = len(pareto_trials(study, config))


def _feasible(trial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def pareto_trials(study, config: CampaignConfig) -> list:
    """Feasible complete trials that no other feasible trial dominates (distinct architectures)."""
    from optuna.trial import TrialState

    signs = [1 if d == "minimize" else -1 for d in config.directions()]
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _feasible(t)]
    points = [[s * v for s, v in zip(signs, t.values)] for t in trials]
    front, seen = [], set()
    for t, keep in zip(trials, non_dominated(points)):
        arch = t.user_attrs.get("arch_id")
        if keep and arch not in seen:
            front.append(t)
            seen.add(arch)
    return sorted(front, key=lambda t: t.values[0] * signs[0])


def export_pareto(study, config: CampaignConfig, run_dir: Path) -> list[dict[str, Any]]:
    """Write the Pareto set as spec JSON files plus ``pareto/pareto.json``."""
    space = campaign_space(config)
    out = run_dir / "pareto"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    entries = []
    for rank, trial in enumerate(pareto_trials(study, config)):
        spec = space.sample(_FixedParams(trial.params))
        spec = ArchSpec(spec.backbone, spec.temporal, name=f"{config.name}-pareto-{rank:02d}")
        path = out / f"{rank:02d}-{spec.arch_id}.json"
        spec.save(path)
        entries.append({"rank": rank, "trial": trial.number, "arch_id": spec.arch_id, "spec": str(path.name),
                        "values": dict(zip([o.metric for o in config.objectives], trial.values)),
                        "metrics": {k: v for k, v in trial.user_attrs.items() if k not in ("seconds", "slot_ms")}})
    (out / "pareto.json").write_text(json.dumps({"objectives": [dataclasses.asdict(o) for o in config.objectives],
                                                 "pareto": entries}, indent=2, default=str))
    return entries


class _FixedParams:
    """Replays recorded trial parameters through the space's sampling function."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices):
        if name not in self.params:
            raise VidnasError(f"trial parameter {name} is missing; the space changed since the campaign ran")
        return self.params[name]


def write_trials(study, config: CampaignConfig, run_dir: Path) -> Path:
    """One row per trial (``trials.parquet``): state, objectives, constraints, metrics, timings."""
    import pandas as pd

    pareto = {t.number for t in pareto_trials(study, config)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        complete = t.state.name == "COMPLETE"
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "feasible": complete and _feasible(t),
                               "pareto": t.number in pareto, "stale": bool(t.user_attrs.get("stale")),
                               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
                               "params": json.dumps(t.params, sort_keys=True, default=str)}
        for i, o in enumerate(config.objectives):
            row[f"objective.{o.metric}"] = t.values[i] if t.values else None
        for key, value in t.constraints.items():
            row[f"constraint.{key}"] = value
        for key, value in t.user_attrs.items():
            row[f"attr.{key}"] = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        rows.append(row)
    path = run_dir / "trials.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def _write_campaign_json(run_dir: Path, config: CampaignConfig, space: SearchSpace, table, table_path,
                         status: str, quality=None) -> None:
    from vidnas._env import fingerprint

    data = {
        "format": "vidnas.campaign", "version": 1, "status": status,
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(), "space": space.describe(),
        "latency": ({"source": "table", "path": str(table_path), "meta": {k: v for k, v in table.meta.to_dict().items()
                                                                           if k != "end_to_end"}}
                    if table is not None else {"source": "roofline estimate", "device": config.target.roofline}),
        "quality": _quality_record(quality),
        "environment": fingerprint(),
        "reproduce": f"vidnas search {run_dir / CONFIG_FILE}",
    }
    (run_dir / "campaign.json").write_text(json.dumps(data, indent=2, default=str))


def _quality_record(quality) -> dict[str, Any] | None:
    """How quality was computed: the proxy scale, backbone and supernet (with their training records)."""
    if quality is None:
        return None
    record = quality.describe()
    for key, path in (("backbone", quality.backbone_path),
                      ("supernet_training", quality.supernet_path and f"{quality.supernet_path}/supernet.json")):
        if path:
            meta = Path(path).with_suffix(".json") if key == "backbone" else Path(path)
            if meta.exists():
                record[key] = json.loads(meta.read_text())
    return record
