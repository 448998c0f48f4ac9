"""The denoising objective on video clips, and short training with a fixed held-out evaluation.

The objective is DDPM's epsilon prediction: ``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`` with
a linear beta schedule over 1000 steps, loss ``mean((eps_theta(x_t, t) - eps)^2)``.
Clips become latents with :class:`FixedLatentEncoder`; backbones with more input than
output channels (SVD's image-to-video) get the first frame's latent as the extra
channels; cross-attention context comes from the clip's conditioning vector.

The held-out loss is evaluated on clips from another seed at fixed timesteps with
fixed noise, so two architectures are compared on exactly the same problems.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from vidnas._errors import SpecError
from vidnas.proxies._data import FixedLatentEncoder, ShapesConfig, ShapesDataset, condition_tokens, iterate_batches
from vidnas.search_space import ArchSpec

SVD_ADDED_TIME_IDS = (6.0, 127.0, 0.02)  # fps, motion bucket, noise augmentation


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Short training on procedural clips."""

    steps: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    train_clips: int = 256
    heldout_clips: int = 8
    eval_timesteps: tuple[int, ...] = (50, 200, 400, 600, 800, 950)
    objects: int = 2
    data_seed: int = 0
    threads: int | None = None
    videos: str | None = None  # a folder of the user's videos instead of procedural clips

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_clips", "heldout_clips"):
            if getattr(self, name) < 1:
                raise SpecError(f"train.{name}", getattr(self, name), "must be >= 1")
        if self.lr <= 0:
            raise SpecError("train.lr", self.lr, "must be > 0")
        if self.train_clips < self.batch_size:
            raise SpecError("train.train_clips", self.train_clips, f"must be >= batch_size={self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval_timesteps": list(self.eval_timesteps)}


class DenoisingTask:
    """The denoising problem for one backbone: data shape, latent map, noise schedule."""

    def __init__(self, spec: ArchSpec, *, objects: int = 2, timesteps: int = 1000, videos: str | None = None) -> None:
        bb = spec.backbone
        self.spec = spec
        self.videos = videos
        self.data = ShapesConfig(frames=bb.frames, height=bb.pixel_height, width=bb.pixel_width, objects=objects)
        self.encoder = FixedLatentEncoder(bb.out_channels, bb.vae_scale_factor)
        betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()
        self.timesteps = timesteps

    def dataset(self, length: int, seed: int, *, held_out: bool = False):
        """``length`` procedural clips of ``seed``; with ``videos``, the user's clips instead:
        the first 80 % for training, the rest when ``held_out``."""
        if self.videos is None:
            return ShapesDataset(length, self.data, seed)
        return self.video_split(held_out=held_out)

    def video_split(self, *, held_out: bool):
        from torch.utils.data import Subset

        from vidnas.proxies._data import VideoFolderDataset

        if not hasattr(self, "_videos"):  # opened once per task, on first use
            self._videos = VideoFolderDataset(self.videos, frames=self.data.frames, height=self.data.height,
                                              width=self.data.width, objects=self.data.objects)
        n = len(self._videos)
        if n < 2:
            raise SpecError("videos", self.videos, f"yields {n} clip(s); at least 2 are needed (train and held out)")
        cut = max(1, int(0.8 * n))
        return Subset(self._videos, range(cut, n) if held_out else range(cut))

    def model_inputs(self, batch: dict[str, torch.Tensor], timesteps: torch.Tensor, noise: torch.Tensor,
                     *, shuffle: torch.Tensor | None = None) -> tuple[tuple, torch.Tensor]:
        """``(net arguments, target noise)`` for a batch at ``timesteps`` with ``noise``.

        ``shuffle`` (a permutation of frames) reorders the clip's frames first.
        """
        bb = self.spec.backbone
        x0 = self.encoder.encode(batch["pixels"])
        if shuffle is not None:
            x0 = x0[:, shuffle]
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        extra = bb.in_channels - bb.out_channels
        if extra > 0:  # image-to-video: the first frame's latent on every frame
            first = x0[:, :1].expand_as(x0)
            reps = -(-extra // bb.out_channels)
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

    def loss(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator,
             *, shuffle: torch.Tensor | None = None) -> torch.Tensor:
        n = batch["pixels"].shape[0]
        bb = self.spec.backbone
        timesteps = torch.randint(0, self.timesteps, (n,), generator=generator)
        noise = torch.randn(n, bb.frames, bb.out_channels, bb.latent_height, bb.latent_width, generator=generator)
        args, target = self.model_inputs(batch, timesteps, noise, shuffle=shuffle)
        return torch.nn.functional.mse_loss(net(*args), target)

    @torch.no_grad()
    def fixed_loss(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], timesteps: tuple[int, ...],
                   *, noise_seed: int = 0, shuffle: torch.Tensor | None = None) -> float:
        """Mean loss over ``timesteps`` with noise fixed by ``noise_seed``: the same problems every time."""
        bb = self.spec.backbone
        n = batch["pixels"].shape[0]
        gen = torch.Generator().manual_seed(noise_seed)
        losses = []
        for t in timesteps:
            noise = torch.randn(n, bb.frames, bb.out_channels, bb.latent_height, bb.latent_width, generator=gen)
            args, target = self.model_inputs(batch, torch.full((n,), t), noise, shuffle=shuffle)
            losses.append(float(torch.nn.functional.mse_loss(net(*args), target)))
        return sum(losses) / len(losses)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a short training run measured."""

    arch_id: str
    seed: int
    steps: int
    train_losses: tuple[float, ...]
    heldout_loss: float  # fixed timesteps and noise, clips of another seed
    heldout_shuffled_loss: float  # the same clips with their frames shuffled
    seconds: float

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
                "seconds": self.seconds}


def frame_shuffle(frames: int, seed: int = 1) -> torch.Tensor:
    """A fixed permutation of frames that moves every frame (when frames > 1)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(frames, generator=gen)
        if frames == 1 or bool((perm != torch.arange(frames)).all()):
            return perm


def short_train(spec: ArchSpec, config: TrainConfig | None = None, *, seed: int = 0) -> TrainResult:
    """Train ``spec`` from scratch for ``config.steps`` steps; return losses and the held-out loss."""
    from vidnas.search_space import build_network

    config = config or TrainConfig()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    task = DenoisingTask(spec, objects=config.objects, videos=config.videos)
    net = build_network(spec).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    data = iterate_batches(task.dataset(config.train_clips, config.data_seed), config.batch_size, seed=seed)
    start = time.perf_counter()
    losses = []
    for _ in range(config.steps):
        loss = task.loss(net, next(data), gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    net.eval()
    heldout_set = task.dataset(config.heldout_clips, config.data_seed + 1, held_out=True)
    size = min(config.heldout_clips, len(heldout_set))
    heldout = next(iterate_batches(heldout_set, size, seed=0))
    ordered = task.fixed_loss(net, heldout, config.eval_timesteps)
    shuffled = task.fixed_loss(net, heldout, config.eval_timesteps, shuffle=frame_shuffle(spec.backbone.frames))
    return TrainResult(spec.arch_id, seed, config.steps, tuple(losses), ordered, shuffled,
                       time.perf_counter() - start)
