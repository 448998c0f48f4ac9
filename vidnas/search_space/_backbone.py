"""What every backbone family's configuration offers the rest of vidnas (no torch).

A backbone is the fixed part of an architecture: a latent video UNet (``unet``), a video
diffusion transformer (``dit``), or any family registered later. Each family's backbone
is a frozen dataclass deriving from :class:`Backbone`; the rest of vidnas reads only the
properties declared here, never a family's own fields:

* the latent video it denoises: ``frames`` x ``latent_height`` x ``latent_width`` with
  ``latent_channels`` channels, plus ``condition_channels`` extra input channels
  (image-to-video conditioning) and ``output_channels`` predicted (``latent_channels`` or
  more, e.g. a learnt variance);
* the autoencoder that maps it to pixels: ``vae_scale_factor`` (space) and
  ``vae_temporal_factor`` (time; a causal video VAE keeps the first frame alone, so
  ``pixel_frames = (frames - 1) * factor + 1``);
* its conditioning: ``context_dim`` x ``context_tokens`` tokens (0: none) and
  ``num_added_time_ids`` extra scalars (SVD's fps, motion bucket, noise augmentation);
* its slots (:meth:`slots`), validation with field-naming errors, JSON round trip, and
  resizing to another clip length, pixel size or width (:meth:`resized`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from vidnas._errors import SpecError
from vidnas.search_space._registry import SlotShape

__all__ = ["Backbone", "SlotInfo"]


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    """A slot of a backbone and the shape it offers the op placed in it."""

    name: str
    stage: str  # unet: down | mid | up; dit: block
    level: int  # unet: resolution level; dit: block index
    block: int
    position: str  # unet: res | attn; dit: attn | temporal | ff ...
    shape: SlotShape


class Backbone:
    """Base of every family's backbone dataclass. Subclasses are frozen dataclasses."""

    family: ClassVar[str] = ""

    # Fields every family has (declared by the subclasses as dataclass fields):
    frames: int
    latent_height: int
    latent_width: int
    vae_scale_factor: int

    # Properties with defaults a family may override ---------------------------------------

    @property
    def vae_temporal_factor(self) -> int:
        return 1

    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    @property
    def condition_channels(self) -> int:
        return 0

    @property
    def output_channels(self) -> int:
        return self.latent_channels

    @property
    def input_channels(self) -> int:
        return self.latent_channels + self.condition_channels

    @property
    def context_dim(self) -> int:
        return 0

    @property
    def context_tokens(self) -> int:
        return 0

    @property
    def num_added_time_ids(self) -> int:
        return 0

    @property
    def pixel_frames(self) -> int:
        factor = self.vae_temporal_factor
        return self.frames if factor == 1 else (self.frames - 1) * factor + 1

    @property
    def pixel_height(self) -> int:
        return self.latent_height * self.vae_scale_factor

    @property
    def pixel_width(self) -> int:
        return self.latent_width * self.vae_scale_factor

    # What a family implements ------------------------------------------------------------

    def slots(self) -> list[SlotInfo]:
        raise NotImplementedError

    def validate(self, field: str = "backbone") -> None:
        raise NotImplementedError

    def resized(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
                width_mult: float | None = None) -> Backbone:
        """The same backbone at ``frames`` (pixel frames), ``height`` x ``width`` pixels and channels
        scaled by ``width_mult``; errors name the option and the pixel value."""
        raise NotImplementedError

    # Shared plumbing ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str = "backbone") -> Backbone:
        """Parse and validate, naming the first wrong field; unknown keys are refused."""
        from vidnas._coerce import coerce_field

        if not isinstance(data, Mapping):
            raise SpecError(field, data, "must be an object")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise SpecError(f"{field}.{key}", value, f"is not a field of a `{cls.family}` backbone",
                                f"known fields: {sorted(known)}")
            kwargs[key] = coerce_field(known[key], value, f"{field}.{key}")
        spec = cls(**kwargs)
        spec.validate(field)
        return spec

    def size_changes(self, *, frames: int | None, height: int | None, width: int | None,
                     width_mult: float | None, pixel_step: tuple[int, int] | None = None) -> dict[str, Any]:
        """The field changes common to every family's :meth:`resized`: latent frames, and latent rows and
        columns from pixels (multiples of ``pixel_step``, default the autoencoder factor); checks
        ``width_mult`` (the family applies it). Errors name the option and the pixel value."""
        changes: dict[str, Any] = {}
        if width_mult is not None and not 0 < width_mult <= 4:
            raise SpecError("width_mult", width_mult, "must be in (0, 4]")
        if frames is not None:
            changes["frames"] = self.pixel_frames_to_latent(frames)
        factor = self.vae_scale_factor
        steps = pixel_step or (factor, factor)
        for (key, value), step in zip((("height", height), ("width", width)), steps):
            if value is None:
                continue
            if value < 1 or value % step:
                what = f"the autoencoder factor {factor}" if step == factor else f"{step} (autoencoder factor " \
                    f"{factor} x patch {step // factor})"
                raise SpecError(key, value, f"must be a positive multiple of {what} (pixels)")
            changes[f"latent_{key}"] = value // factor
        return changes

    def pixel_frames_to_latent(self, frames: int, field: str = "frames") -> int:
        """Latent frames for ``frames`` decoded frames, or an error naming the nearest valid counts."""
        if frames < 1:
            raise SpecError(field, frames, "must be >= 1")
        factor = self.vae_temporal_factor
        if factor == 1:
            return frames
        if (frames - 1) % factor:
            lower = (frames - 1) // factor * factor + 1
            raise SpecError(field, frames, f"is not 1 + a multiple of the autoencoder's temporal factor {factor}",
                            f"use {lower} or {lower + factor} frames")
        return (frames - 1) // factor + 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
