"""A study's sites (slots sharing a resolution level and position, with every choice offered there and the
probes the rules need), its options and the context its sections share (sources, memory budget, counts)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.reports._study_sources import Source
from vidnas.reports._study_terms import ATTN_3D, LENGTHS, ONE_D, op_class
from vidnas.search_space import ITEMSIZE, ArchSpec, SearchSpace, SlotShape, TemporalChoice, count_spec, get_temporal_op

# Sites -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Choice:
    """One choice at a site: canonical at the site's shape, the slots offering it, whether it is a probe."""

    label: str
    choice: TemporalChoice
    probe: bool
    slots: tuple[str, ...]

    @property
    def op(self) -> str:
        return self.choice.op

    @property
    def op_class(self) -> str:
        return op_class(self.choice.op)


@dataclasses.dataclass(frozen=True)
class Site:
    """Slots sharing one shape and position (e.g. every ``res`` slot at the 36x64 level)."""

    name: str
    label: str
    level: int  # 0: the highest resolution
    level_label: str
    position: str
    shape: SlotShape
    slots: tuple[str, ...]
    choices: tuple[Choice, ...]

    def describe(self) -> dict[str, Any]:
        s = self.shape
        return {"site": self.name, "label": self.label, "level": self.level, "level_label": self.level_label,
                "position": self.position, "channels": s.channels, "frames": s.frames, "height": s.height,
                "width": s.width, "layout": s.layout, "slots": list(self.slots)}


def choice_label(choice: TemporalChoice, shape: SlotShape) -> str:
    """``op(param=value, ...)`` with the parameters that differ from the op's defaults at ``shape``."""
    opdef = get_temporal_op(choice.op)
    diffs = []
    for p in opdef.params:
        if p.name in choice.params and choice.params[p.name] != p.default_for(shape):
            diffs.append(f"{p.name}={choice.params[p.name]}")
    return choice.op + (f"({', '.join(diffs)})" if diffs else "")


def _level_label(shape: SlotShape, index: int) -> str:
    unit = "D" if shape.layout == "tokens" else "C"
    return f"L{index} {shape.height}x{shape.width} {unit}{shape.channels}"


def build_sites(space: SearchSpace) -> list[Site]:
    """The space's searched slots grouped into sites, each with every choice offered there, plus probes where a
    level lacks a 1-D temporal layer or 3-D attention (so that the seeds' rules can be judged)."""
    info = {s.name: s for s in space.base.slots()}
    found: dict[tuple, dict[str, Any]] = {}
    for group in space.groups:
        for slot in group.slots:
            shape = info[slot].shape
            key = (shape.height, shape.width, shape.channels, info[slot].position)
            entry = found.setdefault(key, {"shape": shape, "position": info[slot].position, "slots": [],
                                           "choices": {}})
            entry["slots"].append(slot)
            for option in group.options:
                for choice in option.choices():
                    canonical = choice.canonical(shape, f"temporal.{slot}")
                    label = choice_label(canonical, shape)
                    entry["choices"].setdefault(label, (canonical, []))[1].append(slot)
    levels = sorted({k[:3] for k in found}, key=lambda k: (-k[0] * k[1], k[2]))
    sites = []
    for key, entry in found.items():
        level = levels.index(key[:3])
        level_label = _level_label(entry["shape"], level)
        choices = tuple(Choice(label, canonical, False, tuple(slots))
                        for label, (canonical, slots) in entry["choices"].items())
        sites.append(Site(f"L{level}.{entry['position']}", f"{level_label} · {entry['position']}", level,
                          level_label, entry["position"], entry["shape"], tuple(entry["slots"]), choices))
    sites.sort(key=lambda s: (s.level, s.name))
    return _with_probes(sites)


# Probes per missing class, per slot layout: registry ops placed where the space offers none of the class.
PROBES = {ONE_D: {"frames": ("attn1d", "conv1d"), "tokens": ("tok_factorised",)},
          ATTN_3D: {"frames": ("attn3d",), "tokens": ("tok_full",)}}


def _with_probes(sites: list[Site]) -> list[Site]:
    out = list(sites)
    for level in sorted({s.level for s in sites}):
        at_level = [i for i, s in enumerate(out) if s.level == level]
        present = {c.op_class for i in at_level for c in out[i].choices}
        for cls, by_layout in PROBES.items():
            if cls in present:
                continue
            placed = False
            ordered = sorted(at_level, key=lambda i: out[i].position != "attn")  # attention sites first
            for i in ordered:
                site = out[i]
                for op in by_layout.get(site.shape.layout, ()):
                    try:
                        canonical = TemporalChoice(op).canonical(site.shape, f"probe.{site.name}")
                    except SpecError:
                        continue
                    probe = Choice(choice_label(canonical, site.shape), canonical, True, site.slots)
                    out[i] = dataclasses.replace(site, choices=(*site.choices, probe))
                    placed = True
                    break
                if placed:
                    break
    return out


# The study's context -------------------------------------------------------------------------------------


@dataclasses.dataclass
class StudyOptions:
    """What a study computes beyond its space and source."""

    lengths: tuple[int, ...] = LENGTHS  # latent frames of the length study
    steps: int = 4  # denoising passes per streamed chunk (one more writes the cache)
    memory_budget: float | None = None  # bytes; None: the target's default (see ``default_memory_budget``)
    memory_budget_source: str | None = None
    run_dir: Path | None = None  # a campaign over the same space: its Pareto set's placement


class Context:
    """The space, its sources (primary, then fallback) and the caches shared by the sections."""

    def __init__(self, space: SearchSpace, sources: Sequence[Source], options: StudyOptions,
                 budget: float | None, budget_source: str) -> None:
        self.space = space
        self.base = space.base
        self.sources = list(sources)
        self.options = options
        self.budget = budget
        self.budget_source = budget_source
        dtype = self.sources[0].dtype
        self.mem_dtype = dtype if dtype in ITEMSIZE else "float32"
        self._counts: dict[str, Any] = {}

    def counts(self, spec: ArchSpec):
        if spec.arch_id not in self._counts:
            self._counts[spec.arch_id] = count_spec(spec, dtype=self.mem_dtype)
        return self._counts[spec.arch_id]

    def unit_counts(self, spec: ArchSpec) -> dict[str, Any]:
        return {u.name: u for u in self.counts(spec).units}

    def weights_bytes(self, spec: ArchSpec) -> int:
        return self.counts(spec).params * ITEMSIZE[self.mem_dtype]

    def first(self, compute: Callable[[Source], Any]) -> tuple[Any, Source]:
        """``compute(source)`` on the primary source, or on the fallback when the primary lacks a figure (None)."""
        for source in self.sources:
            value = compute(source)
            if value is not None:
                return value, source
        raise SpecError("source", self.sources[0].label, "has no figure for a comparison of this study",
                        "give a roofline fallback (--fallback-roofline)")


def shape_label(spec: ArchSpec) -> str:
    """``frames x height x width`` of the decoded video."""
    bb = spec.backbone
    return f"{bb.pixel_frames}x{bb.pixel_height}x{bb.pixel_width}"
