"""Reduced LTX-Video and Latte transformers, in diffusers and in vidnas, for the equivalence tests.

Each reduced reference takes its real model's code path (every style the preset reproduces)
at a small width and depth; the matching vidnas spec is the preset with the same sizes.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidnas.search_space import ArchSpec
from vidnas.search_space.families.dit.presets import LATTE, LATTE_TEMPORAL, LTX_VIDEO, WAN_TEMPORAL

# LTX-Video at width 20 (2 heads of 10): 20 % 6 = 2 leaves one unrotated channel pair, as 2048 does.
LTX_REDUCED = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=10,
                   cross_attention_dim=20, num_layers=2, caption_channels=24)

# Latte with 2 spatial and 2 temporal blocks, native at 8x8 latent cells (a 4x4 token grid), 3 frames.
LATTE_REDUCED = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                     cross_attention_dim=16, attention_bias=True, sample_size=8, patch_size=2,
                     activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                     norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=24, video_length=3)

TEXT_TOKENS = 5


def randomize_reference_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """No parameter left at a special value (zeros, ones) that would hide a wrong mapping."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def ltx_reference(patch: int = 1, seed: int = 0, **changes):
    """A random reduced ``LTXVideoTransformer3DModel`` (patches of ``patch`` x ``patch`` cells) and its spec."""
    diffusers = pytest.importorskip("diffusers")
    config = dict(LTX_REDUCED, **changes)
    packed = config["in_channels"] * patch * patch  # LTX's linear patch embedding reads packed patches
    torch.manual_seed(seed)
    reference = diffusers.LTXVideoTransformer3DModel(**{**config, "in_channels": packed, "out_channels": packed,
                                                        "patch_size": patch})
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    bb = dataclasses.replace(LTX_VIDEO, in_channels=config["in_channels"], out_channels=config["out_channels"],
                             patch_size=(1, patch, patch), heads=config["num_attention_heads"],
                             head_dim=config["attention_head_dim"], depth=config["num_layers"], ffn_dim=4 * dim,
                             text_dim=config["caption_channels"], text_tokens=TEXT_TOKENS, frames=3,
                             latent_height=4 * patch, latent_width=6 * patch)
    return randomize_reference_(reference, seed + 1), ArchSpec.create(bb, WAN_TEMPORAL)


def latte_reference(seed: int = 0, height: int = 8, width: int = 8, **changes):
    """A random reduced ``LatteTransformer3DModel`` and its spec at ``height`` x ``width`` latent cells."""
    diffusers = pytest.importorskip("diffusers")
    config = dict(LATTE_REDUCED, **changes)
    torch.manual_seed(seed)
    reference = diffusers.LatteTransformer3DModel(**config)
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    p = config["patch_size"]
    bb = dataclasses.replace(LATTE, in_channels=config["in_channels"], out_channels=config["out_channels"],
                             patch_size=(1, p, p), heads=config["num_attention_heads"],
                             head_dim=config["attention_head_dim"], depth=2 * config["num_layers"], ffn_dim=4 * dim,
                             text_dim=config["caption_channels"], text_tokens=TEXT_TOKENS, eps=config["norm_eps"],
                             pos_base=config["sample_size"] // p, frames=config["video_length"],
                             latent_height=height, latent_width=width)
    return randomize_reference_(reference, seed + 1), ArchSpec.create(bb, LATTE_TEMPORAL)
