"""``vidnas export RUN --init-from CHECKPOINT``: a reference's weights in every Pareto architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from svd_reference import reduced_inputs, reduced_reference, reduced_spec
from typer.testing import CliRunner

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec, build_network, read_checkpoint

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def reference():
    return reduced_reference()


@pytest.fixture(scope="module")
def checkpoints(reference, tmp_path_factory):
    """The reference saved three ways: a diffusers folder in shards, a diffusers folder, one safetensors file."""
    root = tmp_path_factory.mktemp("checkpoints")
    reference.save_pretrained(root / "sharded", safe_serialization=True, max_shard_size="1MB")
    reference.save_pretrained(root / "folder", safe_serialization=True)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(root / "unet.safetensors"))
    return root


def make_run(root: Path, specs: list[ArchSpec]) -> Path:
    """A run directory holding ``specs`` as its Pareto set (what `vidnas export` reads)."""
    (root / "pareto").mkdir(parents=True)
    entries = []
    for rank, spec in enumerate(specs):
        name = f"{rank:02d}-{spec.arch_id}.json"
        spec.save(root / "pareto" / name)
        entries.append({"rank": rank, "arch_id": spec.arch_id, "spec": name})
    (root / "pareto" / "pareto.json").write_text(json.dumps({"objectives": [], "pareto": entries}))
    return root


# Reading checkpoints --------------------------------------------------------------------------


def test_checkpoints_are_read_from_files_folders_and_shards(reference, checkpoints):
    expected = reference.state_dict()
    sharded = read_checkpoint(checkpoints / "sharded")
    assert len(sharded.files) > 1 and sharded.class_name == "UNetSpatioTemporalConditionModel"
    for ckpt in (sharded, read_checkpoint(checkpoints / "folder"), read_checkpoint(checkpoints / "unet.safetensors"),
                 read_checkpoint(checkpoints / "sharded" / "diffusion_pytorch_model.safetensors.index.json")):
        assert set(ckpt.state) == set(expected)
        assert all(torch.equal(ckpt.state[k], v) for k, v in expected.items())


@pytest.mark.parametrize("name", ["unet.bin", "model.ckpt", "weights.pt"])
def test_pickle_checkpoints_are_refused_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not read")
    with pytest.raises(SpecError) as info:
        read_checkpoint(path)
    assert info.value.field == "--init-from" and info.value.value == str(path)
    assert "pickle" in info.value.problem and "safetensors" in info.value.hint
    folder = tmp_path / "diffusers-bin"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(SpecError) as info:
        read_checkpoint(folder)
    assert info.value.value == str(folder / "diffusion_pytorch_model.bin")


def test_unreadable_checkpoints_say_what_to_pass(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "pipe" / "unet").mkdir(parents=True)
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    with pytest.raises(SpecError, match="unet"):
        read_checkpoint(tmp_path / "pipe")
    with pytest.raises(SpecError, match="no \\*.safetensors"):
        read_checkpoint(tmp_path / "pipe" / "unet")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(SpecError, match="not a safetensors file"):
        read_checkpoint(tmp_path / "notes.txt")


# Exporting initialised architectures ------------------------------------------------------------------


def test_export_loads_the_reference_into_each_pareto_architecture(reference, checkpoints, tmp_path):
    """The reference architecture takes every weight and computes the reference's function; a changed
    one takes the blocks both have, keeps its new and reshaped layers at initialisation, and says so."""
    from vidnas.runners import export_run

    same = reduced_spec()
    res = same.temporal["down.1.1.res"]
    changed = same.replace_choices({
        "down.0.0.res": "none",  # pruned: the reference's temporal resblock has no place
        "down.0.0.attn": "attn1d_causal",  # another op: a new layer
        "down.1.1.res": {"op": "conv1d", "params": {**res.params, "funnel": 0.5}},  # narrower: shapes differ
        "up.1.0.res": {"op": "conv1d", "params": {**res.params, "merge": "residual"}},  # no blend
    })
    run = make_run(tmp_path / "run", [same, changed])
    records = export_run(run, ("safetensors",), init_from=checkpoints / "sharded")
    assert [r["arch_id"] for r in records] == [same.arch_id, changed.arch_id]
    reports = [json.loads(Path(r["init"]["report"]).read_text()) for r in records]

    # 1. The reference architecture: everything loaded, the same function.
    full = reports[0]
    assert full["summary"]["initialised"] == full["summary"]["unused"] == full["summary"]["mismatched"] == 0
    assert full["reference_class"] == "UNetSpatioTemporalConditionModel"
    network = build_network(same).eval()
    network.load_state_dict(load_file(records[0]["safetensors"]), strict=True)
    inputs = reduced_inputs()
    with torch.no_grad():
        assert (network(*inputs) - reference(*inputs).sample).abs().max().item() < 1e-4
    with safe_open(records[0]["safetensors"], "pt") as f:
        meta = f.metadata()
    assert ArchSpec.from_json(meta["spec"]) == same and meta["init_from"] == str(checkpoints / "sharded")

    # 2. The changed architecture.
    report = reports[1]
    weights = load_file(records[1]["safetensors"])
    state = reference.state_dict()
    loaded, initialised, unused = set(report["loaded"]), set(report["initialised"]), set(report["unused"])
    assert loaded | initialised == set(weights) and not loaded & initialised
    for key in loaded:
        assert key in weights
    assert torch.equal(weights["units.down_0_0_resblock.conv1.weight"],
                       state["down_blocks.0.resnets.0.spatial_res_block.conv1.weight"])
    assert "down_blocks.0.resnets.0.temporal_res_block.conv1.weight" in unused
    assert "down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight" in unused
    assert not any(k.startswith("units.down_0_0_attn.") for k in loaded)
    # The funnelled slot: its shapes differ, the whole unit keeps its initialisation, every mismatch is listed.
    assert {m["key"] for m in report["mismatched"]} >= {"units.down_1_1_res.slot.branch.conv1.weight",
                                                         "units.down_1_1_res.slot.branch.conv2.weight"}
    assert not any(k.startswith("units.down_1_1_res.") for k in loaded)
    assert "units.down_1_1_res.slot.branch.norm1.weight" in initialised  # same shape, but its unit changed
    # The residual slot has no blend: the reference's has no place; the branch loads.
    assert "up_blocks.2.resnets.0.time_mixer.mix_factor" in unused
    assert torch.equal(weights["units.up_1_0_res.slot.branch.conv1.weight"],
                       state["up_blocks.2.resnets.0.temporal_res_block.conv1.weight"].reshape(64, 64, 3, 1))
    assert report["summary"] == {"loaded": len(loaded), "initialised": len(initialised), "unused": len(unused),
                                 "mismatched": len(report["mismatched"]),
                                 "partial_units": len(report["partial_units"])}


def test_a_campaign_exports_initialised_weights_from_the_cli(checkpoints, tmp_path):
    """A real (tiny) campaign, its Pareto set exported through the CLI with --init-from."""
    from vidnas.cli._app import app
    from vidnas.runners import parse_config, run_campaign

    config = parse_config({
        "name": "init", "space": {"name": "mobilevd", "frames": 2, "height": 64, "width": 64, "width_mult": 0.1},
        "target": {"backend": "debug", "build": {"quick": True, "max_seconds": 0.05, "cache": False}},
        "objectives": [{"metric": "flops", "direction": "minimize"}, {"metric": "params", "direction": "maximize"}],
        "sampler": {"name": "random", "seed": 0}, "trials": 3, "workers": 1,
    })
    run_campaign(config, tmp_path / "run", local=True)
    checkpoint = tmp_path / "svd-small.safetensors"
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    small = UNetSpatioTemporalConditionModel(block_out_channels=(64, 64, 128, 128), num_attention_heads=(1, 1, 2, 2),
                                             cross_attention_dim=1024)
    save_file(small.state_dict(), str(checkpoint))
    del small
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "safetensors", "--init-from",
                                 str(checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    exports = json.loads(result.stdout)["exports"]
    assert exports
    for record in exports:
        assert Path(record["safetensors"]).exists()
        assert record["init"]["loaded"] > 0 and record["init"]["from"] == str(checkpoint)
        report = json.loads(Path(record["init"]["report"]).read_text())
        # Every spatial block exists in both and loads, whatever the temporal choices.
        assert not any(k.startswith(("units.conv_in.", "units.mid_3_0_attn_in.")) for k in report["initialised"])

    bad = tmp_path / "svd.ckpt"
    bad.write_bytes(b"not read")
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "safetensors", "--init-from", str(bad)])
    assert result.exit_code == 2 and "svd.ckpt" in result.output and "pickle" in result.output
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--init-from", str(checkpoint), "--reference",
                                 "sgm"])
    assert result.exit_code == 2 and "--reference" in result.output


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    """Weights under names no block maps (another model, or SVD in its original layout) load nowhere: an error,
    not a model left silently at initialisation."""
    from vidnas.runners import export_run

    checkpoint = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 8, 3, 3)}, str(checkpoint))
    run = make_run(tmp_path / "run", [reduced_spec()])
    with pytest.raises(SpecError) as info:
        export_run(run, ("safetensors",), init_from=checkpoint)
    assert info.value.field == "--init-from" and info.value.value == str(checkpoint)
    assert "shares no weights" in info.value.problem
