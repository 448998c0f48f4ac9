"""Campaign metrics as typed objects: what each one is, what it costs, and which way is better.

A campaign names its metrics as strings (``latency_ms``, ``proxy:synflow``,
``ensemble:path/summary.json``); :func:`parse_metric` turns each into a :class:`Metric` once,
and every part of vidnas asks the object rather than the string's prefix.

Two cost classes decide the order of work:

* **cheap**: closed form from the architecture alone, millions per second vectorised
  (:mod:`vidnas.runners._cheap`): latency from the table or the roofline (``latency_ms``,
  milliseconds per network call), ``video_ms`` (milliseconds per generated video: steps x calls
  per step x per-call latency), ``memory_bytes`` (weights plus peak activations of one call,
  bytes), ``params`` (count), ``flops`` (per call, ``torch.utils.flop_counter``'s convention);
* **expensive**: computed by running the network (``proxy:NAME``: a registered proxy,
  zero-cost, one-shot supernet or short training; ``ensemble:SUMMARY.json``: the calibrated
  ensemble of proxies a calibration chose; ``quality:MODEL.json``: a learned quality model fitted
  by ``vidnas proxies fit``, the predicted rank of the ground truth, lower is better).

The driver computes cheap metrics first: an architecture that breaks a constraint the cheap
metrics decide is never given an expensive evaluation (:mod:`vidnas.runners._screen`).
Constraints are upper bounds, allowed on cheap metrics only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from vidnas._errors import SpecError

__all__ = ["CHEAP", "CHEAP_METRICS", "ENSEMBLE_PREFIX", "EXPENSIVE", "PROXY_PREFIX", "QUALITY_PREFIX", "Metric",
           "parse_metric", "proxies_of"]

CHEAP = "cheap"
EXPENSIVE = "expensive"
PROXY_PREFIX = "proxy:"
ENSEMBLE_PREFIX = "ensemble:"
QUALITY_PREFIX = "quality:"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of a campaign (see the module docstring)."""

    name: str  # as written in a config: the key of trial attributes and objective columns
    kind: str  # latency | video | memory | count | proxy | ensemble | quality
    cost: str  # cheap | expensive
    better: str | None  # lower | higher | None (no natural sense: the campaign's direction decides)
    unit: str
    argument: str | None = None  # the proxy's name (proxy:NAME) or the summary's path (ensemble:PATH)

    @property
    def is_cheap(self) -> bool:
        return self.cost == CHEAP

    @property
    def proxy(self) -> str | None:
        """The registered proxy this metric is, if it is one."""
        return self.argument if self.kind == "proxy" else None

    @property
    def ensemble_path(self) -> str | None:
        return self.argument if self.kind == "ensemble" else None

    @property
    def model_path(self) -> str | None:
        """The learned quality model's JSON file (``quality:PATH``)."""
        return self.argument if self.kind == "quality" else None

    def __str__(self) -> str:
        return self.name


CHEAP_METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("latency_ms", "latency", CHEAP, "lower", "ms per call"),
    Metric("video_ms", "video", CHEAP, "lower", "ms per video"),
    Metric("memory_bytes", "memory", CHEAP, "lower", "bytes"),
    Metric("params", "count", CHEAP, "lower", "parameters"),
    Metric("flops", "count", CHEAP, "lower", "FLOPs per call"),
)}


def parse_metric(text: str, field: str = "metric", *, check: bool = True) -> Metric:
    """The :class:`Metric` named ``text``; a :class:`SpecError` naming ``field`` if it is none.

    ``check`` also verifies what the name points to: the proxy is registered, the ensemble's
    summary file exists (its contents are checked by ``runners._evaluate.load_ensemble``).
    """
    if not isinstance(text, str):
        raise SpecError(field, text, "must be a metric name")
    if text in CHEAP_METRICS:
        return CHEAP_METRICS[text]
    if text.startswith(PROXY_PREFIX):
        name = text[len(PROXY_PREFIX):]
        better = None
        if check:
            from vidnas.proxies import get_proxy, list_proxies

            if name not in list_proxies():
                raise SpecError(field, text, "names no registered proxy", f"known proxies: {list_proxies()}")
            better = "higher" if get_proxy(name).higher_is_better else "lower"
        return Metric(text, "proxy", EXPENSIVE, better, "proxy value", name)
    if text.startswith(ENSEMBLE_PREFIX):
        path = text[len(ENSEMBLE_PREFIX):]
        if check and not Path(path).is_file():
            raise SpecError(field, text, "names no calibration summary file",
                            "give the summary.json written by `vidnas proxies calibrate`")
        return Metric(text, "ensemble", EXPENSIVE, "higher", "signed sum of percentiles", path)
    if text.startswith(QUALITY_PREFIX):
        path = text[len(QUALITY_PREFIX):]
        if check:
            from vidnas.proxies import packaged_models, resolve_model

            if not resolve_model(path).is_file():
                raise SpecError(field, text, "names no quality model file nor a model shipped with vidnas",
                                f"give the JSON file written by `vidnas proxies fit --out`, or one of "
                                f"{sorted(packaged_models())}")
        return Metric(text, "quality", EXPENSIVE, "lower", "predicted truth rank (0 best, 1 worst)", path)
    raise SpecError(field, text, "is not a metric",
                    f"use one of {list(CHEAP_METRICS)}, proxy:NAME, ensemble:SUMMARY.json or quality:MODEL.json")


def proxies_of(metrics: Iterable[Metric], ensembles: dict[str, dict] | None = None,
               models: dict[str, dict] | None = None) -> list[str]:
    """The registered proxies to compute for ``metrics``: their own and, for ensembles and learned models,
    their members' (``ensembles`` / ``models`` map a file's path to its loaded contents). Sorted, each once."""
    names: set[str] = set()
    for m in metrics:
        if m.proxy is not None:
            names.add(m.proxy)
        elif m.ensemble_path is not None and ensembles is not None:
            names |= {member["proxy"] for member in ensembles[m.ensemble_path]["ensemble"]["members_all_data"]}
        elif m.model_path is not None and models is not None:
            names |= set(models[m.model_path]["signals"])
    return sorted(names)
