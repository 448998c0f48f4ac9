"""Named video diffusion transformers: ``dit-tiny`` (tests), ``wan2.1-1.3b``, ``causvid``, ``wan-mobile``,
``cogvideox-2b`` and ``cogvideox-tiny`` (tests).

``wan2.1-1.3b`` is Wan 2.1 text-to-video 1.3B layer for layer (diffusers'
``WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)``) at 81 frames of 480x832
(latent 21x60x104); ``causvid`` is the same network with block-causal attention over chunks
of 3 latent frames and a KV cache (CausVid, arXiv 2412.07772), the network Self Forcing also
trains. ``wan-mobile`` is Wan's block at mobile scale, the base of the ``wan-mobile`` space.

``cogvideox-2b`` is CogVideoX 2B layer for layer (diffusers' ``CogVideoXTransformer3DModel()``
defaults: 30 blocks of 30 heads x 64, text width 4096 and 226 text tokens, time embedding 512,
2x2 spatial patches, sine-cosine 3-D positions, expert AdaLN, per-head query/key LayerNorm,
tanh-GELU feed-forward, joint attention over the text and video tokens, a final norm and an
AdaLayerNorm head) at 49 frames of 480x720 (latent 13x60x90).
"""

from __future__ import annotations

import dataclasses

from vidnas.search_space._dit_spec import DiTBackbone
from vidnas.search_space._presets import Preset, register_preset

__all__ = ["COGVIDEOX_2B", "COGVIDEOX_TEMPORAL", "WAN_1_3B", "WAN_TEMPORAL"]

WAN_1_3B = DiTBackbone()  # the defaults are Wan 2.1 T2V 1.3B at 81x480x832

# Wan's block as slot choices: full 3-D self-attention, text cross-attention, feed-forward.
WAN_TEMPORAL = {"block.*.attn": "tok_full", "block.*.temporal": "none", "block.*.cross": "tok_xattn",
                "block.*.ff": "tok_ff"}

register_preset(Preset(
    name="dit-tiny",
    summary="a three-block toy video transformer for tests: 13 frames at 64x64 (latent 4x8x8, 64 tokens)",
    backbone=DiTBackbone(in_channels=4, out_channels=4, heads=2, head_dim=16, depth=3, ffn_dim=64, text_dim=24,
                         text_tokens=5, freq_dim=16, frames=4, latent_height=8, latent_width=8),
    temporal=WAN_TEMPORAL,
))

register_preset(Preset(
    name="wan2.1-1.3b",
    summary="Wan 2.1 T2V 1.3B (diffusers WanTransformer3DModel), 81x480x832 (latent 21x60x104)",
    backbone=WAN_1_3B,
    temporal=WAN_TEMPORAL,
))

register_preset(Preset(
    name="causvid",
    summary="CausVid: Wan 2.1 1.3B with block-causal attention over chunks of 3 latent frames and a KV cache",
    backbone=WAN_1_3B,
    temporal={**WAN_TEMPORAL, "block.*.attn": {"op": "tok_blockcausal", "params": {"chunk": 3}}},
))

register_preset(Preset(
    name="wan-mobile",
    summary="a Wan 2.1-style transformer at mobile scale (~0.16 B parameters): 16 blocks of width 768, "
            "17 frames at 288x512 (latent 5x36x64)",
    backbone=DiTBackbone(heads=12, head_dim=64, depth=16, ffn_dim=3072, frames=5, latent_height=36,
                         latent_width=64),
    temporal=WAN_TEMPORAL,
))

# CogVideoX 2B: joint text tokens, expert AdaLN, sine-cosine positions, per-head q/k LayerNorm, affine norms.
COGVIDEOX_2B = DiTBackbone(
    in_channels=16, out_channels=16, patch_size=(1, 2, 2), heads=30, head_dim=64, depth=30, ffn_dim=4 * 1920,
    text_dim=4096, text_tokens=226, freq_dim=1920, time_dim=512, eps=1e-5, qk_eps=1e-6, modulation="expert",
    positions="sincos3d", pos_scale_spatial=1.875, pos_scale_temporal=1.0, qk_norm="layer_norm",
    norm="layer_norm_affine", ff_activation="gelu_tanh", text_mode="joint", text_projection="linear",
    frames=13, latent_height=60, latent_width=90,
)

# CogVideoX's block as slot choices: joint full attention over the text and video tokens, then the feed-forward.
COGVIDEOX_TEMPORAL = {"block.*.attn": "tok_full", "block.*.temporal": "none", "block.*.cross": "none",
                      "block.*.ff": "tok_ff"}

register_preset(Preset(
    name="cogvideox-2b",
    summary="CogVideoX 2B (diffusers CogVideoXTransformer3DModel), 49x480x720 (latent 13x60x90), joint text",
    backbone=COGVIDEOX_2B,
    temporal=COGVIDEOX_TEMPORAL,
))

register_preset(Preset(
    name="cogvideox-tiny",
    summary="a two-block toy CogVideoX-style transformer for tests (joint text): 13 frames at 64x64 "
            "(latent 4x8x8, 64 tokens after 5 text tokens)",
    backbone=dataclasses.replace(COGVIDEOX_2B, in_channels=4, out_channels=4, heads=2, head_dim=16, depth=2,
                                 ffn_dim=64, text_dim=24, text_tokens=5, freq_dim=32, time_dim=16, frames=4,
                                 latent_height=8, latent_width=8),
    temporal=COGVIDEOX_TEMPORAL,
))
