"""The study's streaming section: time to the first chunk and steady frames per second of causal designs with
their KV caches, against chunk size and cache window, beside CausVid's and Self Forcing's published figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from vidnas._errors import SpecError
from vidnas.reports._study_sites import Context, shape_label
from vidnas.reports._study_terms import FRAME_ATTENTION, matching_stream
from vidnas.search_space import ArchSpec, SearchSpace, TemporalChoice, get_space, get_temporal_op

# Streaming ------------------------------------------------------------------------------------------------

# One GPU, the papers' own figures (REFERENCES.md): time to the first frame and steady frames per second.
PUBLISHED_STREAMS = (
    {"system": "CausVid", "config": "tok_blockcausal(chunk=3)", "first_frame_ms": 1300.0, "fps": 9.4,
     "where": "one GPU", "from": "CausVid (arXiv 2412.07772)"},
    {"system": "Self Forcing", "config": "tok_causal_window(chunk=3)", "first_frame_ms": 690.0, "fps": 17.0,
     "where": "one GPU", "from": "Self Forcing (rolling KV cache)"},
)


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    space: str  # the space it comes from
    label: str
    spec: ArchSpec
    chunk: int  # latent frames per chunk
    window: int | None  # earlier chunks the cache keeps (None: all of them)
    measurable: bool  # may be measured on the study's backend (the studied space at its own shape)


def causvid_configs(space: SearchSpace) -> list[StreamConfig]:
    """Every attention choice of a ``causvid``-like space applied to all its attention slots."""
    configs = []
    for option in space.groups[0].options if space.groups else ():
        for choice in option.choices():
            chunk = int(choice.params.get("chunk", 1))
            window = choice.params.get("window") if choice.op == "tok_causal_window" else None
            slots = {s: choice for g in space.groups for s in g.slots}
            try:
                spec = space.base.replace_choices(slots)
            except SpecError:
                continue
            label = f"{choice.op}(chunk={chunk}" + (f", window={window})" if window is not None else ")")
            configs.append(StreamConfig("causvid", label, spec, max(chunk, spec.causal_block_frames), window, False))
    return configs


def causal_variants(space: SearchSpace) -> list[StreamConfig]:
    """The studied space's base made causal: convolutions and shifts causal, attention strictly causal, block-causal
    over chunks, or (transformers) with a rolling cache; every other non-causal slot dropped."""
    base = space.base
    t = _grid_frames(base)
    chunks = [c for c in (1, 2, 3, 4) if t % c == 0 and t // c >= 2]
    variants: list[tuple[str, Callable[[str], TemporalChoice], int, int | None]] = []
    for c in chunks:
        variants.append((f"causal 1-D attention, chunk {c}",
                         lambda layout: TemporalChoice("attn1d_causal" if layout == "frames" else "tok_blockcausal",
                                                       {} if layout == "frames" else {"chunk": 1}), c, None))
        if c > 1:
            variants.append((f"block-causal 3-D attention, chunk {c}",
                             lambda layout, c=c: TemporalChoice("attn3d_blockcausal" if layout == "frames"
                                                                else "tok_blockcausal", {"chunk": c}), c, None))
    if base.family != "unet":
        for c in chunks:
            for w in (1, 2):
                variants.append((f"rolling cache of {w} chunk(s), chunk {c}",
                                 lambda layout, c=c, w=w: TemporalChoice(
                                     "attn3d_blockcausal" if layout == "frames" else "tok_causal_window",
                                     {"chunk": c} if layout == "frames" else {"chunk": c, "window": w}), c, w))
    configs = []
    for label, attention, chunk, window in variants:
        spec = _made_causal(base, attention)
        if spec is not None and spec.is_causal and chunk % spec.causal_block_frames == 0:
            configs.append(StreamConfig(space.name, label, spec, chunk, window, True))
    return configs


def _grid_frames(spec: ArchSpec) -> int:
    return spec.slots()[0].shape.frames


def _made_causal(base: ArchSpec, attention: Callable[[str], TemporalChoice]) -> ArchSpec | None:
    changes = {}
    for info in base.slots():
        choice = base.temporal[info.name]
        opdef = get_temporal_op(choice.op)
        if choice.op == "none" or opdef.is_causal(choice.params):
            continue
        candidates = []
        if any(p.name == "causal" for p in opdef.params):
            candidates.append(TemporalChoice(choice.op, {**choice.params, "causal": True}))
        if choice.op in FRAME_ATTENTION or choice.op.startswith("tok_"):  # attention: the variant's causal kind
            candidates.append(attention(info.shape.layout))
        candidates.append(TemporalChoice("none"))
        for candidate in candidates:
            try:
                changes[info.name] = candidate.canonical(info.shape, f"temporal.{info.name}")
                break
            except SpecError:
                continue
    try:
        return base.replace_choices(changes)
    except SpecError:
        return None


def stream_section(ctx: Context, configs: list[StreamConfig]) -> dict[str, Any]:
    rows = []
    for config in configs:
        result = None
        for source in ctx.sources:
            result = source.stream(config.spec, chunk_frames=config.chunk, steps=ctx.options.steps,
                                   measure=config.measurable)
            if result is not None:
                break
        if result is None:
            continue
        per_chunk = result["per_chunk_ms"]
        full_at = max(1, config.window or 0)  # the first chunk whose cache holds the whole window
        growth = per_chunk[-1] / per_chunk[1] if len(per_chunk) >= 3 else None
        flat_after = (per_chunk[-1] / per_chunk[full_at] if config.window is not None and len(per_chunk) > full_at + 1
                      else None)
        rows.append({"space": config.space, "config": config.label, "arch_id": config.spec.arch_id,
                     "chunk": config.chunk, "window": config.window, "chunks": len(per_chunk),
                     "shape": shape_label(config.spec), **{k: v for k, v in result.items() if k != "source"},
                     "growth": growth, "growth_after_window": flat_after, "source": result["source"]})
    paper_shape = shape_label(get_space("causvid").base)  # the papers' Wan 2.1 1.3B at 81x480x832
    gaps = []
    for published in PUBLISHED_STREAMS:
        row = matching_stream(rows, published["system"])
        if row is None:
            continue
        gaps.append({**published, "target_first_chunk_ms": row["first_chunk_ms"], "target_fps": row["steady_fps"],
                     "config": row["config"], "shape": row["shape"], "paper_shape": paper_shape,
                     "at_paper_shape": row["shape"] == paper_shape, "source": row["source"]["label"],
                     "source_kind": row["source"]["kind"],
                     "first_chunk_ratio": row["first_chunk_ms"] / published["first_frame_ms"],
                     "fps_ratio": row["steady_fps"] / published["fps"],
                     "caveat": ("the papers time the first decoded frame with the text encoder and the autoencoder "
                                "on one GPU; " + (f"this is {row['source']['label']}, which leaves them out and runs "
                                                  "kernels at datasheet peaks (a lower bound)"
                                                  if row["source"]["kind"] == "roofline estimate" else
                                                  f"this is {row['source']['label']}, the network alone"))})
    return {"steps": ctx.options.steps, "passes_per_chunk": ctx.options.steps + 1, "configs": rows,
            "published": list(PUBLISHED_STREAMS), "gaps": gaps}
