"""Named video diffusion transformers: ``dit-tiny`` (tests), ``wan2.1-1.3b``, ``causvid``, ``wan-mobile``,
``ltx-video``, ``latte``, ``cogvideox-2b`` and ``cogvideox-tiny`` (tests).

``wan2.1-1.3b`` is Wan 2.1 text-to-video 1.3B layer for layer (diffusers'
``WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)``) at 81 frames of 480x832
(latent 21x60x104); ``causvid`` is the same network with block-causal attention over chunks
of 3 latent frames and a KV cache (CausVid, arXiv 2412.07772), the network Self Forcing also
trains. ``wan-mobile`` is Wan's block at mobile scale, the base of the ``wan-mobile`` space.

``ltx-video`` is LTX-Video 2B (diffusers' ``LTXVideoTransformer3DModel()`` defaults: 28 blocks of
width 2048 = 32 heads x 64, 128 latent channels, patch 1x1x1, RMSNorm blocks, query/key RMSNorm
across heads at eps 1e-5, rotary positions across heads in seconds and pixels, cross-attention
to 4096-d T5 tokens) at diffusers' ``LTXPipeline`` defaults: 161 frames of 512x704 at 25 fps,
128 text tokens; its VAE compresses space 32x and time 8x (latent 21x16x22, 7,392 tokens).

``latte`` is Latte-1 text-to-video (diffusers' ``LatteTransformer3DModel`` with 16 heads x 72,
28 spatial and 28 temporal blocks, patch 2, 4 latent channels in and 8 out (the noise and a
learnt variance), 4096-d T5 captions (120 tokens), adaLN-single) at 16 frames of 256x256 with
positions native there (``sample_size`` 32: a 16x16 token grid); the SD VAE encodes frame by
frame, 8x in space. Latte alternates a spatial block (self-attention inside a frame, text
cross-attention, feed-forward) and a temporal block (self-attention across frames, feed-
forward), so here block ``2 i`` is its spatial block ``i`` and block ``2 i + 1`` its temporal
block ``i`` (each with its own AdaLN table), with the temporal sin-cos table added before
block 1 and the text projected for every frame, as diffusers does.

``cogvideox-2b`` is CogVideoX 2B layer for layer (diffusers' ``CogVideoXTransformer3DModel()``
defaults: 30 blocks of 30 heads x 64, text width 4096 and 226 text tokens, time embedding 512,
2x2 spatial patches, sine-cosine 3-D positions, expert AdaLN, per-head query/key LayerNorm,
tanh-GELU feed-forward, joint attention over the text and video tokens, a final norm and an
AdaLayerNorm head) at 49 frames of 480x720 (latent 13x60x90).
"""

from __future__ import annotations

import dataclasses

from vidnas.search_space._presets import Preset, register_preset
from vidnas.search_space.families.dit.spec import DiTBackbone

__all__ = ["COGVIDEOX_2B", "COGVIDEOX_TEMPORAL", "LATTE", "LATTE_TEMPORAL", "LTX_VIDEO", "WAN_1_3B",
           "WAN_TEMPORAL"]

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

LTX_VIDEO = DiTBackbone(
    in_channels=128, out_channels=128, patch_size=(1, 1, 1), heads=32, head_dim=64, depth=28, ffn_dim=8192,
    text_dim=4096, text_tokens=128, freq_dim=256, eps=1e-6, positions="rope_ltx", qk_norm_eps=1e-5, norm="rms_norm",
    head_norm="layer_norm", cross_attn_norm=False, frame_rate=25.0, frames=21, latent_height=16, latent_width=22,
    vae_scale_factor=32, vae_temporal_factor=8,
)

register_preset(Preset(
    name="ltx-video",
    summary="LTX-Video 2B (diffusers LTXVideoTransformer3DModel), 161x512x704 at 25 fps (latent 21x16x22)",
    backbone=LTX_VIDEO,
    temporal=WAN_TEMPORAL,  # the same block: full 3-D attention, text cross-attention, feed-forward
))

LATTE = DiTBackbone(
    in_channels=4, out_channels=8, learned_sigma=True, patch_size=(1, 2, 2), heads=16, head_dim=72, depth=56,
    ffn_dim=4608, text_dim=4096, text_tokens=120, freq_dim=256, eps=1e-6, positions="sincos2d", pos_base=16,
    frame_pos_block=1, qk_norm="none", cross_attn_norm=False, cross_attn_per_frame=True, frames=16,
    latent_height=32, latent_width=32, vae_scale_factor=8, vae_temporal_factor=1,
)

# Even blocks are Latte's spatial blocks, odd blocks its temporal ones ("*[13579]": odd block numbers).
LATTE_TEMPORAL = {"block.*.attn": "tok_spatial", "block.*[13579].attn": "tok_temporal", "block.*.temporal": "none",
                  "block.*.cross": "tok_xattn", "block.*[13579].cross": "none", "block.*.ff": "tok_ff"}

register_preset(Preset(
    name="latte",
    summary="Latte-1 T2V (diffusers LatteTransformer3DModel): 28 spatial + 28 temporal blocks, 16x256x256 "
            "(latent 16x32x32)",
    backbone=LATTE,
    temporal=LATTE_TEMPORAL,
))

# CogVideoX 2B: joint text tokens, expert AdaLN, sine-cosine positions, per-head q/k LayerNorm, affine norms.
COGVIDEOX_2B = DiTBackbone(
    in_channels=16, out_channels=16, patch_size=(1, 2, 2), heads=30, head_dim=64, depth=30, ffn_dim=4 * 1920,
    text_dim=4096, text_tokens=226, freq_dim=1920, time_dim=512, eps=1e-5, qk_norm_eps=1e-6, modulation="expert",
    positions="sincos3d", pos_scale_spatial=1.875, pos_scale_temporal=1.0, qk_norm="layer_norm",
    norm="layer_norm_affine", head_norm="layer_norm_affine", ff_activation="gelu_tanh", text_mode="joint",
    text_projection="linear", frames=13, latent_height=60, latent_width=90,
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
