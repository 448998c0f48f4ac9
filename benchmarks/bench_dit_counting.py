"""Video diffusion transformer presets against their diffusers references: parameters, FLOPs, the same
function, and the whole-process time of `vidnas space show PRESET --json`.

One entry of ``MODELS`` per preset (``--model``; default ``wan2.1-1.3b``): the reference class and its
config, the vidnas spec equivalent to a config, and the reference's call.

* params: vidnas's closed form, vidnas's network built on the meta device, and the reference
  built on the meta device (nothing downloaded);
* FLOPs per call at the preset's shape (Wan 2.1: 81x480x832, latent 21x60x104, 512 text tokens;
  CogVideoX 2B: 49x480x720, latent 13x60x90, 226 text tokens): vidnas's closed form and its
  fake-tensor trace, against the reference run under ``FakeTensorMode`` with
  ``torch.utils.flop_counter`` (CPU attention registered); no memory is allocated;
* the same function (``--equivalence``): a randomly initialised reference at the full width and
  depth, its weights mapped into the vidnas network, outputs compared on a small latent clip
  (``--equivalence-shape``); this allocates both models in float32 (about 12 GB of RAM);
* ``vidnas space show`` in fresh processes: wall seconds, median and p10-p90 over ``--repeats``.

``--reduced`` runs everything on a two-block, narrow configuration (seconds; what the tests run).
Writes one JSON object (with the environment) to ``--out``.

    python benchmarks/bench_dit_counting.py --repeats 7 --equivalence
    python benchmarks/bench_dit_counting.py --model cogvideox-2b --repeats 7 --equivalence
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)
REDUCED = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=24, ffn_dim=64, num_layers=2, text_dim=32,
               freq_dim=16)
COGVIDEOX_2B: dict[str, Any] = {}  # CogVideoXTransformer3DModel's defaults are CogVideoX 2B
COGVIDEOX_REDUCED = dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=24, text_embed_dim=32,
                         num_layers=2, max_text_seq_length=8)


def _wan_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to a WanTransformer3DModel config, at a pixel size."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space._dit_presets import WAN_TEMPORAL
    from vidnas.search_space._dit_spec import DiTBackbone

    bb = DiTBackbone(in_channels=config["in_channels"], out_channels=config["out_channels"],
                     patch_size=tuple(config["patch_size"]), heads=config["num_attention_heads"],
                     head_dim=config["attention_head_dim"], depth=config["num_layers"], ffn_dim=config["ffn_dim"],
                     text_dim=config["text_dim"], text_tokens=text_tokens, freq_dim=config["freq_dim"],
                     eps=config["eps"])
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), WAN_TEMPORAL)


def _cogvideox_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to a CogVideoXTransformer3DModel config (1.0: spatial patches, sine-cosine
    positions), at a pixel size; ``text_tokens`` must be the config's ``max_text_seq_length``."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space._dit_presets import COGVIDEOX_2B as BASE
    from vidnas.search_space._dit_presets import COGVIDEOX_TEMPORAL

    heads, head_dim = config.get("num_attention_heads", 30), config.get("attention_head_dim", 64)
    if text_tokens != config.get("max_text_seq_length", 226):
        raise ValueError("CogVideoX's positions hold exactly max_text_seq_length text tokens")
    bb = dataclasses.replace(BASE, heads=heads, head_dim=head_dim, depth=config.get("num_layers", 30),
                             ffn_dim=4 * heads * head_dim, text_dim=config.get("text_embed_dim", 4096),
                             text_tokens=text_tokens, freq_dim=heads * head_dim,
                             time_dim=config.get("time_embed_dim", 512))
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), COGVIDEOX_TEMPORAL)


def _wan_call(reference, sample, timestep, context):
    """Wan takes (B, C, T, H, W) and returns the same layout."""
    return reference(sample.transpose(1, 2), timestep, context, return_dict=False)[0].transpose(1, 2)


def _cogvideox_call(reference, sample, timestep, context):
    """CogVideoX takes (B, T, C, H, W) latents, then the text, then the timestep."""
    return reference(sample, context, timestep, return_dict=False)[0]


class Model(NamedTuple):
    """A preset, its diffusers reference and how to count and call both."""

    preset: str
    reference_class: str  # a class of diffusers
    config: dict[str, Any]  # the reference's config at full size
    reduced: dict[str, Any]  # a two-block narrow config of the same code path
    shape: tuple[int, int, int]  # decoded frames, height, width of the preset
    text_tokens: int
    reduced_text_tokens: int
    spec: Callable[..., Any]  # (config, frames, height, width, text_tokens) -> ArchSpec
    call: Callable[..., Any]  # (reference, sample (B, T, C, H, W), timestep, context) -> (B, T, C, H, W)
    reduced_shape: tuple[int, int, int] = (9, 64, 64)


MODELS: dict[str, Model] = {
    "wan2.1-1.3b": Model("wan2.1-1.3b", "WanTransformer3DModel", WAN_1_3B, REDUCED, (81, 480, 832), 512, 8,
                         _wan_spec, _wan_call),
    "cogvideox-2b": Model("cogvideox-2b", "CogVideoXTransformer3DModel", COGVIDEOX_2B, COGVIDEOX_REDUCED,
                          (49, 480, 720), 226, 8, _cogvideox_spec, _cogvideox_call),
}


def _reference(model: Model, config: dict[str, Any]):
    import diffusers

    return getattr(diffusers, model.reference_class)(**config)


def counts(model: Model, config: dict[str, Any], frames: int, height: int, width: int,
           text_tokens: int) -> dict[str, Any]:
    import torch

    from vidnas.search_space import build_network, count_spec
    from vidnas.search_space._tracing import _fake_mode, count_module_call

    spec = model.spec(config, frames, height, width, text_tokens)
    bb = spec.backbone
    t0 = time.perf_counter()
    analytic = count_spec(spec)
    analytic_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    traced = count_spec(spec, method="trace")
    trace_s = time.perf_counter() - t0
    with torch.device("meta"):
        ours = build_network(spec)
        reference = _reference(model, config)
    t0 = time.perf_counter()
    with _fake_mode():
        reference = reference.to_empty(device="cpu")
        sample = torch.empty(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width)
        args = (reference, sample, torch.empty(1), torch.empty(1, text_tokens, bb.text_dim))

        class Call(torch.nn.Module):  # the reference's call, as a module the counter runs
            def __init__(self) -> None:
                super().__init__()
                self.reference = reference

            def forward(self, *tensors):
                return model.call(self.reference, *tensors)

        ref_flops, ref_peak = count_module_call(Call(), args[1:], args[1:])
    reference_s = time.perf_counter() - t0
    return {
        "shape": {"frames": frames, "height": height, "width": width, "latent": [bb.frames, bb.latent_height,
                                                                                  bb.latent_width],
                  "tokens": bb.tokens, "text_tokens": text_tokens},
        "params": {"vidnas_analytic": analytic.params, "vidnas_network": sum(p.numel() for p in ours.parameters()),
                   "reference": sum(p.numel() for p in reference.parameters())},
        "flops": {"vidnas_analytic": analytic.flops, "vidnas_trace": traced.flops, "reference": ref_flops,
                  "ratio": analytic.flops / ref_flops},
        "activation_bytes": {"vidnas_analytic": analytic.activation_bytes, "reference_trace": ref_peak},
        "seconds": {"vidnas_analytic": analytic_s, "vidnas_trace": trace_s, "reference_trace": reference_s},
    }


def equivalence(model: Model, config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int,
                seed: int = 0) -> dict[str, Any]:
    """Max abs difference between the reference and vidnas on the reference's (random) weights."""
    import torch

    from vidnas.search_space import build_network, get_family

    torch.manual_seed(seed)
    reference = _reference(model, config).eval()
    spec = model.spec(config, frames, height, width, text_tokens)
    ours = build_network(spec).eval()
    mapped, unmapped = get_family("dit").reference_state_dict(spec, reference.state_dict(), reference="diffusers")
    ours.load_state_dict(mapped, strict=True)
    bb = spec.backbone
    gen = torch.Generator().manual_seed(seed + 1)
    sample = torch.randn(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width, generator=gen)
    context = torch.randn(1, text_tokens, bb.text_dim, generator=gen)
    timestep = torch.tensor([700.0])
    with torch.no_grad():
        got = ours(sample, timestep, context)
        expected = model.call(reference, sample, timestep, context)
    return {"shape": {"frames": frames, "height": height, "width": width}, "unmapped": unmapped,
            "max_abs_difference": float((got - expected).abs().max()), "max_abs_output": float(expected.abs().max())}


def space_show_seconds(repeats: int, preset: str = "wan2.1-1.3b") -> dict[str, float]:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vidnas.cli", "space", "show", preset, "--json"], check=True,
                       capture_output=True)
        walls.append(time.perf_counter() - t0)
    walls.sort()
    return {"median": statistics.median(walls), "p10": walls[round(0.1 * (len(walls) - 1))],
            "p90": walls[round(0.9 * (len(walls) - 1))], "runs": len(walls)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="wan2.1-1.3b", choices=list(MODELS), help="the preset and its reference")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes timing `vidnas space show`")
    parser.add_argument("--equivalence", action="store_true", help="compare outputs at the full width (~12 GB)")
    parser.add_argument("--equivalence-shape", default="5x64x64", help="decoded frames x height x width")
    parser.add_argument("--reduced", action="store_true", help="a two-block narrow model at 9x64x64 (a smoke run)")
    parser.add_argument("--out", type=Path, help="default: results/dit-counting[-MODEL].json")
    args = parser.parse_args(argv)

    import torch

    from vidnas._env import fingerprint

    torch.set_num_threads(1)
    model = MODELS[args.model]
    suffix = "" if args.model == "wan2.1-1.3b" else f"-{args.model}"
    out = args.out or Path(__file__).parent / "results" / f"dit-counting{suffix}.json"
    if args.reduced:
        config, shape, text = model.reduced, model.reduced_shape, model.reduced_text_tokens
    else:
        config, shape, text = model.config, model.shape, model.text_tokens
    result: dict[str, Any] = {"benchmark": "dit-counting", "model": "reduced" if args.reduced else model.preset,
                              "preset": model.preset, "reference": f"diffusers.{model.reference_class}",
                              "environment": fingerprint(threads=1), "counts": counts(model, config, *shape, text)}
    if args.equivalence or args.reduced:
        frames, height, width = (int(v) for v in args.equivalence_shape.split("x"))
        result["equivalence"] = equivalence(model, config, frames, height, width, text if args.reduced else
                                            (16 if model.preset == "wan2.1-1.3b" else model.text_tokens))
    if args.repeats:
        result["space_show_seconds"] = space_show_seconds(args.repeats, model.preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    c = result["counts"]
    print(f"params: vidnas {c['params']['vidnas_analytic']:,}, reference {c['params']['reference']:,}; "
          f"FLOPs/call: vidnas {c['flops']['vidnas_analytic'] / 1e12:.3f} T, reference "
          f"{c['flops']['reference'] / 1e12:.3f} T (ratio {c['flops']['ratio']:.6f})")
    if "equivalence" in result:
        print(f"max abs difference {result['equivalence']['max_abs_difference']:.3g}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
