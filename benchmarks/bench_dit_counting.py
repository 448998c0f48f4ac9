"""Video transformer presets against their diffusers references: parameters, FLOPs, the same function,
and the whole-process time of `vidnas space show PRESET --json`.

Models (``--model``): ``wan2.1-1.3b`` (``WanTransformer3DModel``, 81x480x832), ``ltx-video``
(``LTXVideoTransformer3DModel()`` defaults, 161x512x704 at 25 fps, LTXPipeline's defaults),
``latte`` (``LatteTransformer3DModel`` at Latte-1's configuration, 16x256x256) and
``cogvideox-2b`` (``CogVideoXTransformer3DModel()`` defaults, 49x480x720, 226 text tokens).

* params: vidnas's closed form, vidnas's network built on the meta device, and the reference
  built on the meta device (nothing downloaded);
* FLOPs per call at the model's shape: vidnas's closed form and its fake-tensor trace, against
  the reference run under ``FakeTensorMode`` with ``torch.utils.flop_counter`` (CPU attention
  registered), called as its pipeline calls it; no memory is allocated;
* the same function (``--equivalence``): a randomly initialised reference at the full width and
  depth, its weights mapped into the vidnas network, outputs compared on a small latent clip
  (``--equivalence-shape``); this allocates both models in float32 (Wan about 12 GB, LTX-Video
  about 16 GB, Latte about 9 GB, CogVideoX about 14 GB of RAM);
* ``vidnas space show`` in fresh processes: wall seconds, median and p10-p90 over ``--repeats``.

``--reduced`` runs everything on a two-block, narrow configuration of the same code path
(seconds; what the tests run). Writes one JSON object (with the environment) to ``--out``.

    python benchmarks/bench_dit_counting.py --model wan2.1-1.3b --repeats 7 --equivalence
    python benchmarks/bench_dit_counting.py --model ltx-video --repeats 7
    python benchmarks/bench_dit_counting.py --model cogvideox-2b --repeats 7
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

LTX_VIDEO: dict[str, Any] = {}  # LTXVideoTransformer3DModel()'s defaults are LTX-Video 2B
LTX_REDUCED = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=10,
                   cross_attention_dim=20, num_layers=2, caption_channels=32)

# Latte-1 text-to-video, native at 256x256 (sample_size 32 latent cells, a 16x16 token grid).
LATTE_1 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
               cross_attention_dim=1152, attention_bias=True, sample_size=32, patch_size=2,
               activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
               norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, video_length=16)
LATTE_REDUCED = dict(LATTE_1, num_attention_heads=2, attention_head_dim=8, num_layers=2, cross_attention_dim=16,
                     caption_channels=32, sample_size=8, video_length=3)

COGVIDEOX_2B: dict[str, Any] = {}  # CogVideoXTransformer3DModel()'s defaults are CogVideoX 2B
# Its positions hold exactly max_text_seq_length text tokens: 8, the reduced runs' text length.
COGVIDEOX_REDUCED = dict(num_attention_heads=2, attention_head_dim=16, time_embed_dim=24, text_embed_dim=32,
                         num_layers=2, max_text_seq_length=8)


def _wan_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to a WanTransformer3DModel config, at a pixel size."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space.families.dit.presets import WAN_TEMPORAL
    from vidnas.search_space.families.dit.spec import DiTBackbone

    bb = DiTBackbone(in_channels=config["in_channels"], out_channels=config["out_channels"],
                     patch_size=tuple(config["patch_size"]), heads=config["num_attention_heads"],
                     head_dim=config["attention_head_dim"], depth=config["num_layers"], ffn_dim=config["ffn_dim"],
                     text_dim=config["text_dim"], text_tokens=text_tokens, freq_dim=config["freq_dim"],
                     eps=config["eps"])
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), WAN_TEMPORAL)


def _ltx_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to an LTXVideoTransformer3DModel config (patch 1), at a pixel size."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space.families.dit.presets import LTX_VIDEO as PRESET
    from vidnas.search_space.families.dit.presets import WAN_TEMPORAL

    heads = config.get("num_attention_heads", PRESET.heads)
    head_dim = config.get("attention_head_dim", PRESET.head_dim)
    bb = dataclasses.replace(PRESET, in_channels=config.get("in_channels", PRESET.in_channels),
                             out_channels=config.get("out_channels", PRESET.out_channels), heads=heads,
                             head_dim=head_dim, depth=config.get("num_layers", PRESET.depth),
                             ffn_dim=4 * heads * head_dim, text_dim=config.get("caption_channels", PRESET.text_dim),
                             text_tokens=text_tokens)
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), WAN_TEMPORAL)


def _latte_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to a LatteTransformer3DModel config (adaLN-single), at a pixel size."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space.families.dit.presets import LATTE as PRESET
    from vidnas.search_space.families.dit.presets import LATTE_TEMPORAL

    dim = config["num_attention_heads"] * config["attention_head_dim"]
    p = config["patch_size"]
    bb = dataclasses.replace(PRESET, in_channels=config["in_channels"], out_channels=config["out_channels"],
                             patch_size=(1, p, p), heads=config["num_attention_heads"],
                             head_dim=config["attention_head_dim"], depth=2 * config["num_layers"], ffn_dim=4 * dim,
                             text_dim=config["caption_channels"], text_tokens=text_tokens, eps=config["norm_eps"],
                             pos_base=config["sample_size"] // p)
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), LATTE_TEMPORAL)


def _cogvideox_spec(config: dict[str, Any], frames: int, height: int, width: int, text_tokens: int):
    """The vidnas spec equivalent to a CogVideoXTransformer3DModel config (1.0: spatial patches, sine-cosine
    positions), at a pixel size; ``text_tokens`` must be the config's ``max_text_seq_length``."""
    from vidnas.search_space import ArchSpec
    from vidnas.search_space.families.dit.presets import COGVIDEOX_2B as PRESET
    from vidnas.search_space.families.dit.presets import COGVIDEOX_TEMPORAL

    heads = config.get("num_attention_heads", PRESET.heads)
    head_dim = config.get("attention_head_dim", PRESET.head_dim)
    if text_tokens != config.get("max_text_seq_length", PRESET.text_tokens):
        raise ValueError("CogVideoX's positions hold exactly max_text_seq_length text tokens")
    bb = dataclasses.replace(PRESET, heads=heads, head_dim=head_dim, depth=config.get("num_layers", PRESET.depth),
                             ffn_dim=4 * heads * head_dim, text_dim=config.get("text_embed_dim", PRESET.text_dim),
                             text_tokens=text_tokens, freq_dim=heads * head_dim,
                             time_dim=config.get("time_embed_dim", PRESET.time_dim))
    return ArchSpec.create(bb.resized(frames=frames, height=height, width=width), COGVIDEOX_TEMPORAL)


class Model(NamedTuple):
    """One preset and its reference at full and at reduced size."""

    reference_class: str  # a diffusers class name
    config: dict[str, Any]  # the real model's config ({}: the class defaults)
    reduced: dict[str, Any]  # two blocks, narrow, the same code path
    spec: Callable[..., Any]  # (config, frames, height, width, text_tokens) -> the equivalent vidnas spec
    shape: tuple[int, int, int]  # decoded frames, height, width at which FLOPs are counted
    text_tokens: int  # text tokens per clip at that shape
    reduced_shape: tuple[int, int, int]
    equivalence_shape: str  # default --equivalence-shape: a small clip for the full-size comparison
    equivalence_text_tokens: int = 16  # text tokens of the full-size comparison


MODELS: dict[str, Model] = {
    "wan2.1-1.3b": Model("WanTransformer3DModel", WAN_1_3B, REDUCED, _wan_spec, (81, 480, 832), 512, (9, 64, 64),
                         "5x64x64"),
    "ltx-video": Model("LTXVideoTransformer3DModel", LTX_VIDEO, LTX_REDUCED, _ltx_spec, (161, 512, 704), 128,
                       (17, 128, 192), "9x128x128"),
    # Latte's temporal table holds video_length frames: the clip keeps them (16; 3 when reduced).
    "latte": Model("LatteTransformer3DModel", LATTE_1, LATTE_REDUCED, _latte_spec, (16, 256, 256), 120,
                   (3, 64, 64), "16x64x64"),
    "cogvideox-2b": Model("CogVideoXTransformer3DModel", COGVIDEOX_2B, COGVIDEOX_REDUCED, _cogvideox_spec,
                          (49, 480, 720), 226, (9, 64, 64), "5x64x96", 226),
}


def _reference(model: Model, config: dict[str, Any]):
    import diffusers

    return getattr(diffusers, model.reference_class)(**config)


def counts(model: Model, config: dict[str, Any], frames: int, height: int, width: int,
           text_tokens: int) -> dict[str, Any]:
    import torch

    from vidnas.search_space import build_network, count_spec
    from vidnas.search_space._tracing import _fake_mode, count_module_call
    from vidnas.search_space.families.dit.weights import diffusers_forward

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

    class Call(torch.nn.Module):  # the reference as its pipeline calls it, on vidnas's tensors
        def __init__(self) -> None:
            super().__init__()
            self.reference = reference

        def forward(self, sample, timestep, context):
            return diffusers_forward(self.reference, spec, sample, timestep, context)

    t0 = time.perf_counter()
    with _fake_mode():
        reference = reference.to_empty(device="cpu")
        args = (torch.empty(1, bb.frames, bb.in_channels, bb.latent_height, bb.latent_width), torch.empty(1),
                torch.empty(1, text_tokens, bb.text_dim))
        ref_flops, ref_peak = count_module_call(Call(), args, args)
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
    from vidnas.search_space.families.dit.weights import diffusers_forward

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
        expected = diffusers_forward(reference, spec, sample, timestep, context)
    return {"shape": {"frames": frames, "height": height, "width": width}, "unmapped": unmapped,
            "max_abs_difference": float((got - expected).abs().max()), "max_abs_output": float(expected.abs().max())}


def space_show_seconds(preset: str, repeats: int) -> dict[str, float]:
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
    parser.add_argument("--equivalence", action="store_true", help="compare outputs at the full width (GBs of RAM)")
    parser.add_argument("--equivalence-shape", default=None, help="decoded frames x height x width")
    parser.add_argument("--reduced", action="store_true", help="a two-block narrow model (a smoke run)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/dit-counting[-MODEL].json (no suffix for Wan)")
    args = parser.parse_args(argv)

    import torch

    from vidnas._env import fingerprint

    torch.set_num_threads(1)
    model = MODELS[args.model]
    if args.reduced:
        config, shape, text = model.reduced, model.reduced_shape, 8
    else:
        config, shape, text = model.config, model.shape, model.text_tokens
    name = "reduced" if args.reduced else args.model
    result: dict[str, Any] = {"benchmark": "dit-counting", "model": name, "preset": args.model,
                              "reference": {"class": model.reference_class, "config": config},
                              "environment": fingerprint(threads=1), "counts": counts(model, config, *shape, text)}
    if args.equivalence or args.reduced:
        size = args.equivalence_shape or ("x".join(map(str, model.reduced_shape)) if args.reduced
                                          else model.equivalence_shape)
        frames, height, width = (int(v) for v in size.split("x"))
        text = 8 if args.reduced else model.equivalence_text_tokens
        result["equivalence"] = equivalence(model, config, frames, height, width, text)
    if args.repeats:
        result["space_show_seconds"] = space_show_seconds(args.model, args.repeats)
    suffix = "" if args.model == "wan2.1-1.3b" else f"-{args.model}"
    out = args.out or Path(__file__).parent / "results" / f"dit-counting{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    c = result["counts"]
    print(f"{name}: params: vidnas {c['params']['vidnas_analytic']:,}, reference {c['params']['reference']:,}; "
          f"FLOPs/call: vidnas {c['flops']['vidnas_analytic'] / 1e12:.3f} T, reference "
          f"{c['flops']['reference'] / 1e12:.3f} T (ratio {c['flops']['ratio']:.6f})")
    if "equivalence" in result:
        print(f"max abs difference {result['equivalence']['max_abs_difference']:.3g}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
