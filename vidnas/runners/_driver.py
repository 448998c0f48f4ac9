"""The campaign driver: Optuna ask/tell in the driver, trial evaluations as Ray tasks.

As many evaluations are in flight as there are workers. Each finished evaluation is
told to Optuna with its metrics as user attributes and its constraints through
``trial.set_constraint``; a failing or timed-out evaluation becomes a FAIL trial with its
reason, and the campaign goes on; an evaluation lost with its Ray worker or node is
marked stale and re-queued. Optuna's storage is the source of truth: a journal file in
the run directory by default, so a killed campaign resumes where it stopped (trials the
dead driver left RUNNING are marked stale and, when they had been sampled, re-queued with
the same parameters) and ``optuna-dashboard RUN_DIR/journal.log`` opens it. On an RDB
storage (PostgreSQL) several drivers share one study; see :mod:`vidnas.runners._trials`.

What a run is made of (config, space, latency source, evaluation settings with the quality
context, storage) is prepared once as a :class:`~vidnas.runners._campaign.Campaign`; the loop
over the study keeps its own state (study, budget, progress, stop flag, screen) in a ``_Loop``.
"""

from __future__ import annotations

import contextlib
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
from vidnas.runners._campaign import Campaign, LatencySource, eval_settings
from vidnas.runners._config import CampaignConfig, load_config
from vidnas.runners._trials import (
    HeartbeatKeeper,
    claim,
    counts,
    driver_alive,
    driver_id,
    fail_heartbeat_stale,
    is_screened,
    is_stale,
    is_surplus,
    mark_sampled,
    mark_stale,
    open_budget,
    requeue_stale,
    supports_heartbeat,
)
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
    stale: int = 0  # not counted: evaluations lost with a driver, worker or node (re-queued)
    screened: int = 0  # not counted: architectures a cheap constraint ruled out (never evaluated)


def campaign_space(config: CampaignConfig) -> SearchSpace:
    s = config.space
    return get_space(s.name, frames=s.frames, height=s.height, width=s.width, width_mult=s.width_mult,
                     field="config.space.name")


# Storage and samplers ---------------------------------------------------------------------------


SCHEMA_ATTEMPTS = 5  # tries to open an RDB storage whose schema another driver is creating


def open_storage(config: CampaignConfig, run_dir: Path):
    """The study's storage: the run's journal file, a journal path, or an RDB URL (with heartbeats)."""
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
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():  # heartbeats are meant for study.optimize; the driver keeps its own
                    warnings.simplefilter("ignore")
                    return optuna.storages.RDBStorage(url, heartbeat_interval=config.heartbeat_s,
                                                      grace_period=config.stale_after_s)
            except Exception as exc:
                # Two drivers started at once on an empty database both create Optuna's tables: the
                # slower one's CREATE fails on a duplicate (IntegrityError); once the faster has
                # finished, the tables exist and opening succeeds.
                if type(exc).__name__ != "IntegrityError" or attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as exc:  # SQLAlchemy and DB-API errors of many kinds: a bad URL, no server, no driver
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SpecError("config.storage", redact_url(url), f"could not be opened ({type(exc).__name__}: {first})",
                        "check the URL, that the server is up, and the driver (pip install 'psycopg[binary]' "
                        "for postgresql://)") from None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and records)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://***" if "@" in url else url


def make_sampler(config: CampaignConfig, space: SearchSpace | None = None, cheap=None):
    """The campaign's Optuna sampler, from the sampler registry.

    ``cheap``: the campaign's :class:`~vidnas.runners._cheap.CheapModel` (vectorised cheap metrics),
    for samplers that screen candidates by them."""
    from vidnas.runners._samplers import SamplerContext, get_sampler

    context = SamplerContext(seed=config.sampler.seed, space=space if space is not None else campaign_space(config),
                             directions=tuple(config.directions()), metrics=tuple(o.metric for o in config.objectives),
                             constraints=dict(config.constraints), cheap=cheap)
    return get_sampler(config.sampler.name).create(config.sampler.options, context)


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
    backend = get_backend(t.backend, device=t.device, threads=t.threads, field="config.target.backend",
                          options_field="config.target.options", **t.options)
    harness = HarnessConfig.quick() if t.build.quick else HarnessConfig()
    harness = dataclasses.replace(harness, max_seconds=t.build.max_seconds)
    key = "-".join([space.name, *(f"{k}{v}" for k, v in sorted(space.shape.items())), t.backend, t.device,
                    f"b{t.batch}", fingerprint_id(backend.fingerprint()), "quick" if t.build.quick else "full"])
    path = (cache_dir() / "tables" / f"{key}.parquet") if t.build.cache else run_dir / "table.parquet"
    log(f"latency table: {path} ({'resuming' if path.exists() else 'building'})")
    with _table_watch(backend, t.build.allow_load, log) as watch:
        table = build_table(space, backend, path, batch=t.batch, config=harness, watch=watch)
        if t.build.fit and table.meta.correction is None:
            fit_correction(table, space, backend, n=t.build.fit, seed=1000, batch=t.batch, config=harness)
            if watch.load is not None and watch.load.item_under_load():  # raises unless load is allowed
                table.meta.harness["load"] = watch.load.summary()
            table.save(path)
    return table, path


@contextlib.contextmanager
def _table_watch(backend, allow_load: bool, log: Callable[[str], None]):
    """A table build's watch: throttled progress lines in the campaign's log (one task per pass, its
    total fixed), and the busy-machine guard (none for a backend on a virtual clock)."""
    from vidnas._progress import LogProgress, pass_tasks
    from vidnas.latency_models import BuildWatch, load_guard

    stage, progress = pass_tasks(LogProgress("latency table", write=log))
    with load_guard(backend, getattr(backend, "threads", None), allow_load=allow_load,
                    what="the campaign's table build") as guard:
        yield BuildWatch(progress=progress, stage=stage, load=guard)


# The campaign --------------------------------------------------------------------------------


@dataclasses.dataclass
class CampaignResult:
    run_dir: Path
    study_name: str
    trials: int  # finished trials that count against the budget (all drivers)
    complete: int
    failed: int  # counted FAIL trials (evaluation errors, timeouts)
    feasible: int
    pareto: list[dict[str, Any]]
    seconds: float
    stale: int = 0  # trials whose evaluation never finished (driver, worker or node lost; re-queued)
    evaluated_here: int = 0  # evaluations this driver told the study (the others' are not in it)
    interrupted: bool = False  # stopped by SIGINT: resume with `vidnas search --resume RUN_DIR`
    screened: int = 0  # architectures ruled out by a cheap constraint: recorded, never evaluated, not counted
    stopped: str | None = None  # why the campaign stopped before its budget (other than SIGINT)


def _tell(study, trial, config: CampaignConfig, outcome) -> bool:
    """Record one evaluation's outcome in the study; return whether the trial is feasible."""
    from optuna.trial import TrialState

    result = outcome.result
    trial.set_user_attr("turnaround_seconds", outcome.seconds)
    if result is None:
        trial.set_user_attr("fail_reason", outcome.reason or "unknown failure")
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
    """Run (or resume) a campaign in ``run_dir``. ``local=True`` evaluates in the driver (no Ray).

    Several drivers may run one study at once (each with its own run directory) on a
    shared RDB storage; the budget, stale trials and re-queues follow :mod:`._trials`.
    SIGINT stops the campaign cleanly: the trials in flight are marked stale and
    re-queued, Ray is shut down, and the result says ``interrupted``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = Path(run_dir)
    started = time.perf_counter()
    config, previous = _open_run_dir(config, run_dir, resume)
    campaign = prepare_campaign(config, run_dir, log)
    study = _create_study(campaign)
    loop = _Loop(campaign, study, _budget(campaign, study), driver_id(), on_progress, started)
    _write_driver(run_dir, loop.me, config, running=True)
    try:
        stale = _recover(study, resume, previous)
        if stale:
            log(f"{len(stale)} trials left running by a stopped driver marked stale (sampled ones re-queued): {stale}")
        result = _run(loop, local)
    finally:  # whatever happened, this driver no longer runs the campaign (a kill -9 leaves `running`)
        _write_driver(run_dir, loop.me, config, running=False)
    if config.proxy.verify and not result.interrupted:
        _verify(campaign)
    return result


def prepare_campaign(config: CampaignConfig, run_dir: Path, log: Callable[[str], None] = lambda m: None
                     ) -> Campaign:
    """The campaign's run, built once: its space, latency source, evaluation settings (the quality context
    prepared: proxy scale, backbone, supernet) and storage."""
    space = campaign_space(config)
    table, table_path = resolve_table(config, space, run_dir, log)
    settings = eval_settings(config, table, log)
    storage = open_storage(config, run_dir)
    return Campaign(config, run_dir, space, LatencySource(table, table_path, config.target.roofline), settings,
                    storage, log)


def _open_run_dir(config: CampaignConfig | None, run_dir: Path, resume: bool) -> tuple[CampaignConfig, str | None]:
    """The campaign's config (the run directory's own when resuming; written there otherwise) and the driver
    that last ran the directory (None for a new campaign)."""
    if resume:
        if not (run_dir / CONFIG_FILE).exists():
            raise SpecError("RUN_DIR", str(run_dir), "holds no campaign to resume (no config.yaml)")
        config = load_config(run_dir / CONFIG_FILE)
        previous, running = _previous_driver(run_dir)
        if previous and running and driver_alive(previous):
            raise SpecError("RUN_DIR", str(run_dir), f"is being run by a live driver ({previous})",
                            "stop it first, or start another driver with its own run directory")
        return config, previous
    config = config or load_config(None)
    if (run_dir / CONFIG_FILE).exists():
        raise SpecError("RUN_DIR", str(run_dir), "already holds a campaign", "use --resume to continue it")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    return config, None


def _create_study(campaign: Campaign):
    """The campaign's Optuna study (created, or loaded from its storage), with its sampler and metric names."""
    import optuna

    config = campaign.config
    study = optuna.create_study(study_name=config.name, storage=campaign.storage, directions=config.directions(),
                                sampler=make_sampler(config, campaign.space, campaign.cheap), load_if_exists=True)
    with warnings.catch_warnings():  # experimental in Optuna, stable enough for labelling dashboards
        warnings.simplefilter("ignore")
        study.set_metric_names([o.metric for o in config.objectives])
    return study


def _budget(campaign: Campaign, study) -> int:
    """The trials to evaluate: ``config.trials``; for an exhaustive sampler, every architecture of the space
    the cheap constraints leave (enqueued in a new study)."""
    from vidnas.runners._samplers import get_sampler

    config, space = campaign.config, campaign.space
    if not get_sampler(config.sampler.name).exhaustive:
        return config.trials
    if space.size > 100_000:
        raise SpecError("config.sampler.name", config.sampler.name, f"enumerates the space, and {space.name} "
                                                                    f"has {space.size:.3g} architectures")
    if not study.get_trials(deepcopy=False):  # a new study; joining drivers find it enqueued already
        for spec in space.enumerate():
            study.enqueue_trial(space.params_of(spec))
    if not config.constraints:
        return space.size
    everything = campaign.cheap.enumerate_indices()  # the budget is what the cheap constraints leave
    return int((campaign.cheap.violations(everything, config.constraints) <= 0).all(axis=1).sum())


def _verify(campaign: Campaign) -> None:
    """After the trials: train ``proxy.verify`` of the run's architectures with the truth (``vidnas verify``)."""
    from vidnas.runners._verify import verify

    config, log = campaign.config, campaign.log
    log(f"verifying the quality axis: {config.proxy.verify} architectures trained with the truth's protocol")
    verified = verify(campaign.run_dir, k=config.proxy.verify, seconds_budget=config.proxy.verify_seconds_budget,
                      workers=max(1, config.workers), log=log)
    log(f"verification: Kendall tau {verified['kendall']:+.2f} [{verified['kendall_ci'][0]:+.2f}, "
        f"{verified['kendall_ci'][1]:+.2f}] over {verified['k']} architectures at {verified['shape']}")


@dataclasses.dataclass
class _Loop:
    """One driver's loop over the campaign's study: the budget, its identity, progress, stop flag, screen."""

    campaign: Campaign
    study: Any
    total: int  # trials that count against the budget
    me: str  # this driver (``_trials.driver_id``)
    on_progress: Callable[[Progress], None] | None = None
    started: float = 0.0  # perf_counter when the campaign started
    progress: Progress = dataclasses.field(init=False)
    stop: _StopFlag = dataclasses.field(init=False)
    screen: Any = dataclasses.field(init=False)  # the campaign's cheap constraints (runners._screen.Screen)

    def __post_init__(self) -> None:
        self.progress = Progress(total=self.total)
        self.stop = _StopFlag(self.campaign.log)
        self.screen = self.campaign.screen()

    def report(self) -> None:
        """Refresh the progress from the study and show it."""
        _refresh_progress(self.study, self.campaign.config, self.progress)
        if self.on_progress:
            self.on_progress(self.progress)


def _run(loop: _Loop, local: bool) -> CampaignResult:
    """Evaluate until the budget is spent or SIGINT; then the Pareto set, trials.parquet and campaign.json."""
    campaign, study = loop.campaign, loop.study
    ray_info: dict[str, Any] = {}
    _write_campaign_json(campaign, "running")
    loop.report()
    with loop.stop:
        evaluated = _drive(loop, campaign.local_executor()) if local else _drive_on_ray(loop, ray_info)
    pareto = export_pareto(study, campaign.config, campaign.run_dir)
    write_trials(study, campaign.config, campaign.run_dir)
    _write_campaign_json(campaign, "interrupted" if loop.stop.requested else "finished", ray_info)
    _refresh_progress(study, campaign.config, loop.progress)
    return _result(loop, evaluated, pareto)


def _result(loop: _Loop, evaluated: int, pareto: list[dict[str, Any]]) -> CampaignResult:
    progress, stopped = loop.progress, None
    if loop.screen.exhausted:
        stopped = (f"the sampler proposed {loop.screen.in_a_row} architectures in a row that break the constraints; "
                   "loosen them, or use a sampler that screens its candidates (screened-ehvi)")
        loop.campaign.log(f"stopped: {stopped}")
    return CampaignResult(loop.campaign.run_dir, loop.campaign.config.name, progress.done,
                          progress.done - progress.failed, progress.failed, progress.feasible, pareto,
                          time.perf_counter() - loop.started, stale=progress.stale, evaluated_here=evaluated,
                          interrupted=loop.stop.requested, screened=progress.screened, stopped=stopped)


DRIVER_FILE = "driver.json"


def _write_driver(run_dir: Path, me: str, config: CampaignConfig, *, running: bool) -> None:
    record = {"driver": me, "running": running, "storage": redact_url(config.storage or STUDY_FILE)}
    (run_dir / DRIVER_FILE).write_text(json.dumps(record))


def _previous_driver(run_dir: Path) -> tuple[str | None, bool]:
    """The driver that last ran this directory, and whether it had not stopped by itself (killed, or running)."""
    try:
        record = json.loads((run_dir / DRIVER_FILE).read_text())
        return record.get("driver"), bool(record.get("running"))
    except (OSError, ValueError, AttributeError):
        return None, False


def _recover(study, resume: bool, previous: str | None) -> list[int]:
    """Trials a stopped driver left RUNNING: declared stale and re-queued.

    With heartbeats (shared storages) only the previous driver of this run directory and
    drivers whose heartbeat stopped are concerned; other drivers may be alive. A journal
    file serves one driver: on resume, everything RUNNING is stale.
    """
    from optuna.trial import TrialState

    if supports_heartbeat(study._storage):
        mine = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if previous is not None and t.user_attrs.get("driver") == previous]
        return sorted(requeue_stale(study, only=mine) + fail_heartbeat_stale(study))
    return requeue_stale(study) if resume else []


class _StopFlag:
    """SIGINT asks the campaign to stop at the next step (a second SIGINT interrupts at once)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.requested = False
        self.log = log
        self._previous: Any = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("stopping: recording the trials in flight (SIGINT again to abort at once)")

    def __enter__(self) -> _StopFlag:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _drive_on_ray(loop: _Loop, ray_info: dict[str, Any]) -> int:
    """:func:`_drive` with evaluations as Ray tasks; ``ray_info`` receives the session's description."""
    session = loop.campaign.ray_session()
    with session:
        executor = loop.campaign.ray_executor()
        try:
            return _drive(loop, executor)
        finally:
            ray_info.update(session.describe())
            executor.cancel_all()


# A trial whose infrastructure failed is re-queued at most this many times (a deterministic failure,
# such as resources no node has, must not loop forever).
MAX_REQUEUES = 2
INTERRUPTED = "campaign interrupted (SIGINT) while the trial ran; re-queued"


def _drive(loop: _Loop, executor) -> int:
    """Ask, evaluate and tell until the budget is spent; return the evaluations this driver told.

    The loop's ``screen`` (a :class:`~vidnas.runners._screen.Screen`) records architectures that break a
    cheap constraint without evaluating them; they do not count against the budget."""
    study, config, stop = loop.study, loop.campaign.config, loop.stop
    keeper = HeartbeatKeeper(study._storage, config.heartbeat_s)
    inflight: dict[Any, Any] = {}  # executor key -> trial
    evaluated, last_check = 0, 0.0
    with keeper, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        while not stop.requested:
            if keeper.enabled and time.monotonic() - last_check >= config.heartbeat_s:
                last_check = time.monotonic()
                stale = fail_heartbeat_stale(study)
                if stale:
                    loop.campaign.log(f"trials {stale} lost their driver's heartbeat: marked stale and re-queued")
            _submit(loop, executor, keeper, inflight)
            if not inflight:
                if keeper.enabled and _foreign_running(study):  # others' trials may still be re-queued
                    time.sleep(1.0)
                    continue
                break
            for key, outcome in executor.collect(timeout=1.0):
                trial = inflight.pop(key)
                keeper.discard(trial._trial_id)
                if stop.requested and outcome.result is None:  # Ctrl-C reached the worker too: not the trial's fault
                    mark_stale(study, trial._trial_id, trial.number, dict(trial.params), INTERRUPTED)
                    continue
                evaluated += _record(loop, trial, outcome)
                loop.report()
        if stop.requested:
            _requeue_inflight(loop, inflight)
    return evaluated


def _submit(loop: _Loop, executor, keeper: HeartbeatKeeper, inflight: dict[Any, Any]) -> None:
    """Ask for trials and submit their architectures while the executor has free slots and the budget room;
    a trial whose architecture breaks a cheap constraint is screened instead (and claims no budget)."""
    study, space, screen = loop.study, loop.campaign.space, loop.screen
    while (len(inflight) < executor.slots and not loop.stop.requested and open_budget(study, loop.total)
           and not screen.exhausted):
        trial = study.ask()
        keeper.add(trial._trial_id)
        trial.set_user_attr("driver", loop.me)
        spec = None
        if screen.active:  # screened first: a screened trial claims no budget
            spec = space.sample(trial)
            if screen.screen(study, trial, spec):
                keeper.discard(trial._trial_id)
                continue
        if not claim(study, trial, loop.total):
            keeper.discard(trial._trial_id)
            break
        spec = spec or space.sample(trial)
        mark_sampled(trial)
        inflight[executor.submit(spec.to_json())] = trial


def _requeue_inflight(loop: _Loop, inflight: dict[Any, Any]) -> None:
    """The trials in flight when the campaign stopped: marked stale and re-queued."""
    for trial in inflight.values():
        mark_stale(loop.study, trial._trial_id, trial.number, dict(trial.params), INTERRUPTED)
    if inflight:
        loop.campaign.log(f"{len(inflight)} trials in flight marked stale and re-queued: "
                          f"{sorted(t.number for t in inflight.values())}")
    inflight.clear()


def _foreign_running(study) -> bool:
    """RUNNING trials of other vidnas drivers (ones with a ``driver``: they keep heartbeats)."""
    from optuna.trial import TrialState

    return any("driver" in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _record(loop: _Loop, trial, outcome) -> int:
    """Tell one outcome; infrastructure failures are re-queued instead. Returns 1 if told here."""
    from optuna.exceptions import UpdateFinishedTrialError

    study = loop.study
    if outcome.infrastructure:
        count = int(trial.user_attrs.get("requeue_count", 0))
        if count < MAX_REQUEUES:
            mark_stale(study, trial._trial_id, trial.number, dict(trial.params), f"{outcome.reason}; re-queued",
                       requeues=count + 1)
            return 0
        outcome = dataclasses.replace(outcome, reason=f"{outcome.reason} ({count + 1} times; not re-queued again)")
    try:
        _tell(study, trial, loop.campaign.config, outcome)
    except UpdateFinishedTrialError:  # another driver declared it stale (its heartbeat was late): it is re-queued
        loop.campaign.log(f"trial {trial.number} was declared stale by another driver while it ran; "
                          "its result is discarded")
        return 0
    return 1


def _refresh_progress(study, config: CampaignConfig, progress: Progress) -> None:
    from optuna.trial import TrialState

    everything = study.get_trials(deepcopy=False)
    trials = [t for t in everything if counts(t)]
    progress.done = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    progress.failed = sum(t.state == TrialState.FAIL for t in trials)
    progress.feasible = sum(t.state == TrialState.COMPLETE and _feasible(t) for t in trials)
    progress.stale = sum(is_stale(t) for t in everything)
    progress.screened = sum(is_screened(t) for t in everything)
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
                               "pareto": t.number in pareto, "stale": is_stale(t), "surplus": is_surplus(t),
                               "screened": is_screened(t),
                               "counted": counts(t),
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


def _write_campaign_json(campaign: Campaign, status: str, ray_info: dict[str, Any] | None = None) -> None:
    """``campaign.json``: the campaign as run (config, space, latency source, quality context, environment, Ray)."""
    from vidnas._env import fingerprint

    config, run_dir = campaign.config, campaign.run_dir
    data = {
        "format": "vidnas.campaign", "version": 1, "status": status,
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(), "space": campaign.space.describe(),
        "latency": campaign.latency.describe(),
        "quality": _quality_record(campaign.quality),
        "environment": fingerprint(),
        "ray": ray_info or {},
        "reproduce": f"vidnas search {run_dir / CONFIG_FILE}",
        "resume": f"vidnas search --resume {run_dir}",
    }
    data["config"]["storage"] = redact_url(config.storage) if config.storage else None
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
