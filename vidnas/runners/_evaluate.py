"""Evaluating one trial's architecture: latency, memory, counts, proxies.

``evaluate`` is a plain function of picklable inputs, run inside Ray tasks (or in the
driver for tests). It fixes its own torch thread count: Ray reuses worker processes,
which keep the count of whatever task ran before. What it builds from its settings (the
latency predictor, the quality context, learned quality models) it keeps in an
:class:`EvalCache`, one per process, so later trials reuse it: the settings' own (the
driver's) unless the caller passes the process's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._stats import percentile
from vidnas.search_space import ArchSpec


class EvalCache:
    """What one process builds from :class:`EvalSettings` and reuses for every trial it evaluates.

    The latency predictor (from the table's rows), the quality context (the space at the proxy
    scale, the pretrained backbone and the supernet, loaded from their files) and the learned
    quality models, each built on first use and kept while the settings it came from stay the
    same (compared by content: a Ray task receives its settings unpickled anew). A cache pickles
    empty: each process that receives one (with :class:`EvalSettings`, or as a Ray task function's
    own, see ``runners._executors``) fills its own.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any]] = {}  # kind -> (key, value)

    def __reduce__(self):
        return (EvalCache, ())

    def get(self, kind: str, key: Any, build: Callable[[], Any]) -> Any:
        """The value of ``kind`` built for ``key`` (``build()`` when it is not the one kept)."""
        entry = self._entries.get(kind)
        if entry is None or entry[0] != key:
            entry = self._entries[kind] = (key, build())
        return entry[1]

    def predictor(self, settings: EvalSettings):
        """The latency predictor of the settings' table."""
        meta, rows = settings.table
        return self.get("predictor", (repr(meta), len(rows)), lambda: _load_predictor(meta, rows))

    def quality_model(self, path: str, data: dict[str, Any]):
        """The learned quality model stored at ``path`` (``data``: its stored dict)."""
        return self.get(f"model:{path}", repr(data), lambda: _load_model(data))

    def proxy_context(self, quality: Any) -> tuple[Any, Any, Any]:
        """``(space at the proxy scale, pretrained backbone, supernet or None)`` of ``quality``
        (:class:`~vidnas.runners._quality.QualitySettings`)."""
        from vidnas.runners._quality import load_proxy_context

        return self.get("proxy", repr(quality), lambda: load_proxy_context(quality))


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Everything a trial evaluation needs, in picklable form."""

    metrics: tuple[str, ...]  # objectives and constrained metrics to compute
    table: tuple[dict[str, Any], list[dict[str, Any]]] | None  # the latency table's (meta, rows)
    roofline: str | None
    roofline_dtype: str
    batch: int
    steps: int
    cfg: str
    proxy_clips: int
    proxy_seed: int
    proxy_train_steps: int
    threads: int
    ensembles: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # path -> calibration summary
    ensemble_rows: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    quality: Any = None  # QualitySettings: proxy scale, pretrained backbone, supernet (see _quality)
    proxy_data: str = "shapes"
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # path -> learned quality model
    # what this process built from these settings (the driver's, for local evaluations); pickles empty
    cache: EvalCache = dataclasses.field(default_factory=EvalCache, compare=False, repr=False)


def _load_predictor(meta: dict[str, Any], rows: list[dict[str, Any]]):
    from vidnas.latency_models import LatencyPredictor, LatencyTable, TableMeta

    return LatencyPredictor(LatencyTable(TableMeta(**{k: v for k, v in meta.items()
                                                      if k not in ("format", "version")}), rows))


def _load_model(data: dict[str, Any]):
    """A learned quality model from its stored dict."""
    from vidnas.proxies import QualityModel

    fields = {f.name for f in dataclasses.fields(QualityModel)}
    return QualityModel(**{k: v for k, v in data.items() if k in fields})


def latency_metrics(spec: ArchSpec, settings: EvalSettings, cache: EvalCache | None = None) -> dict[str, Any]:
    """Latency of ``spec`` per call and per video, and per slot: from the table, else the roofline.
    ``cache``: where the table's predictor is kept (default: the settings' own)."""
    from vidnas.latency_models import roofline_estimate, video_cost

    if settings.table is not None:
        predictor = (cache if cache is not None else settings.cache).predictor(settings)
        prediction = predictor.predict(spec, batch=settings.batch)
        video = video_cost(lambda b: prediction.ms if b == settings.batch else predictor.predict(spec, batch=b).ms,
                           steps=settings.steps, cfg=settings.cfg)
        slots = {r["slot"]: r["median_ms"] for r in prediction.slot_rows()}
        return {"latency_ms": prediction.ms, "latency_naive_ms": prediction.naive_ms, "video_ms": video["per_video_ms"],
                "slot_ms": slots, "latency_source": "table",
                "latency_untrusted_units": len(prediction.untrusted)}
    est = roofline_estimate(spec, settings.roofline, batch=settings.batch, dtype=settings.roofline_dtype)

    def per_call_ms(b: int) -> float:
        if b == settings.batch:
            return est["per_call_ms"]
        return roofline_estimate(spec, settings.roofline, batch=b, dtype=settings.roofline_dtype)["per_call_ms"]

    video = video_cost(per_call_ms, steps=settings.steps, cfg=settings.cfg)
    slots = {u["slot"]: u["estimate_ms"] for u in est["units"] if u["slot"] is not None}
    return {"latency_ms": est["per_call_ms"], "video_ms": video["per_video_ms"], "slot_ms": slots,
            "latency_source": f"roofline estimate ({settings.roofline})"}


def cheap_metrics(spec: ArchSpec, settings: EvalSettings, cache: EvalCache | None = None) -> dict[str, Any]:
    """The cheap metrics of one architecture (see :mod:`vidnas.runners._metrics`): latency from the
    table or the roofline (with ``video_ms`` and the per-slot breakdown), params, FLOPs and memory.

    Counts are per network call: at batch 2 when classifier-free guidance is batched.
    """
    from vidnas.search_space import ITEMSIZE, count_spec

    out: dict[str, Any] = {}
    if settings.table is not None or settings.roofline is not None:
        out.update(latency_metrics(spec, settings, cache))
    call_batch = 2 if settings.cfg == "batched" else settings.batch
    report = count_spec(spec, batch=call_batch)
    # memory_bytes: weights plus peak activations, as latency_models.memory_bytes (float32)
    out.update(params=report.params, flops=report.flops,
               memory_bytes=report.params * ITEMSIZE["float32"] + report.activation_bytes)
    return out


def evaluate(spec_json: str, settings: EvalSettings, cache: EvalCache | None = None) -> dict[str, Any]:
    """All metrics of one architecture, with the seconds each part took: the cheap ones first.

    ``cache``: the process's :class:`EvalCache` (default: the settings' own)."""
    import torch

    from vidnas.proxies import ProxyBatch, TrainConfig, get_proxy
    from vidnas.runners._metrics import ENSEMBLE_PREFIX, PROXY_PREFIX, QUALITY_PREFIX, parse_metric, proxies_of

    torch.set_num_threads(settings.threads)
    cache = cache if cache is not None else settings.cache
    start = time.perf_counter()
    spec = ArchSpec.from_json(spec_json)
    out: dict[str, Any] = {"arch_id": spec.arch_id, "op_counts": spec.op_counts()}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    out.update(cheap_metrics(spec, settings, cache))
    seconds["latency_and_counts"] = time.perf_counter() - t0
    metrics = [parse_metric(m, check=False) for m in settings.metrics]
    proxy_names = proxies_of(metrics, settings.ensembles, settings.models)
    ensemble_paths = [m.ensemble_path for m in metrics if m.ensemble_path is not None]
    model_paths = [m.model_path for m in metrics if m.model_path is not None]
    batch = None
    values: dict[str, float] = {}
    if proxy_names and settings.quality is not None:
        from vidnas.runners._quality import check_memory, proxy_spec

        t0 = time.perf_counter()
        proxy_space, backbone, supernet = cache.proxy_context(settings.quality)
        quality_spec = proxy_spec(spec, settings.quality, proxy_space)
        out["proxy_arch_id"] = quality_spec.arch_id
        seconds["proxy_setup"] = time.perf_counter() - t0
    else:
        quality_spec, backbone, supernet = spec, None, None
    train = TrainConfig(steps=settings.proxy_train_steps, data=settings.proxy_data)
    for name in proxy_names:
        if settings.quality is not None:
            check_memory(quality_spec, name, clips=settings.proxy_clips, train_batch=train.batch_size,
                         budget=settings.quality.memory_budget_bytes)
        if batch is None:
            batch = ProxyBatch.procedural(quality_spec, clips=settings.proxy_clips, seed=settings.proxy_seed,
                                          train=train, backbone=backbone, supernet=supernet)
        t0 = time.perf_counter()
        values[name] = get_proxy(name).compute(quality_spec, batch, settings.proxy_seed)
        seconds[PROXY_PREFIX + name] = time.perf_counter() - t0
        out[PROXY_PREFIX + name] = values[name]
    for path in ensemble_paths:
        summary = settings.ensembles[path]
        score = 0.0
        for member in summary["ensemble"]["members_all_data"]:
            population = settings.ensemble_rows[path][member["proxy"]]
            score += member["sign"] * percentile(values[member["proxy"]], population)
        out[ENSEMBLE_PREFIX + path] = score
    for path in model_paths:
        model = cache.quality_model(path, settings.models[path])
        out[QUALITY_PREFIX + path] = model.predict(quality_spec.to_json(), values)
    seconds["total"] = time.perf_counter() - start
    out["seconds"] = seconds
    return out


def load_ensemble(path: str) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """A calibration summary and, per member proxy, the values it saw (for percentiles).

    Both files are checked: ``summary.json`` (a ``vidnas.calibration`` object whose
    ``ensemble.members_all_data`` lists registered proxies with signs +-1) and, beside it,
    ``rows.parquet`` (a finite number per architecture in ``proxy.NAME`` for every member).
    Any problem is a :class:`SpecError` naming the file, the key and the value.
    """
    import math

    import pandas as pd

    from vidnas._errors import SpecError
    from vidnas.proxies import list_proxies

    summary_path = Path(path)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(str(summary_path), None, "does not exist",
                        "give the summary.json written by `vidnas proxies calibrate`") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(str(summary_path), None, f"is not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(summary, dict) or summary.get("format") != "vidnas.calibration":
        shown = summary.get("format") if isinstance(summary, dict) else type(summary).__name__
        raise SpecError(f"{summary_path}: format", shown, "is not a calibration summary",
                        "expected \"vidnas.calibration\" (written by `vidnas proxies calibrate`)")
    ensemble = summary.get("ensemble")
    members = ensemble.get("members_all_data") if isinstance(ensemble, dict) else None
    if not isinstance(members, list) or not members:
        raise SpecError(f"{summary_path}: ensemble.members_all_data", members, "must be a non-empty list of "
                                                                               "{proxy, sign}")
    known = list_proxies()
    for i, member in enumerate(members):
        where = f"{summary_path}: ensemble.members_all_data[{i}]"
        if not isinstance(member, dict):
            raise SpecError(where, member, "must be a mapping with `proxy` and `sign`")
        if member.get("proxy") not in known:
            raise SpecError(f"{where}.proxy", member.get("proxy"), "is not a registered proxy",
                            f"known proxies: {known}")
        if member.get("sign") not in (1, -1) or isinstance(member.get("sign"), bool):
            raise SpecError(f"{where}.sign", member.get("sign"), "must be 1 or -1")
    rows_path = summary_path.with_name("rows.parquet")
    try:
        rows = pd.read_parquet(rows_path)
    except FileNotFoundError:
        raise SpecError(str(rows_path), None, "does not exist", "the summary's rows.parquet must sit beside it") \
            from None
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise SpecError(str(rows_path), None, f"is not a readable Parquet file ({type(exc).__name__})") from None
    values: dict[str, list[float]] = {}
    for member in members:
        column = f"proxy.{member['proxy']}"
        if column not in rows.columns:
            raise SpecError(f"{rows_path}: {column}", None, "is missing", "calibrate with this proxy")
        try:
            values[member["proxy"]] = [float(v) for v in rows[column]]
        except (TypeError, ValueError):
            raise SpecError(f"{rows_path}: {column}", str(rows[column].dtype), "must hold numbers") from None
        if not values[member["proxy"]] or not all(math.isfinite(v) for v in values[member["proxy"]]):
            raise SpecError(f"{rows_path}: {column}", len(values[member["proxy"]]), "must hold finite numbers, "
                                                                                   "one per architecture")
    return summary, values
