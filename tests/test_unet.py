"""The video UNet built from a plan: forward, wiring, streaming, and counting against a trace."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_

from vidnas.search_space import (
    VideoUNet,
    build_plan,
    count_spec,
    get_space,
    preset_spec,
)


def test_tiny_forward_shapes_and_identity_of_temporal_layers():
    spec = preset_spec("tiny")
    net = VideoUNet(spec).eval()
    args = net.example_inputs(batch=2)
    with torch.no_grad():
        out = net(*args)
    bb = spec.backbone
    assert out.shape == (2, bb.frames, bb.out_channels, bb.latent_height, bb.latent_width)
    assert torch.isfinite(out).all()
    # Zero-initialised temporal layers: the network equals its image-only version.
    image_only = VideoUNet(spec.replace_choices({s: "none" for s in spec.temporal}))
    temporal_units = {"units." + p.name.replace(".", "_") + "." for p in net.plan if p.kind == "temporal"}
    spatial = {k: v for k, v in net.state_dict().items() if not any(k.startswith(t) for t in temporal_units)}
    image_only.load_state_dict(spatial, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(image_only(*args), out)


@pytest.mark.parametrize("seed", range(6))
def test_random_tiny_architectures_run(seed):
    spec = get_space("tiny").random_specs(1, seed=seed)[0]
    net = VideoUNet(spec).eval()
    randomize_(net, seed=seed, std=0.05)
    with torch.no_grad():
        out = net(*net.example_inputs(batch=1))
    assert torch.isfinite(out).all()


def test_plan_wiring_balances_skips_and_residuals():
    for name in ("tiny", "svd", "snapgen-v"):
        plan = build_plan(preset_spec(name))
        pushes = sum(p.push == "skip" for p in plan)
        pops = sum(p.pop == "skip" for p in plan)
        assert pushes == pops
        assert sum(p.push == "residual" for p in plan) == sum(p.pop == "residual" for p in plan)


def test_causal_network_streams_chunk_by_chunk():
    """A network whose temporal ops are all causal gives the same output when fed chunk by
    chunk with its caches as when given the whole clip."""
    base = preset_spec("tiny")
    spec = base.replace_choices({
        "down.0.0.res": {"op": "conv1d", "params": {"causal": True}},
        "down.1.0.res": {"op": "shift", "params": {"causal": True}},
        "down.1.0.attn": "attn1d_causal",
        "mid.1.0.attn": {"op": "attn3d_blockcausal", "params": {"chunk": 2}},
        "up.1.1.attn": "attn1d_causal",
        "up.0.0.res": {"op": "conv2plus1d", "params": {"causal": True, "use_temb": True}},
        **{s: "none" for s in ("mid.1.0.res", "mid.1.1.res", "up.1.0.res", "up.1.0.attn", "up.1.1.res",
                               "up.0.1.res")},
    })
    assert spec.is_causal and spec.causal_block_frames == 2
    net = VideoUNet(spec).eval()
    randomize_(net, seed=4, std=0.05)
    sample, timestep, context, ids = net.example_inputs(batch=1)
    with torch.no_grad():
        full = net(sample, timestep, context)
        state: dict = {}
        parts = [net.stream(sample[:, i : i + 2], timestep, state, commit=True, context=context)
                 for i in range(0, spec.backbone.frames, 2)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_non_causal_network_refuses_to_stream():
    net = VideoUNet(preset_spec("tiny"))
    sample, timestep, context, _ = net.example_inputs()
    with pytest.raises(ValueError, match="causal"):
        net.stream(sample[:, :2], timestep, {}, commit=True, context=context)


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_a_trace_of_the_whole_network(seed):
    """count_spec (closed form, assembled from the plan) equals running the whole network
    under fake tensors: params and FLOPs exactly, activation peak within 1 %."""
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    spec = get_space("tiny").random_specs(1, seed=seed)[0]
    report = count_spec(spec, batch=2)
    with torch.device("meta"):
        net = VideoUNet(spec)
    assert report.params == sum(p.numel() for p in net.parameters())
    with _fake_mode():
        net = net.to_empty(device="cpu")
        bb = spec.backbone
        args = (torch.empty(2, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width), torch.empty(2),
                torch.empty(2, bb.context_tokens, bb.cross_attention_dim))
        flops, peak = count_module_call(net, args, args)
    assert report.flops == flops
    assert abs(report.activation_bytes / peak - 1) < 0.01
    traced = count_spec(spec, batch=2, method="trace")
    assert (traced.params, traced.flops) == (report.params, report.flops)


def test_count_breaks_down_per_slot_and_scales_with_dtype():
    spec = preset_spec("tiny")
    r32, r16 = count_spec(spec), count_spec(spec, dtype="float16")
    assert r16.activation_bytes * 2 == r32.activation_bytes and r16.flops == r32.flops
    rows = r32.slot_rows()
    assert [r["slot"] for r in rows] == [s.name for s in spec.slots()]
    assert sum(r["flops"] for r in rows) == r32.temporal_flops
    pruned = count_spec(spec.replace_choices({s: "none" for s in spec.temporal}))
    assert pruned.temporal_flops == 0 and pruned.flops == r32.flops - r32.temporal_flops
