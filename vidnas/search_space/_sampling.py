"""Search spaces: which temporal choices each slot may take, and how a trial picks them.

This module is the only place that knows trial parameter names. A space groups slots
(each slot alone, or slots tied by level and position so that they share one choice)
and lists per group the ops allowed and the values of their searched parameters.
Sampling is define-by-run: for group ``g`` the trial suggests ``g:op``, then for that
op each searched parameter ``g:op.param``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from vidnas._errors import SpecError
from vidnas.search_space._backbone import SlotInfo
from vidnas.search_space._plan import UnitPlan
from vidnas.search_space._presets import SVD_TEMPORAL_ATTN, SVD_TEMPORAL_RES, get_preset
from vidnas.search_space._spec import ArchSpec, TemporalChoice

__all__ = [
    "OpOption",
    "SearchSpace",
    "SlotGroup",
    "TrialLike",
    "get_space",
    "list_spaces",
    "random_specs",
]

TIES = ("slot", "level_position", "stage_level_position")


class TrialLike(Protocol):
    """What sampling needs from an Optuna trial."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclasses.dataclass(frozen=True)
class OpOption:
    """An op a group may take and the values of its searched parameters.

    ``params`` maps a parameter name to the tuple of values searched; a 1-tuple fixes it.
    Parameters not named keep the op's defaults.
    """

    op: str
    params: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", {k: tuple(v) for k, v in sorted(dict(self.params).items())})

    def choices(self) -> Iterator[TemporalChoice]:
        names = list(self.params)
        for values in itertools.product(*(self.params[n] for n in names)):
            yield TemporalChoice(self.op, dict(zip(names, values)))

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.params.values())

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "params": {k: list(v) for k, v in self.params.items()}}


@dataclasses.dataclass(frozen=True)
class SlotGroup:
    """Slots that share one choice, and the options for it."""

    name: str
    slots: tuple[str, ...]
    options: tuple[OpOption, ...]

    @property
    def size(self) -> int:
        return sum(o.size for o in self.options)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A base spec and the groups of slots whose temporal choice is searched."""

    name: str
    base: ArchSpec
    groups: tuple[SlotGroup, ...]
    summary: str = ""
    shape: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # get_space's size arguments, if any

    def __post_init__(self) -> None:
        slots = {s.name: s for s in self.base.slots()}
        seen: set[str] = set()
        for group in self.groups:
            field = f"space.groups[{group.name}]"
            if not group.options:
                raise SpecError(f"{field}.options", [], "must list at least one op")
            ops = [o.op for o in group.options]
            if len(set(ops)) != len(ops):
                raise SpecError(f"{field}.options", ops, "names an op twice", "merge their parameter values")
            for slot in group.slots:
                if slot not in slots:
                    raise SpecError(f"{field}.slots", slot, "is not a slot of the base architecture")
                if slot in seen:
                    raise SpecError(f"{field}.slots", slot, "belongs to two groups")
                seen.add(slot)
                for option in group.options:
                    for choice in option.choices():
                        choice.canonical(slots[slot].shape, f"{field}.options[{option.op}]@{slot}")

    # Sampling --------------------------------------------------------------------------

    def sample(self, trial: TrialLike) -> ArchSpec:
        """The spec a trial picks (define-by-run: op first, then that op's parameters)."""
        choices: dict[str, TemporalChoice] = {}
        for group in self.groups:
            options = {o.op: o for o in group.options}
            op = trial.suggest_categorical(f"{group.name}:op", list(options))
            params = {}
            for name, values in options[op].params.items():
                params[name] = values[0] if len(values) == 1 else trial.suggest_categorical(
                    f"{group.name}:{op}.{name}", list(values)
                )
            for slot in group.slots:
                choices[slot] = TemporalChoice(op, params)
        return self.base.replace_choices(choices)

    def params_of(self, spec: ArchSpec) -> dict[str, Any]:
        """The trial parameters that reproduce ``spec`` (for enqueueing known architectures)."""
        out: dict[str, Any] = {}
        for group in self.groups:
            choice = spec.temporal[group.slots[0]]
            option = next((o for o in group.options if o.op == choice.op), None)
            if option is None:
                raise SpecError(f"temporal.{group.slots[0]}.op", choice.op, f"is not an option of group {group.name}")
            out[f"{group.name}:op"] = choice.op
            for name, values in option.params.items():
                if len(values) > 1:
                    out[f"{group.name}:{choice.op}.{name}"] = choice.params[name]
        return out

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        return math.prod(g.size for g in self.groups)

    def enumerate(self) -> Iterator[ArchSpec]:
        """Every architecture of the space (check :attr:`size` first)."""
        per_group = [[c for o in g.options for c in o.choices()] for g in self.groups]
        for combo in itertools.product(*per_group):
            yield self.base.replace_choices({s: c for g, c in zip(self.groups, combo) for s in g.slots})

    def random_specs(self, n: int, seed: int = 0, *, unique: bool = True) -> list[ArchSpec]:
        """``n`` specs drawn uniformly per decision (op, then parameters), reproducibly from ``seed``."""
        if n < 0:
            raise SpecError("n", n, "must be >= 0")
        if unique and n > self.size:
            raise SpecError("n", n, f"exceeds the {self.size} distinct architectures of space `{self.name}`")
        trial = _RandomTrial(seed)
        out: list[ArchSpec] = []
        seen: set[str] = set()
        attempts = 0
        while len(out) < n:
            spec = self.sample(trial)
            attempts += 1
            if unique and spec.arch_id in seen:
                if attempts > 100 * n + 1000:
                    raise SpecError("n", n, f"too many repeats drawing unique specs from space `{self.name}`")
                continue
            seen.add(spec.arch_id)
            out.append(spec)
        return out

    def slot_units(self, plans: Sequence[UnitPlan] | None = None
                   ) -> Iterator[tuple[SlotGroup, str, TemporalChoice, UnitPlan]]:
        """Every (group, slot, choice, unit) the space can put at a searched slot, slot by slot.

        ``plans`` is the base spec's plan (built when not given); each unit is the slot's
        unit with the choice's canonical op and parameters.
        """
        from vidnas.search_space._family import build_plan
        from vidnas.search_space._plan import slot_unit

        plans = build_plan(self.base) if plans is None else plans
        by_slot = {p.slot: p for p in plans if p.slot is not None}
        shapes = {s.name: s.shape for s in self.base.slots()}
        for group in self.groups:
            for slot in group.slots:
                for option in group.options:
                    for choice in option.choices():
                        canonical = choice.canonical(shapes[slot], f"temporal.{slot}")
                        yield group, slot, choice, slot_unit(by_slot[slot], canonical.op, canonical.params)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "size": self.size,
            "base_arch_id": self.base.arch_id,
            "shape": dict(self.shape),
            "groups": [
                {"name": g.name, "slots": list(g.slots), "options": [o.to_dict() for o in g.options]}
                for g in self.groups
            ],
        }

    # Construction ----------------------------------------------------------------------

    @classmethod
    def from_rules(
        cls,
        name: str,
        base: ArchSpec,
        rules: Sequence[tuple[str, Sequence[OpOption]]],
        *,
        tie: str = "slot",
        summary: str = "",
    ) -> SearchSpace:
        """Options per slot pattern (the last matching rule wins); slots no rule matches keep the base.

        ``tie`` groups slots sharing one choice: ``slot`` (none tied), ``level_position``
        (e.g. every ``attn`` slot at level 1, down, mid and up), or ``stage_level_position``.
        """
        if tie not in TIES:
            raise SpecError("tie", tie, "is not a tie mode", f"choose one of {list(TIES)}")
        rule_of: dict[str, int] = {}
        for index, (pattern, _) in enumerate(rules):
            matched = [s.name for s in base.slots() if fnmatch.fnmatchcase(s.name, pattern)]
            if not matched:
                raise SpecError(f"rules[{index}]", pattern, "matches no slot of the base architecture")
            rule_of.update({slot: index for slot in matched})
        grouped: dict[str, tuple[int, list[str]]] = {}
        for slot in base.slots():
            if slot.name not in rule_of:
                continue
            key = _group_key(slot, tie)
            index, members = grouped.setdefault(key, (rule_of[slot.name], []))
            if index != rule_of[slot.name]:
                raise SpecError("tie", tie, f"ties slots with different options under `{key}`")
            members.append(slot.name)
        groups = [SlotGroup(key, tuple(members), tuple(rules[index][1])) for key, (index, members) in grouped.items()]
        return cls(name, base, tuple(groups), summary)


def _group_key(slot: SlotInfo, tie: str) -> str:
    if tie == "slot":
        return slot.name
    if tie == "level_position":
        return f"L{slot.level}.{slot.position}"
    return f"{slot.stage}.L{slot.level}.{slot.position}"


class _RandomTrial:
    """A stand-in for an Optuna trial that picks uniformly with a seeded generator."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[self._rng.randrange(len(choices))]


def random_specs(space: str | SearchSpace, n: int, seed: int = 0, **shape: int | None) -> list[ArchSpec]:
    """``n`` distinct random specs from a named or given space."""
    if isinstance(space, str):
        space = get_space(space, **shape)
    return space.random_specs(n, seed)


# Named spaces -------------------------------------------------------------------------------


def _opt(op: str, **params: Any) -> OpOption:
    return OpOption(op, {k: v if isinstance(v, tuple) else (v,) for k, v in params.items()})


def _tiny(**shape: int | None) -> SearchSpace:
    base = get_preset("tiny").spec(**shape)
    t = base.backbone.frames
    res = [_opt("none"), _opt("conv1d", kernel=(3, 5), causal=(False, True)), _opt("conv2plus1d"),
           _opt("conv3d"), _opt("shift")]
    attn = [_opt("none"), _opt("attn1d"), _opt("attn1d_causal"), _opt("attn3d"), _opt("xattn1d"), _opt("xattn3d")]
    if t >= 4:
        attn.append(_opt("attn1d_window", window=(t // 2,), window_stride=(max(1, t // 4),)))
    if t % 2 == 0:
        attn.append(_opt("attn3d_blockcausal", chunk=(2,)))
    return SearchSpace.from_rules("tiny", base, [("*.res", res), ("*.attn", attn)],
                                  summary="every op at every slot of the tiny UNet")


def _tiny_enum(**shape: int | None) -> SearchSpace:
    base = get_preset("tiny").spec(**shape)
    res = [_opt("none"), _opt("conv1d", kernel=(3, 5)), _opt("shift"), _opt("conv2plus1d")]
    attn = [_opt("none"), _opt("attn1d"), _opt("attn1d_causal"), _opt("attn3d"), _opt("xattn1d")]
    return SearchSpace.from_rules("tiny-enum", base, [("*.res", res), ("*.attn", attn)], tie="level_position",
                                  summary="tiny UNet, one choice per level and position: small enough to enumerate")


def _tiny_enum_groups(name: str, attention: Sequence[tuple[str, str, Sequence[OpOption]]], summary: str,
                     **shape: int | None) -> SearchSpace:
    """The tiny UNet with one choice per stage and level at its conv blocks (five groups of four options)
    and the given attention groups ``(group name, slot pattern, options)``: enumerable benchmark spaces."""
    base = get_preset("tiny").spec(**shape)
    res = [_opt("none"), _opt("conv1d", kernel=(3,)), _opt("shift"), _opt("conv2plus1d")]
    res_groups = SearchSpace.from_rules(name, base, [("*.res", res)], tie="stage_level_position").groups
    attn_groups = []
    for group, pattern, options in attention:
        slots = tuple(s.name for s in base.slots() if fnmatch.fnmatchcase(s.name, pattern))
        attn_groups.append(SlotGroup(group, slots, tuple(options)))
    return SearchSpace(name, base, res_groups + tuple(attn_groups), summary)


def _tiny_enum_3k(**shape: int | None) -> SearchSpace:
    attn = [_opt("none"), _opt("attn1d"), _opt("attn3d")]
    summary = ("tiny UNet, 3,072 architectures: a conv choice per stage and level, one attention choice for all "
               "(a search benchmark)")
    return _tiny_enum_groups("tiny-enum-3k", [("L1.attn", "*.attn", attn)], summary, **shape)


def _tiny_enum_30k(**shape: int | None) -> SearchSpace:
    down = [_opt("none"), _opt("attn1d")]
    mid = [_opt("none"), _opt("attn1d"), _opt("attn3d")]
    up = [_opt("none"), _opt("attn1d"), _opt("attn1d_causal"), _opt("attn3d"), _opt("xattn1d")]
    attention = [("down.L1.attn", "down.*.attn", down), ("mid.L1.attn", "mid.*.attn", mid),
                 ("up.L1.attn", "up.*.attn", up)]
    summary = ("tiny UNet, 30,720 architectures: a conv choice per stage and level, an attention choice per stage "
               "(a search benchmark)")
    return _tiny_enum_groups("tiny-enum-30k", attention, summary, **shape)


def _flops_mislead(**shape: int | None) -> SearchSpace:
    """Options whose FLOPs and latency disagree: zero-FLOP and memory-bound ops beside dense ones.

    Shifts (no FLOPs, only data movement), funnelled conv blocks (few FLOPs, full-width group
    norms), windowed attention over many two-frame windows (many small products), temporal
    multiscaling (half the frames inside, pooling and repetition around) and funnelled
    attention, against dense conv3d and attn3d; on the tiny UNet so that it runs fast on a CPU.
    """
    base = get_preset("tiny").spec(**shape)
    t = base.backbone.frames
    strides = (1, 2) if t % 2 == 0 and t >= 4 else (1,)
    res = [_opt("none"), _opt("shift", fold_div=(4, 8), temporal_stride=strides),
           _opt("conv1d", funnel=(0.25, 1.0), temporal_stride=strides), _opt("conv3d")]
    attn = [_opt("none"), _opt("attn1d", funnel=(0.25, 1.0), temporal_stride=strides), _opt("attn3d")]
    if t >= 2:
        attn.append(_opt("attn1d_window", window=(2,), window_stride=(1,), funnel=(0.25, 1.0)))
    return SearchSpace.from_rules("flops-mislead", base, [("*.res", res), ("*.attn", attn)],
                                  summary="tiny UNet with zero-FLOP and memory-bound temporal options, where FLOPs "
                                          "mislead about latency (a benchmark of latency tables against counting)")


SNAPGEN_V_OPS = (
    _opt("none"), _opt("conv1d", kernel=(3, 5)), _opt("conv3d"), _opt("attn1d"), _opt("attn3d"), _opt("xattn1d"),
    _opt("xattn3d"),
)


def _snapgen_v(**shape: int | None) -> SearchSpace:
    base = get_preset("snapgen-v").spec(**shape)
    return SearchSpace.from_rules("snapgen-v", base, [("*", SNAPGEN_V_OPS)],
                                  summary="SnapGen-V's six temporal layers (or none) at every slot")


def _svd_pruning(preset: str, **shape: int | None) -> SearchSpace:
    base = get_preset(preset).spec(**shape)
    funnels = (0.25, 0.5, 0.75, 1.0)
    res = [_opt("none"), _opt(SVD_TEMPORAL_RES["op"], **SVD_TEMPORAL_RES["params"], funnel=funnels,
                              temporal_stride=(1, 2))]
    attn = [_opt("none"), _opt(SVD_TEMPORAL_ATTN["op"], **SVD_TEMPORAL_ATTN["params"], funnel=funnels,
                               temporal_stride=(1, 2))]
    if base.backbone.frames % 2:
        res[1] = _opt(SVD_TEMPORAL_RES["op"], **SVD_TEMPORAL_RES["params"], funnel=funnels)
        attn[1] = _opt(SVD_TEMPORAL_ATTN["op"], **SVD_TEMPORAL_ATTN["params"], funnel=funnels)
    return SearchSpace.from_rules(preset, base, [("*.res", res), ("*.attn", attn)],
                                  summary="MobileVD: prune each SVD temporal block, funnel its width, halve its frames")


_SPACES = {
    "tiny": _tiny,
    "tiny-enum": _tiny_enum,
    "tiny-enum-3k": _tiny_enum_3k,
    "tiny-enum-30k": _tiny_enum_30k,
    "flops-mislead": _flops_mislead,
    "snapgen-v": _snapgen_v,
    "mobilevd": lambda **shape: _svd_pruning("mobilevd", **shape),
    "svd": lambda **shape: _svd_pruning("svd", **shape),
}

from vidnas.search_space._dit_spaces import DIT_SPACES  # noqa: E402  (transformer spaces, in their own module)

_SPACES.update(DIT_SPACES)


def list_spaces() -> list[str]:
    return list(_SPACES)


def get_space(name: str, *, frames: int | None = None, height: int | None = None, width: int | None = None,
              width_mult: float | None = None, field: str = "space") -> SearchSpace:
    """A named search space, optionally at another clip length, pixel size or channel width."""
    try:
        factory = _SPACES[name]
    except KeyError:
        raise SpecError(field, name, "is not a search space", f"choose one of {list(_SPACES)}") from None
    shape = {k: v for k, v in (("frames", frames), ("height", height), ("width", width),
                               ("width_mult", width_mult)) if v is not None}
    return dataclasses.replace(factory(**shape), shape=shape)
