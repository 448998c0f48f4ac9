"""The proxy registry: quality estimates for an untrained architecture, cheapest first.

A proxy is a pure function ``fn(spec, batch, seed) -> float`` registered once with its
kind (``count``, ``zero_cost``, ``temporal``, ``one_shot``, ``training``), its orientation
(``higher_is_better``: the direction the proxy *claims* predicts quality; calibration
reports whether it does), a word on its cost, and what it needs beyond clips
(``requires``: ``backbone`` for the pretrained spatial backbone, ``supernet`` for a trained
supernet of the space), which the :class:`ProxyBatch` carries. ``uses_backbone``: whether the
proxy sees the pretrained backbone when the batch carries one (training and one-shot proxies,
and any that requires it); the others always see the network at its random initialisation, so a
proxy means the same in a calibration (which pretrains the backbone for its truth) and in a
campaign (which pretrains it only for the proxies that use it). Third-party packages register
proxies through the ``vidnas.proxies`` entry point group (see :mod:`vidnas._plugins`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Callable
from typing import Any

import torch

from vidnas._errors import SpecError
from vidnas._registry import Registry
from vidnas.proxies._data import FixedLatentEncoder  # noqa: F401  (re-exported for proxies)
from vidnas.proxies._denoise import DenoisingTask, TrainConfig, iterate_batches
from vidnas.search_space import ArchSpec

KINDS = ("count", "zero_cost", "temporal", "one_shot", "training")
REQUIREMENTS = ("backbone", "supernet")


@dataclasses.dataclass(frozen=True)
class ProxyBatch:
    """What a proxy may use: a few clips, how training proxies train, and (when available) the
    pretrained backbone candidates start from and the space's trained supernet."""

    clips: dict[str, torch.Tensor]  # pixels (N, T, 3, H, W) in [-1, 1]; condition (N, F)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=20))
    backbone: Any = None  # a PretrainedBackbone
    supernet: Any = None  # a trained Supernet of the candidate's space

    @classmethod
    def procedural(cls, spec: ArchSpec, *, clips: int = 4, seed: int = 0, train: TrainConfig | None = None,
                   backbone: Any = None, supernet: Any = None) -> ProxyBatch:
        """``clips`` training clips at the spec's frames and resolution from ``train.data``."""
        train = train or TrainConfig(steps=20)
        data = DenoisingTask(spec, data=train.data).dataset(clips, seed + 101)
        batch = next(iterate_batches(data, min(clips, len(data)), seed=seed))
        return cls(batch, train, backbone, supernet)


ProxyFn = Callable[[ArchSpec, ProxyBatch, int], float]


@dataclasses.dataclass(frozen=True)
class ProxyDef:
    name: str
    fn: ProxyFn
    kind: str
    higher_is_better: bool
    summary: str
    cost: str
    requires: tuple[str, ...] = ()
    uses_backbone: bool = False

    def compute(self, spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
        """The proxy's value, the batch's backbone hidden from a proxy that does not use it."""
        if not self.uses_backbone and batch.backbone is not None:
            batch = dataclasses.replace(batch, backbone=None)
        return float(self.fn(spec, batch, seed))


PROXIES: Registry[ProxyDef] = Registry("vidnas.proxies", "proxy", field="proxy")


def register_proxy(name: str, *, kind: str, higher_is_better: bool, summary: str,
                   cost: str, requires: tuple[str, ...] = (), uses_backbone: bool | None = None
                   ) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator registering ``fn(spec, batch, seed) -> float`` as proxy ``name``.

    ``uses_backbone`` defaults to True for ``training`` and ``one_shot`` proxies and those that
    require the backbone or a supernet."""
    if kind not in KINDS:
        raise SpecError("kind", kind, "is not a proxy kind", f"choose one of {list(KINDS)}")
    for need in requires:
        if need not in REQUIREMENTS:
            raise SpecError("requires", need, "is not something a proxy batch carries",
                            f"choose from {list(REQUIREMENTS)}")

    def decorate(fn: ProxyFn) -> ProxyFn:
        uses = (kind in ("training", "one_shot") or bool(set(requires) & {"backbone", "supernet"})
                if uses_backbone is None else uses_backbone)
        PROXIES.register(name, ProxyDef(name, fn, kind, higher_is_better, summary, cost, tuple(requires), uses),
                         module=getattr(fn, "__module__", None))
        return fn

    return decorate


def get_proxy(name: str, field: str = "proxy") -> ProxyDef:
    return PROXIES.get(name, field)


def list_proxies(pattern: str = "*", kind: str | None = None) -> list[str]:
    return [n for n, p in PROXIES.items() if fnmatch.fnmatch(n, pattern) and (kind is None or p.kind == kind)]


def score(spec: ArchSpec, names: list[str], batch: ProxyBatch | None = None, *, seed: int = 0
          ) -> dict[str, dict[str, Any]]:
    """Every named proxy's value and the seconds it took."""
    batch = batch or ProxyBatch.procedural(spec, seed=seed)
    out = {}
    for name in names:
        proxy = get_proxy(name)
        missing = [need for need in proxy.requires if getattr(batch, need) is None]
        if missing:
            raise SpecError("proxy", name, f"needs a {missing[0]} that was not given",
                            "train or load it first (`vidnas proxies supernet`; or pass --supernet DIR)")
        start = time.perf_counter()
        value = proxy.compute(spec, batch, seed)
        out[name] = {"value": value, "seconds": time.perf_counter() - start, "kind": proxy.kind,
                     "higher_is_better": proxy.higher_is_better}
    return out
