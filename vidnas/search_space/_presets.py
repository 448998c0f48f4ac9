"""Named architectures: ``tiny`` (tests), ``svd``, ``snapgen-v``, ``mobilevd``.

Each preset is plain data: a :class:`BackboneSpec` and the temporal choice per slot
pattern. ``svd`` reproduces Stable Video Diffusion's img2vid UNet layer for layer
(diffusers' ``UNetSpatioTemporalConditionModel`` default config, 14 frames at
576x1024); ``mobilevd`` is the same network at 256x512 (height x width), the
starting point of MobileVD's pruning, funnels and multiscaling; ``snapgen-v`` is a
compact mobile UNet (about 0.6 B parameters) with a temporal layer in every slot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._backbone import Backbone
from vidnas.search_space._spec import ArchSpec
from vidnas.search_space._unet_spec import BackboneSpec

__all__ = ["PRESETS", "Preset", "get_preset", "list_presets"]

# SVD's temporal layers, as registered ops: the temporal resblock after every residual
# block and the temporal transformer inside every spatial transformer, both blended
# with the spatial path by a learned alpha (diffusers' AlphaBlender), which weighs the
# spatial side in both: ``alpha * spatial + (1 - alpha) * temporal``.
SVD_TEMPORAL_RES = {"op": "conv1d", "params": {"kernel": 3, "use_temb": True, "merge": "alpha_spatial"}}
SVD_TEMPORAL_ATTN = {"op": "xattn1d", "params": {"ff_in": True, "pos": "mlp", "merge": "alpha_spatial"}}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named backbone and its default temporal layers."""

    name: str
    summary: str
    backbone: Backbone
    temporal: Mapping[str, Any]  # slot pattern -> choice; later patterns override earlier ones

    def spec(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
             width_mult: float | None = None) -> ArchSpec:
        """The preset's spec, optionally at another clip length, pixel size or channel width."""
        backbone = self.backbone
        if frames is not None or height is not None or width is not None or width_mult is not None:
            backbone = backbone.resized(frames=frames, height=height, width=width, width_mult=width_mult)
        return ArchSpec.create(backbone, self.temporal, name=self.name)


SVD_BACKBONE = BackboneSpec(
    channels=(320, 640, 1280, 1280),
    layers_per_block=(2, 2, 2, 2),
    attention=(True, True, True, False),
    in_channels=8,
    out_channels=4,
    head_dim=64,
    cross_attention_dim=1024,
    context_tokens=1,
    mid_attention=True,
    addition_time_embed_dim=256,
    num_added_time_ids=3,
    frames=14,
    latent_height=72,
    latent_width=128,
    vae_scale_factor=8,
)

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a named architecture (a backbone of any family and its slot choices)."""
    PRESETS[preset.name] = preset
    return preset


_register = register_preset


_register(Preset(
    name="tiny",
    summary="a two-level toy UNet for tests: 8 frames at 128x128 (16x16 latent)",
    backbone=BackboneSpec(
        channels=(32, 64), layers_per_block=(1, 1), attention=(False, True), in_channels=4, out_channels=4,
        head_dim=16, cross_attention_dim=32, context_tokens=4, mid_attention=True, norm_groups=8,
        frames=8, latent_height=16, latent_width=16, vae_scale_factor=8,
    ),
    temporal={"*.res": {"op": "conv1d"}, "*.attn": {"op": "attn1d"}},
))

_register(Preset(
    name="svd",
    summary="Stable Video Diffusion img2vid UNet (diffusers UNetSpatioTemporalConditionModel), 14x576x1024",
    backbone=SVD_BACKBONE,
    temporal={"*.res": SVD_TEMPORAL_RES, "*.attn": SVD_TEMPORAL_ATTN},
))

_register(Preset(
    name="mobilevd",
    summary="SVD at 256x512 (MobileVD's starting point); pruning, funnels and multiscaling searched",
    backbone=dataclasses.replace(SVD_BACKBONE, latent_height=32, latent_width=64),
    temporal={"*.res": SVD_TEMPORAL_RES, "*.attn": SVD_TEMPORAL_ATTN},
))

_register(Preset(
    name="snapgen-v",
    summary="a compact mobile text-to-video UNet (~0.6 B parameters), 16x288x512, a temporal layer in every slot",
    backbone=BackboneSpec(
        channels=(288, 576, 1024), layers_per_block=(2, 2, 2), attention=(False, True, True), in_channels=4,
        out_channels=4, head_dim=64, cross_attention_dim=768, context_tokens=77, mid_attention=True,
        frames=16, latent_height=36, latent_width=64, vae_scale_factor=8,
    ),
    temporal={"*.res": {"op": "conv1d"}, "*.attn": {"op": "attn1d"}},
))


from vidnas.search_space import _dit_presets  # noqa: E402, F401  (the transformers register themselves)


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, field: str = "preset") -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(field, name, "is not a preset", f"choose one of {list(PRESETS)}") from None


def preset_spec(name: str, **shape: int | None) -> ArchSpec:
    """Shortcut: ``get_preset(name).spec(**shape)``."""
    return get_preset(name).spec(**shape)


SpecFactory = Callable[..., ArchSpec]
