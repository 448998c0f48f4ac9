"""The latent video UNet's backbone (the SVD family): levels, channels, blocks, slots (no torch).

Slots are named ``{stage}.{level}.{block}.{position}``:

* ``stage``: ``down``, ``mid`` or ``up``;
* ``level``: resolution level, 0 the finest (the mid block is at the last level);
* ``block``: index of the residual block in that stage and level;
* ``position``: ``res`` (after the residual block) or ``attn`` (inside the spatial
  transformer, between its spatial block and its output projection, as in SVD).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from vidnas._errors import SpecError
from vidnas.search_space._backbone import Backbone, SlotInfo
from vidnas.search_space._registry import SlotShape

__all__ = ["BackboneSpec"]

POSITIONS = ("res", "attn")
NORM_EPS = 1e-5  # GroupNorm epsilon (torch's default)
RESNET_EPS_ATTENTION = 1e-6  # residual blocks of attention down levels and of the up path (see resnet_eps)


@dataclasses.dataclass(frozen=True)
class BackboneSpec(Backbone):
    """A latent video UNet (the SVD family). One entry per resolution level where a tuple."""

    family: ClassVar[str] = "unet"

    channels: tuple[int, ...] = (320, 640, 1280, 1280)  # block width per level
    layers_per_block: tuple[int, ...] = (2, 2, 2, 2)  # residual blocks per level going down (up: +1)
    attention: tuple[bool, ...] = (True, True, True, False)  # spatial transformer after each block of the level
    in_channels: int = 8  # latent channels in (SVD: noisy latent + conditioning-image latent)
    out_channels: int = 4  # latent channels predicted
    head_dim: int = 64  # width of a spatial attention head
    cross_attention_dim: int = 1024  # width of conditioning tokens; 0 = no cross-attention
    context_tokens: int = 1  # conditioning tokens per clip (SVD: 1 CLIP image embedding)
    mid_attention: bool = True  # spatial transformer in the mid block
    norm_groups: int = 32  # GroupNorm groups throughout
    addition_time_embed_dim: int = 0  # width of each extra conditioning scalar's embedding (SVD: 256)
    num_added_time_ids: int = 0  # extra conditioning scalars (SVD: fps, motion bucket, noise aug = 3)
    frames: int = 14  # frames per clip
    latent_height: int = 72  # latent rows (pixels / vae_scale_factor)
    latent_width: int = 128  # latent columns
    vae_scale_factor: int = 8  # pixels per latent cell of the autoencoder (recorded, not built)

    # The properties every family offers (see ``_backbone``) -----------------------------

    @property
    def latent_channels(self) -> int:
        return self.out_channels

    @property
    def condition_channels(self) -> int:
        return self.in_channels - self.out_channels

    @property
    def output_channels(self) -> int:
        return self.out_channels

    @property
    def input_channels(self) -> int:
        return self.in_channels

    @property
    def context_dim(self) -> int:
        return self.cross_attention_dim

    # UNet geometry ---------------------------------------------------------------------------

    @property
    def num_levels(self) -> int:
        return len(self.channels)

    @property
    def temb_channels(self) -> int:
        return 4 * self.channels[0]

    def level_size(self, level: int) -> tuple[int, int]:
        """Latent (height, width) at ``level``."""
        return self.latent_height >> level, self.latent_width >> level

    def resnet_eps(self, stage: str, level: int) -> float:
        """GroupNorm epsilon of the residual blocks (spatial and temporal) of ``stage`` at ``level``.

        diffusers' ``UNetSpatioTemporalConditionModel`` builds the blocks of its
        cross-attention down levels and of every up level with 1e-6, the others (down levels
        without attention, the mid block) with 1e-5; the family follows it so that the same
        weights compute the same function.
        """
        return RESNET_EPS_ATTENTION if stage == "up" or (stage == "down" and self.attention[level]) else NORM_EPS

    def slot_shape(self, level: int, position: str = "res", stage: str = "down") -> SlotShape:
        height, width = self.level_size(level)
        eps = self.resnet_eps(stage, level) if position == "res" else NORM_EPS
        return SlotShape(
            channels=self.channels[level],
            frames=self.frames,
            height=height,
            width=width,
            temb_channels=self.temb_channels,
            context_dim=self.cross_attention_dim or None,
            context_tokens=self.context_tokens if self.cross_attention_dim else None,
            norm_groups=self.norm_groups,
            head_dim=self.head_dim,
            channels_last=position == "attn",
            # A temporal residual block normalises like the residual block it follows.
            extras=(("norm_eps", eps),) if eps != NORM_EPS else (),
        )

    def slots(self) -> list[SlotInfo]:
        """Every temporal slot in execution order."""
        out: list[SlotInfo] = []
        last = self.num_levels - 1

        def add(stage: str, level: int, block: int, with_attn: bool) -> None:
            out.append(SlotInfo(f"{stage}.{level}.{block}.res", stage, level, block, "res",
                                self.slot_shape(level, "res", stage)))
            if with_attn:
                out.append(SlotInfo(f"{stage}.{level}.{block}.attn", stage, level, block, "attn",
                                    self.slot_shape(level, "attn")))

        for level in range(self.num_levels):
            for block in range(self.layers_per_block[level]):
                add("down", level, block, self.attention[level])
        add("mid", last, 0, self.mid_attention)
        add("mid", last, 1, False)
        for level in reversed(range(self.num_levels)):
            for block in range(self.layers_per_block[level] + 1):
                add("up", level, block, self.attention[level])
        return out

    def validate(self, field: str = "backbone") -> None:
        """Raise :class:`SpecError` naming the first invalid field."""
        n = len(self.channels)
        if n < 1:
            raise SpecError(f"{field}.channels", self.channels, "needs at least one level")
        for name in ("layers_per_block", "attention"):
            value = getattr(self, name)
            if len(value) != n:
                raise SpecError(
                    f"{field}.{name}", value, f"has {len(value)} entries but `channels` has {n} levels",
                    "give one entry per level",
                )
        for i, c in enumerate(self.channels):
            if c < 1 or c % self.norm_groups:
                raise SpecError(f"{field}.channels[{i}]", c,
                                f"must be a positive multiple of norm_groups={self.norm_groups}")
            if (self.attention[i] or (i == n - 1 and self.mid_attention)) and c % self.head_dim:
                raise SpecError(f"{field}.channels[{i}]", c, f"is not a multiple of head_dim={self.head_dim}")
        for i, layers in enumerate(self.layers_per_block):
            if layers < 1:
                raise SpecError(f"{field}.layers_per_block[{i}]", layers, "must be >= 1")
        positive = ("in_channels", "out_channels", "head_dim", "norm_groups", "frames", "latent_height",
                    "latent_width", "vae_scale_factor", "context_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 1")
        for name in ("cross_attention_dim", "addition_time_embed_dim", "num_added_time_ids"):
            if getattr(self, name) < 0:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 0")
        if (self.addition_time_embed_dim == 0) != (self.num_added_time_ids == 0):
            raise SpecError(
                f"{field}.num_added_time_ids", self.num_added_time_ids,
                "must be 0 exactly when addition_time_embed_dim is 0",
            )
        factor = 2 ** (n - 1)
        for name in ("latent_height", "latent_width"):
            value = getattr(self, name)
            if value % factor:
                raise SpecError(
                    f"{field}.{name}", value, f"must be divisible by {factor} for {n} levels",
                    f"pixel sizes must be multiples of {factor * self.vae_scale_factor}",
                )

    def resized(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
                width_mult: float | None = None) -> BackboneSpec:
        """This UNet at ``frames``, a pixel ``height`` x ``width`` (divided by the VAE factor), and
        channels scaled by ``width_mult`` (rounded to whole attention heads and norm groups)."""
        changes = self.size_changes(frames=frames, height=height, width=width, width_mult=width_mult)
        if width_mult is not None:
            step = math.lcm(self.norm_groups, self.head_dim)
            changes["channels"] = tuple(max(step, round(c * width_mult / step) * step) for c in self.channels)
        factor = self.vae_scale_factor
        result = dataclasses.replace(self, **changes)
        try:
            result.validate()
        except SpecError as exc:
            if exc.field in ("backbone.latent_height", "backbone.latent_width"):
                key = exc.field.split("_")[-1]
                pixels = exc.value * factor
                raise SpecError(key, pixels, exc.problem.replace(str(exc.value), str(pixels)) + " (in pixels: "
                                f"a multiple of {factor * 2 ** (self.num_levels - 1)})") from None
            raise
        return result
