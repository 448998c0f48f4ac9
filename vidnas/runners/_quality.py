"""A campaign's quality signal: the proxy scale, the pretrained backbone and the supernet, prepared once.

Before its trials, a campaign whose objectives or constraints name proxies prepares, in the
driver: the proxy scale (stated in the config, or chosen to fit ``proxy.memory_budget_bytes``
and ``proxy.seconds_budget``; see ``vidnas.proxies.choose_scale``), the space's pretrained spatial backbone
at that scale, and, for ``proxy:supernet`` / ``proxy:supernet_ft``, the space's trained
supernet (both cached, so a second campaign reuses them). Trials receive file paths
(:class:`QualitySettings`, picklable) and each worker process loads them once (its
:class:`~vidnas.runners._evaluate.EvalCache` keeps what :func:`load_proxy_context` loaded).

A trial's architecture is evaluated for latency at its real shape; its quality at the proxy
scale: the same op and searched parameters at every slot group, on the space rebuilt at that
scale. Before a proxy runs, the memory it will need is predicted from the counts; an
evaluation over ``proxy.memory_budget_bytes`` is refused with a message naming the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, SearchSpace, get_space

__all__ = ["QualitySettings", "load_proxy_context", "prepare_quality", "proxy_spec", "quality_setting"]


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """Everything a trial needs to compute quality signals at the proxy scale (picklable)."""

    space: str
    real_shape: dict[str, Any]
    scale: dict[str, Any]  # ProxyScale fields
    scale_choice: dict[str, Any] | None  # how an automatic scale was chosen
    data: str
    pretrain: dict[str, Any] | None  # PretrainConfig fields, when a proxy uses the pretrained backbone
    backbone_path: str | None
    supernet: dict[str, Any] | None  # SupernetConfig fields, when a supernet signal is used
    supernet_path: str | None
    memory_budget_bytes: float

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _needs(proxies: list[str]) -> tuple[list[str], bool]:
    """The proxies that see the pretrained backbone (none: nothing to prepare), and whether one needs
    the supernet."""
    from vidnas.proxies import get_proxy

    using = [p for p in proxies if get_proxy(p).uses_backbone]
    return using, any("supernet" in get_proxy(p).requires for p in using)


def prepare_quality(config, proxies: list[str], log: Callable[[str], None] = lambda m: None
                    ) -> QualitySettings | None:
    """Choose the proxy scale, pretrain the backbone and train the supernet (cached) for ``config``.

    ``proxies``: the registered proxies the campaign computes (``runners._metrics.proxies_of``)."""
    from vidnas.proxies import (
        PretrainConfig,
        ProxyScale,
        SupernetConfig,
        backbone_path,
        choose_scale,
        pretrain_backbone,
        scale_summary,
        supernet_dir,
        train_supernet,
    )

    if not proxies:
        return None
    using, needs_supernet = _needs(list(proxies))
    p = config.proxy
    real = {k: getattr(config.space, k) for k in ("frames", "height", "width", "width_mult")}
    s = p.supernet
    supernet_config = SupernetConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, sampling=s.sampling,
                                     data=p.data, seed=p.seed, finetune_steps=s.finetune_steps,
                                     heldout_clips=s.heldout_clips)
    choice = None
    if p.scale.auto:
        choice = choose_scale(config.space.name, real, memory_budget_bytes=p.memory_budget_bytes,
                              seconds_budget=p.seconds_budget, steps=supernet_config.steps + p.pretrain_steps,
                              batch_size=supernet_config.batch_size)
        scale = choice.scale
        log(scale_summary(choice))
    else:
        scale = ProxyScale(frames=p.scale.frames, height=p.scale.height, width=p.scale.width,
                           width_mult=p.scale.width_mult)
    space = scale.space(config.space.name, real)
    pretrain = path = supernet_path = None
    if using:  # only training and one-shot proxies see the pretrained backbone
        pretrain = PretrainConfig(steps=p.pretrain_steps, data=p.data, seed=p.seed)
        path = backbone_path(space.base.replace_choices({s.name: "none" for s in space.base.slots()}), pretrain)
        log(f"pretrained backbone: {path} ({'cached' if path.exists() else 'training now'})")
        backbone = pretrain_backbone(space.base, pretrain,
                                     progress=lambda i, n: log(f"backbone step {i}/{n}") if i % 100 == 0 else None)
        if needs_supernet:
            directory = supernet_dir(space, supernet_config, backbone)
            log(f"supernet: {directory} ({'resuming' if directory.exists() else 'training now'})")
            train_supernet(space, backbone, supernet_config, out=directory,
                           progress=lambda i, n: log(f"supernet step {i}/{n}") if i % 100 == 0 else None)
            supernet_path = str(directory)
    return QualitySettings(space=config.space.name, real_shape=real, scale=scale.to_dict(),
                           scale_choice=choice.to_dict() if choice else None, data=p.data,
                           pretrain=pretrain.key() if pretrain else None, backbone_path=str(path) if path else None,
                           supernet=supernet_config.to_dict() if needs_supernet else None,
                           supernet_path=supernet_path, memory_budget_bytes=p.memory_budget_bytes)


def quality_setting(record: dict[str, Any]) -> dict[str, Any]:
    """The setting quality is computed in (``QualitySettings.describe()``, as campaign.json stores it), in the
    terms of ``vidnas.proxies.calibration_setting``: space and shape at the proxy scale, data,
    backbone pretraining, supernet."""
    from vidnas.proxies import ProxyScale, supernet_setting

    space = ProxyScale(**record["scale"]).space(record["space"], record["real_shape"])
    return {"space": record["space"], "space_shape": dict(space.shape), "data": record["data"],
            "pretrain": record["pretrain"], "supernet": supernet_setting(record.get("supernet"))}


def load_proxy_context(settings: QualitySettings) -> tuple[SearchSpace, Any, Any]:
    """``(space at the proxy scale, pretrained backbone, supernet or None)``, loaded from their files
    (a process keeps them in its :class:`~vidnas.runners._evaluate.EvalCache`)."""
    from pathlib import Path

    from vidnas.proxies import PretrainedBackbone, ProxyScale, SupernetConfig, load_supernet

    space = ProxyScale(**settings.scale).space(settings.space, settings.real_shape)
    backbone = PretrainedBackbone.load(Path(settings.backbone_path)) if settings.backbone_path else None
    supernet = None
    if settings.supernet_path is not None:
        supernet = load_supernet(settings.supernet_path, space, backbone, SupernetConfig.from_dict(settings.supernet))
    return space, backbone, supernet


def proxy_spec(spec: ArchSpec, settings: QualitySettings, proxy_space: SearchSpace) -> ArchSpec:
    """``spec`` (at the campaign's real shape) at the proxy scale: the same choices per slot group."""
    real_space = get_space(settings.space, **{k: v for k, v in settings.real_shape.items() if v is not None})
    if spec.backbone == proxy_space.base.backbone:
        return spec
    params = real_space.params_of(spec)

    class Fixed:
        def suggest_categorical(self, name: str, choices):
            if name not in params:
                raise SpecError("trial", name, "is missing from the trial's parameters")
            return params[name]

    return proxy_space.sample(Fixed())


def check_memory(spec: ArchSpec, proxy: str, *, clips: int, train_batch: int, budget: float) -> int:
    """Predicted bytes of ``proxy`` on ``spec``; a :class:`SpecError` naming the budget if over it."""
    from vidnas.proxies import evaluation_bytes, get_proxy

    kind = get_proxy(proxy).kind
    if kind == "count":
        return 0
    if kind == "one_shot":
        need = evaluation_bytes(spec, clips=clips, training=proxy.endswith("_ft"))
    else:
        need = evaluation_bytes(spec, clips=max(clips, train_batch), training=True)
    if need > budget:
        raise SpecError("proxy.memory_budget_bytes", budget,
                        f"is below the {need / 2**30:.2f} GiB that proxy `{proxy}` is predicted to need on "
                        f"{spec.arch_id} at the proxy scale; it was not started",
                        "lower the proxy scale (proxy.scale) or raise the budget")
    return need
