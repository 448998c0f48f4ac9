"""The pretrained spatial backbone every candidate of a space starts from (SnapGen-V's protocol).

A space's *image network* is its base spec with every slot set to ``none`` (no temporal
layers: each frame is denoised on its own). It is trained once as an image denoiser on the
frames of the training clips, cached by the image network's ``arch_id``, the data and the
training settings, in safetensors (no pickle), and reused by every candidate, by the ground
truth and by the supernet: a candidate takes the backbone's weights for every unit the two
share and keeps its own slot layers at their identity initialisation.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidnas._cache import cache_dir, config_hash
from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, build_network, build_plan, module_key

__all__ = ["PretrainConfig", "PretrainedBackbone", "image_spec", "pretrain_backbone"]

FORMAT = "vidnas.pretrained_backbone"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """How the image network is trained."""

    steps: int = 1500
    batch_size: int = 8
    lr: float = 2e-3  # AdamW, cosine-decayed to a tenth
    train_clips: int = 512
    data: str = "shapes"
    objects: int = 2
    data_seed: int = 0
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_clips"):
            if getattr(self, name) < 1:
                raise SpecError(f"pretrain.{name}", getattr(self, name), "must be >= 1")
        if self.lr <= 0:
            raise SpecError("pretrain.lr", self.lr, "must be > 0")

    def key(self) -> dict[str, Any]:
        """What determines the weights (threads do not)."""
        data = dataclasses.asdict(self)
        data.pop("threads")
        return data


def image_spec(spec: ArchSpec) -> ArchSpec:
    """``spec`` with every slot ``none``: the spatial (image) network of its backbone."""
    return spec.replace_choices({s.name: "none" for s in spec.slots()})


@dataclasses.dataclass
class PretrainedBackbone:
    """Weights of an image network and what produced them."""

    image: ArchSpec
    state: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def backbone_id(self) -> str:
        return self.meta["backbone_id"]

    def load_into(self, net: torch.nn.Module, spec: ArchSpec) -> set[str]:
        """Copy the backbone's weights into ``net`` (built from ``spec``) for every unit the image
        network shares with it: all units that are not slots, and slots whose choice is the image
        network's. Returns the names of the parameters loaded."""
        if spec.backbone != self.image.backbone:
            raise SpecError("backbone", spec.arch_id, "does not share the pretrained backbone's configuration",
                            f"the backbone was trained for {self.image.arch_id}")
        shared_units = {module_key(p.name) for p in build_plan(spec)
                        if p.slot is None or spec.temporal[p.slot] == self.image.temporal[p.slot]}
        own = {**dict(net.named_parameters()), **dict(net.named_buffers())}
        loaded = set()
        with torch.no_grad():
            for name, value in self.state.items():
                unit = name.split(".")[1]
                if unit not in shared_units:
                    continue
                if name not in own or own[name].shape != value.shape:
                    raise SpecError("backbone", name, "does not fit the network built from the spec",
                                    "the pretrained weights belong to another backbone")
                own[name].copy_(value)
                loaded.add(name)
        return loaded

    def save(self, path: Path) -> Path:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        save_file({k: v.contiguous() for k, v in self.state.items()}, str(tmp),
                  metadata={"format": FORMAT, "meta": json.dumps(self.meta), "image": self.image.to_json()})
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(self.meta, indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> PretrainedBackbone:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        except Exception as exc:  # truncated or foreign files
            raise SpecError("backbone", str(path), f"cannot be read as pretrained weights ({exc})") from None
        if metadata.get("format") != FORMAT:
            raise SpecError("backbone", str(path), "is not a vidnas pretrained backbone")
        return cls(ArchSpec.from_json(metadata["image"]), state, json.loads(metadata["meta"]))


def backbone_path(image: ArchSpec, config: PretrainConfig) -> Path:
    return cache_dir() / "backbones" / f"{image.arch_id}-{config_hash(config.key())}.safetensors"


def pretrain_backbone(spec: ArchSpec, config: PretrainConfig | None = None, *, cache: bool = True,
                      progress: Callable[[int, int], None] | None = None) -> PretrainedBackbone:
    """The pretrained image network of ``spec``'s backbone: loaded from the cache, or trained now.

    ``progress(step, steps)`` is called during training.
    """
    from vidnas.proxies._data import iterate_batches
    from vidnas.proxies._denoise import DenoisingTask

    config = config or PretrainConfig()
    image = image_spec(spec)
    path = backbone_path(image, config)
    if cache and path.exists():
        return PretrainedBackbone.load(path)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    net = build_network(image).train()
    task = DenoisingTask(image, objects=config.objects, data=config.data)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    gen = torch.Generator().manual_seed(config.seed)
    data = iterate_batches(task.latent_dataset(config.train_clips, config.data_seed), config.batch_size,
                           seed=config.seed)
    started = time.perf_counter()
    losses = []
    for step in range(config.steps):
        loss = task.loss(net, next(data), gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress:
            progress(step + 1, config.steps)
    net.eval()
    heldout = task.heldout_batch(16, config.data_seed)
    tail = losses[-max(1, len(losses) // 10):]
    meta = {"backbone_id": f"{image.arch_id}-{config_hash(config.key())}", "image_arch_id": image.arch_id,
            "config": config.key(), "seconds": time.perf_counter() - started,
            "train_loss_last_10pct": sum(tail) / len(tail), "heldout_loss": task.fixed_loss(
                net, heldout, (50, 200, 400, 600, 800, 950)), "params": sum(p.numel() for p in net.parameters()),
            "torch_threads": torch.get_num_threads()}
    result = PretrainedBackbone(image, {k: v.detach().clone() for k, v in net.state_dict().items()}, meta)
    if cache:
        result.save(path)
    return result
