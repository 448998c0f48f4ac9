"""A reduced Stable Video Diffusion UNet, in diffusers and in vidnas, for the weight-mapping tests."""

from __future__ import annotations

import dataclasses

import torch

from vidnas.search_space import ArchSpec, get_preset
from vidnas.search_space.families.unet.presets import SVD_BACKBONE

# The same code path at a reduced size: four levels (three with cross-attention, as SVD),
# uneven residual blocks per level, 16-wide heads, small conditioning, 3 frames at 16x16.
REDUCED_REFERENCE = {
    "block_out_channels": (32, 64, 64, 64),
    "layers_per_block": (1, 2, 1, 1),
    "num_attention_heads": (2, 4, 4, 4),
    "cross_attention_dim": 32,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
    "num_frames": 3,
}
REDUCED_BACKBONE = dataclasses.replace(
    SVD_BACKBONE, channels=(32, 64, 64, 64), layers_per_block=(1, 2, 1, 1), head_dim=16, cross_attention_dim=32,
    addition_time_embed_dim=8, frames=3, latent_height=16, latent_width=16,
)


def reduced_spec(**choices) -> ArchSpec:
    """SVD's temporal layers (the preset's) on the reduced backbone, ``choices`` overriding slots."""
    return ArchSpec.create(REDUCED_BACKBONE, {**get_preset("svd").temporal, **choices})


def reduced_reference(seed: int = 0):
    """A randomly initialised reduced diffusers SVD UNet whose norms and blends are perturbed
    away from their initial values, so that group statistics, epsilons and blend signs matter."""
    torch.manual_seed(seed)
    from diffusers import UNetSpatioTemporalConditionModel

    reference = UNetSpatioTemporalConditionModel(**REDUCED_REFERENCE).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if "mix_factor" in name or "norm" in name:
                param.add_(torch.randn_like(param) * 0.5)
    return reference


def reduced_inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """``(sample (B, T, C, H, W), timestep (B,), context (B, 1, D), added_time_ids (B, 3))``, both models' layout."""
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 3, 8, 16, 16, generator=gen)
    timestep = torch.tensor([500.0, 20.0][:batch])
    context = torch.randn(batch, 1, 32, generator=gen)
    added_time_ids = torch.rand(batch, 3, generator=gen) * 10
    return sample, timestep, context, added_time_ids
