"""Presets against their reference implementations at full size: the same function.

For each case, the reference model is built at its real config and randomly initialised
(seeded), its state dict is mapped onto the vidnas preset by the preset family's
``reference_state_dict``, loaded strictly (every vidnas parameter filled), and both run
on the same small random input in float32 on CPU. The maximum absolute difference of
the outputs, with the output's own scale, the mapping's unused keys and the environment,
is written to ``benchmarks/results/equivalence-<case>.json``.

Weights are full size (SVD's UNet: 1.5 B parameters, about 6 GB in float32); the vidnas
network is built on the meta device and takes the reference's tensors themselves
(``load_state_dict(assign=True)``), so the pair needs the reference's memory once, plus
activations. Inputs are small (a few frames at a low resolution): the weights, not the
activations, are what is compared.

    python benchmarks/bench_equivalence.py svd
    python benchmarks/bench_equivalence.py ltx-video latte
    python benchmarks/bench_equivalence.py --list

A preset of another family joins with one entry in ``CASES``: the reference class and
its config, the vidnas spec, and an input builder giving both models' arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from vidnas.search_space import ArchSpec, build_network, get_family, preset_spec

RESULTS = Path(__file__).parent / "results"
TOLERANCE = 1e-4  # max abs difference, float32

# (reference args, reference kwargs, vidnas args) for a spec, from a seeded generator.
InputBuilder = Callable[[ArchSpec, torch.Generator], tuple[tuple, dict[str, Any], tuple]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One preset and the reference implementation it reproduces."""

    name: str  # result file: equivalence-<name>.json
    reference_class: str  # "module:Class" of the reference implementation
    reference_kwargs: Mapping[str, Any]  # its config ({}: the class's defaults)
    spec: Callable[[], ArchSpec]  # the vidnas architecture (the preset at a small input shape)
    inputs: InputBuilder
    reference: str = "diffusers"  # passed to the family's reference_state_dict
    output: Callable[[Any], torch.Tensor] = lambda out: out.sample  # the tensor of the reference's return value
    meta_build: bool = True  # build vidnas on meta and take the reference's tensors (False: build and copy)
    # (reference, spec, vidnas args) -> the reference's prediction in vidnas's layout; None: call it with the
    # inputs' reference arguments and take ``output`` of its return value
    forward: Callable[[torch.nn.Module, ArchSpec, tuple], torch.Tensor] | None = None


def unet_inputs(spec: ArchSpec, gen: torch.Generator) -> tuple[tuple, dict[str, Any], tuple]:
    """SVD's UNet call: ``sample (B, T, C, H, W)``, ``timestep (B,)``, image embedding ``(B, 1, D)``,
    ``added_time_ids (B, 3)`` (fps - 1, motion bucket, noise augmentation), the same for both."""
    bb = spec.backbone
    sample = torch.randn(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
    timestep = torch.tensor([700.0])
    context = torch.randn(1, bb.context_tokens, bb.cross_attention_dim, generator=gen)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]])[:, : bb.num_added_time_ids]
    reference_kwargs = {"encoder_hidden_states": context, "added_time_ids": added_time_ids, "return_dict": True}
    return (sample, timestep), reference_kwargs, (sample, timestep, context, added_time_ids)


def dit_inputs(spec: ArchSpec, gen: torch.Generator) -> tuple[tuple, dict[str, Any], tuple]:
    """A video transformer's call: ``sample (B, T, C, H, W)``, ``timestep (B,)``, text tokens ``(B, L, text_dim)``;
    the reference takes them through ``diffusers_forward`` (its pipeline's layout and arguments)."""
    bb = spec.backbone
    sample = torch.randn(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
    context = torch.randn(1, bb.context_tokens, bb.context_dim, generator=gen)
    return (), {}, (sample, torch.tensor([700.0]), context)


def dit_forward(reference: torch.nn.Module, spec: ArchSpec, args: tuple) -> torch.Tensor:
    from vidnas.search_space.families.dit.weights import diffusers_forward

    return diffusers_forward(reference, spec, *args)


# Latte-1 text-to-video (diffusers' LatteTransformer3DModel), positions native at 256x256.
LATTE_1 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
               cross_attention_dim=1152, attention_bias=True, sample_size=32, patch_size=2,
               activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
               norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, video_length=16)

CASES: dict[str, Case] = {
    "svd": Case(
        name="svd",
        reference_class="diffusers:UNetSpatioTemporalConditionModel",
        reference_kwargs={},  # Stable Video Diffusion img2vid: diffusers' default config
        spec=lambda: preset_spec("svd", frames=3, height=128, width=128),
        inputs=unet_inputs,
    ),
    "ltx-video": Case(
        name="ltx-video",
        reference_class="diffusers:LTXVideoTransformer3DModel",
        reference_kwargs={},  # LTX-Video 2B: diffusers' default config
        spec=lambda: preset_spec("ltx-video", frames=9, height=128, width=128),  # latent 2x4x4, 128 text tokens
        inputs=dit_inputs,
        forward=dit_forward,
    ),
    "latte": Case(
        name="latte",
        reference_class="diffusers:LatteTransformer3DModel",
        reference_kwargs=LATTE_1,
        spec=lambda: preset_spec("latte", height=64, width=64),  # 16 frames (Latte's temporal table), latent 8x8
        inputs=dit_inputs,
        forward=dit_forward,
        meta_build=False,  # its sin-cos tables are buffers the reference's state dict does not hold
    ),
    "cogvideox-2b": Case(
        name="cogvideox-2b",
        reference_class="diffusers:CogVideoXTransformer3DModel",
        reference_kwargs={},  # CogVideoX 2B: diffusers' default config
        spec=lambda: preset_spec("cogvideox-2b", frames=5, height=64, width=96),  # latent 2x8x12, 226 text tokens
        inputs=dit_inputs,
        forward=dit_forward,
    ),
}


def _reference_class(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def run_case(case: Case, *, seed: int = 0) -> dict[str, Any]:
    """Build, map, load and compare one case; the record written to its result file."""
    from vidnas._env import fingerprint, package_versions

    started = time.perf_counter()
    torch.manual_seed(seed)
    reference = _reference_class(case.reference_class)(**case.reference_kwargs).eval()
    reference_params = sum(p.numel() for p in reference.parameters())
    spec = case.spec()
    state = reference.state_dict()
    mapped, unused = get_family(spec.family).reference_state_dict(spec, state, reference=case.reference)
    if case.meta_build:
        with torch.device("meta"):
            network = build_network(spec)
        network.load_state_dict(mapped, strict=True, assign=True)
        left = [n for n, t in [*network.named_parameters(), *network.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"{len(left)} tensors of the network are not in its state dict (e.g. {left[0]}); "
                               "set meta_build=False for this case")
    else:
        network = build_network(spec)
        network.load_state_dict(mapped, strict=True)
    network.eval()
    ref_args, ref_kwargs, our_args = case.inputs(spec, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        if case.forward is not None:
            expected = case.forward(reference, spec, our_args).float()
        else:
            expected = case.output(reference(*ref_args, **ref_kwargs)).float()
        got = network(*our_args).float()
    if got.shape != expected.shape:
        raise RuntimeError(f"output shapes differ: vidnas {tuple(got.shape)}, reference {tuple(expected.shape)}")
    diff = (got - expected).abs()
    return {
        "case": case.name,
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "output_max_abs": expected.abs().max().item(),
        "tolerance": TOLERANCE,
        "passed": diff.max().item() < TOLERANCE,
        "dtype": "float32",
        "device": "cpu",
        "seed": seed,
        "input_shapes": [list(t.shape) for t in our_args if isinstance(t, torch.Tensor)],
        "output_shape": list(expected.shape),
        "reference": {"class": case.reference_class, "config": dict(case.reference_kwargs), "params": reference_params,
                      "keys": len(state), "unused_keys": sorted(unused),
                      "version": package_versions((case.reference_class.split(":")[0].split(".")[0],))},
        "vidnas": {"arch_id": spec.arch_id, "name": spec.name, "family": spec.family,
                   "params": sum(p.numel() for p in network.parameters()), "mapped_keys": len(mapped),
                   "spec": spec.to_dict()},
        "seconds": round(time.perf_counter() - started, 1),
        "environment": fingerprint(threads=torch.get_num_threads(), backend="torch eager"),
    }


def write_result(record: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"equivalence-{record['case']}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", help=f"cases to run: {', '.join(CASES)}")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.list or not args.cases:
        for name, case in CASES.items():
            print(f"{name}: {case.reference_class} {dict(case.reference_kwargs) or '(default config)'}")
        return
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {list(CASES)}")
    for name in args.cases:
        record = run_case(CASES[name], seed=args.seed)
        path = write_result(record, args.out)
        print(f"{name}: max |diff| {record['max_abs_diff']:.3g} (output max |y| {record['output_max_abs']:.3g}; "
              f"{'within' if record['passed'] else 'ABOVE'} {TOLERANCE:g}) -> {path}")


if __name__ == "__main__":
    main()
