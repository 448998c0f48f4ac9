"""One run of a campaign, prepared once: what the driver's functions share.

A :class:`Campaign` holds what the driver builds before its first trial, once: the config and
run directory, the search space, the latency source (a table, or a roofline estimate), the
evaluation settings with the quality context they carry (proxy scale, pretrained backbone,
supernet; :mod:`vidnas.runners._quality`) and the study's storage. The settings' own
:class:`~vidnas.runners._evaluate.EvalCache` is the driver process's: the cheap model, the screen
and local evaluations share the latency predictor (and quality context) it keeps.
:func:`vidnas.runners._driver.prepare_campaign` builds a campaign.

What crosses to the processes that evaluate trials is the picklable :class:`EvalSettings` (its
cache pickles empty: each worker process fills its own once); the campaign stays in the driver.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas.runners._config import CampaignConfig
from vidnas.runners._evaluate import EvalCache, EvalSettings, load_ensemble
from vidnas.runners._metrics import proxies_of
from vidnas.search_space import SearchSpace

__all__ = ["Campaign", "LatencySource", "eval_settings"]


def _quiet(message: str) -> None:
    """The default log: says nothing."""


@dataclasses.dataclass(frozen=True)
class LatencySource:
    """Where a campaign's latency comes from: a table (and its file), or a roofline estimate."""

    table: Any = None  # a LatencyTable, or None for a roofline estimate
    path: Path | None = None
    roofline: str | None = None  # the datasheet device of a roofline estimate

    def describe(self) -> dict[str, Any]:
        """The campaign record's ``latency`` entry (the table's metadata without its measurements)."""
        if self.table is None:
            return {"source": "roofline estimate", "device": self.roofline}
        meta = {k: v for k, v in self.table.meta.to_dict().items() if k != "end_to_end"}
        return {"source": "table", "path": str(self.path), "meta": meta}


@dataclasses.dataclass
class Campaign:
    """A campaign's run: config, space, latency source, evaluation settings, storage (see the module docstring)."""

    config: CampaignConfig
    run_dir: Path
    space: SearchSpace
    latency: LatencySource
    settings: EvalSettings
    storage: Any  # the study's Optuna storage
    log: Callable[[str], None] = _quiet

    @property
    def cache(self) -> EvalCache:
        """What the driver process built from the settings (latency predictor, quality context)."""
        return self.settings.cache

    @property
    def quality(self) -> Any:
        """The quality context (:class:`~vidnas.runners._quality.QualitySettings`), or None without proxies."""
        return self.settings.quality

    @functools.cached_property
    def cheap(self) -> Any:
        """The space's vectorised cheap metrics (:class:`~vidnas.runners._cheap.CheapModel`), built once."""
        from vidnas.runners._cheap import CheapModel

        return CheapModel.for_settings(self.space, self.settings)

    def screen(self) -> Any:
        """The campaign's cheap constraints, checked in the driver (:class:`~vidnas.runners._screen.Screen`)."""
        from vidnas.runners._screen import Screen

        return Screen(self.config.constraints, self.settings)

    def local_executor(self) -> Any:
        """Evaluations in the driver process, one at a time (sharing the driver's cache)."""
        from vidnas.runners._executors import LocalExecutor

        return LocalExecutor(self.settings)

    def ray_session(self) -> Any:
        """The Ray session (local on loopback, or joining ``ray.address``) sized for the campaign's workers."""
        from vidnas.runners._ray import RaySession

        r, workers = self.config.ray, self.config.workers
        return RaySession(self.run_dir, address=r.address, num_cpus=workers * r.cpus_per_trial,
                          num_gpus=workers * r.gpus_per_trial if r.gpus_per_trial else None,
                          resources={k: workers * v for k, v in r.resources.items()} or None)

    def ray_executor(self) -> Any:
        """Evaluations as Ray tasks with the campaign's per-trial resources and timeout (in a started session)."""
        from vidnas.runners._executors import RayExecutor

        r = self.config.ray
        return RayExecutor(self.settings, workers=self.config.workers, cpus=r.cpus_per_trial, gpus=r.gpus_per_trial,
                           resources=dict(r.resources), timeout_s=self.config.trial_timeout_s)


def eval_settings(config: CampaignConfig, table: Any, log: Callable[[str], None] = _quiet) -> EvalSettings:
    """What every trial evaluation needs, picklable: the metrics, the table's rows, the calibrated
    ensembles and learned quality models the objectives name (each model's setting checked against
    the campaign's), and the quality context (prepared now: scale, backbone, supernet)."""
    from vidnas.proxies import QualityModel
    from vidnas.runners._quality import prepare_quality

    metrics = config.metrics()
    ensembles, ensemble_rows = {}, {}
    for m in metrics:
        if m.ensemble_path is not None:
            ensembles[m.ensemble_path], ensemble_rows[m.ensemble_path] = load_ensemble(m.ensemble_path)
    loaded = {m.model_path: QualityModel.load(m.model_path) for m in metrics if m.model_path is not None}
    models = {path: model.to_dict() for path, model in loaded.items()}
    quality = prepare_quality(config, proxies_of(metrics, ensembles, models), log)
    if models:
        setting = _model_setting(config, quality)
        for path, model in loaded.items():
            model.check_setting(setting, where=f"quality:{path}")
    return EvalSettings(
        metrics=tuple(m.name for m in metrics),
        table=(table.meta.to_dict(), table.rows()) if table is not None else None,
        roofline=config.target.roofline, roofline_dtype=config.target.roofline_dtype, batch=config.target.batch,
        steps=config.video.steps, cfg=config.video.cfg, proxy_clips=config.proxy.clips, proxy_seed=config.proxy.seed,
        proxy_train_steps=config.proxy.train_steps, threads=max(1, int(config.ray.cpus_per_trial)),
        ensembles=ensembles, ensemble_rows=ensemble_rows, quality=quality, proxy_data=config.proxy.data,
        models=models,
    )


def _model_setting(config: CampaignConfig, quality: Any) -> dict[str, Any]:
    """The setting a learned quality model must have been fitted in: the quality context's, or (a model that
    needs no signal: its features are the choices) the campaign's space at its proxy scale."""
    from vidnas.proxies import ProxyScale
    from vidnas.runners._quality import quality_setting

    if quality is not None:
        return quality_setting(quality.describe())
    real = {k: getattr(config.space, k) for k in ("frames", "height", "width", "width_mult")}
    s = config.proxy.scale
    scaled = ProxyScale(s.frames, s.height, s.width, s.width_mult).space(config.space.name, real)
    return {"space": config.space.name, "space_shape": dict(scaled.shape), "data": config.proxy.data}
