"""Proxies on tiny models: finite, deterministic under a seed, sensitive to what they claim."""

from __future__ import annotations

import math

import pytest
import torch

from vidnas._errors import SpecError
from vidnas.proxies import (
    FixedLatentEncoder,
    ProxyBatch,
    ShapesConfig,
    ShapesDataset,
    TrainConfig,
    get_proxy,
    list_proxies,
    score,
    shapes_clip,
    short_train,
)
from vidnas.proxies._proxies import frame_sensitivity
from vidnas.search_space import preset_spec

TRAIN = TrainConfig(steps=3, batch_size=2, train_clips=4, heldout_clips=2)


def small(temporal: str | dict | None = None):
    spec = preset_spec("tiny", frames=4, height=64, width=64)
    if temporal is None:
        return spec
    return spec.replace_choices({s: temporal for s in spec.temporal})


@pytest.fixture(scope="module")
def batch():
    return ProxyBatch.procedural(small(), clips=3, seed=0, train=TRAIN)


# Data ----------------------------------------------------------------------------------------------


def test_procedural_clips_are_deterministic_and_move():
    config = ShapesConfig(frames=6, height=32, width=48, objects=2)
    a, b, c = shapes_clip(3, config, seed=1), shapes_clip(3, config, seed=1), shapes_clip(3, config, seed=2)
    assert torch.equal(a.pixels, b.pixels) and not torch.equal(a.pixels, c.pixels)
    assert a.pixels.shape == (6, 3, 32, 48) and a.pixels.min() >= -1 and a.pixels.max() <= 1
    assert not torch.equal(a.pixels[0], a.pixels[-1])  # something moved
    step = a.positions[1] - a.positions[0]  # no wall is reached in this clip's first step
    torch.testing.assert_close(step, a.velocities, atol=1e-4, rtol=0)
    with pytest.raises(SpecError) as info:
        ShapesConfig(frames=0)
    assert info.value.field == "data.frames"


def test_latent_encoder_is_fixed_and_orthonormal():
    enc = FixedLatentEncoder(4, 8)
    torch.testing.assert_close(enc.projection @ enc.projection.T, torch.eye(4), atol=1e-5, rtol=0)
    pixels = torch.rand(2, 3, 3, 16, 24) * 2 - 1
    latents = enc.encode(pixels)
    assert latents.shape == (2, 3, 4, 2, 3)
    torch.testing.assert_close(FixedLatentEncoder(4, 8).encode(pixels), latents)
    with pytest.raises(SpecError):
        FixedLatentEncoder(500, 8)


def test_video_folder_round_trip(tmp_path):
    pytest.importorskip("av")
    from vidnas.proxies import VideoFolderDataset, write_video

    clip = shapes_clip(0, ShapesConfig(frames=10, height=32, width=32))
    write_video(tmp_path / "a.mp4", clip.pixels)
    data = VideoFolderDataset(tmp_path, frames=4, height=32, width=32, stride=4)
    assert len(data) == 2 and data[0]["pixels"].shape == (4, 3, 32, 32)
    assert float((data[0]["pixels"] - clip.pixels[:4]).abs().mean()) < 0.15  # lossy codec
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="no video files"):
        VideoFolderDataset(tmp_path / "empty", frames=4, height=32, width=32)


# Proxies -------------------------------------------------------------------------------------------


ZERO_COST = [p for p in list_proxies() if get_proxy(p).kind in ("count", "zero_cost", "temporal")
             and p != "temporal_order_gap" and not get_proxy(p).requires]


@pytest.mark.parametrize("name", ZERO_COST)
def test_proxy_is_finite_and_deterministic(name, batch):
    spec = small("conv1d")
    a = score(spec, [name], batch, seed=3)[name]["value"]
    b = score(spec, [name], batch, seed=3)[name]["value"]
    assert math.isfinite(a) and a == b


@pytest.mark.parametrize("name", ["grad_norm", "snip", "synflow", "zico", "naswot_silu"])
def test_zero_cost_proxies_see_the_temporal_layers(name, batch):
    """Architectures that differ only in their temporal layers get different scores."""
    values = {op: score(small(op), [name], batch, seed=0)[name]["value"] for op in ("none", "conv1d", "attn1d")}
    assert len(set(values.values())) == 3, values


def test_temporal_proxy_is_zero_without_temporal_layers_and_positive_with_them(batch):
    assert frame_sensitivity(small("none"), batch, 0) == 0.0
    spec = small().replace_choices({"down.1.0.attn": "attn1d", **{s: "none" for s in small().temporal
                                                                 if s != "down.1.0.attn"}})
    assert frame_sensitivity(spec, batch, 0) > 0.01
    assert frame_sensitivity(small("shift"), batch, 0) > 0.01


def test_causal_architectures_never_see_the_future(batch):
    causal = small().replace_choices({s: ({"op": "conv1d", "params": {"causal": True}} if s.endswith(".res")
                                          else "attn1d_causal") for s in small().temporal})
    assert frame_sensitivity(causal, batch, 0, future_only=True) == 0.0
    assert frame_sensitivity(causal, batch, 0) > 0.01  # but it does look at the past
    assert frame_sensitivity(small("attn1d"), batch, 0, future_only=True) > 0.01


def test_counts_are_what_counting_says(batch):
    from vidnas.search_space import count_spec

    spec = small("attn1d")
    report = count_spec(spec)
    values = score(spec, ["params", "flops", "temporal_flops_share"], batch)
    assert values["params"]["value"] == report.params and values["flops"]["value"] == report.flops
    assert 0 < values["temporal_flops_share"]["value"] < 1
    assert score(small("none"), ["temporal_flops_share"], batch)["temporal_flops_share"]["value"] == 0


def test_short_training_learns_and_is_reproducible():
    spec = small("conv1d")
    config = TrainConfig(steps=12, batch_size=2, train_clips=8, heldout_clips=2, lr=2e-3)
    a, b = short_train(spec, config, seed=0), short_train(spec, config, seed=0)
    assert a.heldout_loss == b.heldout_loss and a.train_losses == b.train_losses
    assert sum(a.train_losses[-4:]) < sum(a.train_losses[:4])
    assert math.isfinite(a.temporal_order_gap)


def test_training_proxies_share_one_run(batch):
    spec = small("attn1d")
    values = score(spec, ["train_loss_sum", "heldout_loss_short", "temporal_order_gap"], batch, seed=1)
    result = short_train(spec, batch.train, seed=1)
    assert values["train_loss_sum"]["value"] == pytest.approx(result.train_loss_sum)
    assert values["heldout_loss_short"]["value"] == pytest.approx(result.heldout_loss)


def test_unknown_proxy_is_named():
    with pytest.raises(SpecError) as info:
        get_proxy("accuracy")
    assert info.value.field == "proxy" and "synflow" in str(info.value)


def test_dataset_length_validation():
    with pytest.raises(SpecError):
        ShapesDataset(0)


def test_training_on_a_folder_of_user_videos(tmp_path):
    pytest.importorskip("av")
    from vidnas.proxies import write_video

    for i in range(3):
        write_video(tmp_path / f"v{i}.mp4", shapes_clip(i, ShapesConfig(frames=20, height=64, width=64)).pixels)
    spec = small("conv1d")
    config = TrainConfig(steps=2, batch_size=2, train_clips=2, heldout_clips=2, data=str(tmp_path))
    result = short_train(spec, config)
    assert math.isfinite(result.heldout_loss)
    batch = ProxyBatch.procedural(spec, clips=2, train=config)
    assert batch.clips["pixels"].shape == (2, 4, 3, 64, 64)
