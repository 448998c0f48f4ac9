"""Presets against the architectures they reproduce."""

from __future__ import annotations

import pytest
import torch

from vidnas.search_space import count_spec, get_space, preset_spec

# diffusers' UNetSpatioTemporalConditionModel with its default config (Stable Video
# Diffusion img2vid): sum of parameter sizes, built on the meta device.
SVD_REFERENCE_PARAMS = 1_524_623_082


def test_svd_parameter_count_is_exact():
    spec = preset_spec("svd")
    assert count_spec(spec).params == SVD_REFERENCE_PARAMS
    from vidnas.search_space import VideoUNet

    with torch.device("meta"):
        net = VideoUNet(spec)
    assert sum(p.numel() for p in net.parameters()) == SVD_REFERENCE_PARAMS


def test_svd_structure_matches_the_paper_description():
    spec = preset_spec("svd")
    counts = spec.op_counts()
    # 22 temporal resblocks + 16 spatio-temporal transformers = 38 temporal blocks.
    assert counts == {"conv1d": 22, "xattn1d": 16}
    assert spec.backbone.in_channels == 8 and spec.backbone.cross_attention_dim == 1024


@pytest.mark.slow
def test_svd_matches_the_diffusers_reference_params_and_flops():
    """Params exactly and conv/matmul/attention FLOPs per UNet call at 14x576x1024 within 1 %,
    both counted by torch.utils.flop_counter under fake tensors (CPU attention registered)."""
    diffusers = pytest.importorskip("diffusers")
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    with torch.device("meta"):
        reference = diffusers.UNetSpatioTemporalConditionModel()
    assert sum(p.numel() for p in reference.parameters()) == SVD_REFERENCE_PARAMS
    with _fake_mode():
        reference = reference.to_empty(device="cpu")
        args = (torch.empty(1, 14, 8, 72, 128), torch.empty(1), torch.empty(1, 1, 1024), torch.empty(1, 3))
        ref_flops, _ = count_module_call(reference, args, args)
    ours = count_spec(preset_spec("svd", frames=14, height=576, width=1024))
    assert abs(ours.flops / ref_flops - 1) < 0.01, (ours.flops, ref_flops)


def test_snapgen_v_is_about_0_6_billion_parameters():
    report = count_spec(preset_spec("snapgen-v"))
    assert 0.55e9 < report.params < 0.65e9
    assert all(c.op != "none" for c in preset_spec("snapgen-v").temporal.values())


def test_mobilevd_expresses_pruning_funnels_and_multiscaling():
    space = get_space("mobilevd")
    base = space.base
    assert (base.backbone.pixel_height, base.backbone.pixel_width) == (256, 512)
    assert count_spec(base).params == SVD_REFERENCE_PARAMS  # same network, lower resolution
    slots = list(base.temporal)
    pruned = {s: "none" for s in slots[: int(0.7 * len(slots))]}  # 70 % of temporal blocks pruned
    funnelled = {s: {"op": base.temporal[s].op, "params": {**base.temporal[s].params, "funnel": 0.5,
                                                            "temporal_stride": 2}}
                 for s in slots[int(0.7 * len(slots)):]}
    spec = base.replace_choices({**pruned, **funnelled})
    assert space.params_of(spec)  # it is a point of the space
    full, small = count_spec(base), count_spec(spec)
    assert small.temporal_flops < 0.2 * full.temporal_flops
    assert small.params < full.params
    # Multiscaling alone halves the frames a temporal op sees: its attention FLOPs drop.
    slot = "down.0.0.attn"
    half = base.replace_choices({slot: {"op": "xattn1d", "params": {**base.temporal[slot].params,
                                                                     "temporal_stride": 2}}})
    rows = {r["slot"]: r["flops"] for r in count_spec(half).slot_rows()}
    rows_full = {r["slot"]: r["flops"] for r in full.slot_rows()}
    assert rows[slot] < 0.55 * rows_full[slot]


def test_pixel_sizes_map_to_latents():
    spec = preset_spec("svd", height=576, width=1024)
    assert (spec.backbone.latent_height, spec.backbone.latent_width) == (72, 128)
