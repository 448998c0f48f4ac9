"""The UNet family's named architectures: ``tiny`` (tests), ``svd``, ``snapgen-v``, ``mobilevd``.

Each preset is plain data: a :class:`BackboneSpec` and the temporal choice per slot
pattern. ``svd`` reproduces Stable Video Diffusion's img2vid UNet layer for layer
(diffusers' ``UNetSpatioTemporalConditionModel`` default config, 14 frames at
576x1024); ``mobilevd`` is the same network at 256x512 (height x width), the
starting point of MobileVD's pruning, funnels and multiscaling; ``snapgen-v`` is a
compact mobile UNet (about 0.6 B parameters) with a temporal layer in every slot.
Loaded through the ``vidnas.presets`` entry point group.
"""

from __future__ import annotations

import dataclasses

from vidnas.search_space._presets import Preset, register_preset
from vidnas.search_space.families.unet.spec import BackboneSpec

__all__ = ["SVD_BACKBONE", "SVD_TEMPORAL_ATTN", "SVD_TEMPORAL_RES"]

SVD_TEMPORAL_RES = {"op": "conv1d", "params": {"kernel": 3, "use_temb": True, "merge": "alpha_spatial"}}
SVD_TEMPORAL_ATTN = {"op": "xattn1d", "params": {"ff_in": True, "pos": "mlp", "merge": "alpha_spatial"}}

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
