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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from vidnas._errors import SpecError
from vidnas._registry import Registry
from vidnas.search_space._backbone import SlotInfo
from vidnas.search_space._plan import UnitPlan
from vidnas.search_space._spec import ArchSpec, TemporalChoice

__all__ = [
    "SPACES",
    "OpOption",
    "SearchSpace",
    "SlotGroup",
    "TrialLike",
    "get_space",
    "list_spaces",
    "option",
    "register_space",
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

SpaceFactory = Callable[..., SearchSpace]  # factory(frames=, height=, width=, width_mult=) -> SearchSpace
SPACES: Registry[SpaceFactory] = Registry("vidnas.spaces", "search space", unknown="is not a search space",
                                          field="space")


def register_space(name: str, factory: SpaceFactory) -> SpaceFactory:
    """Add the named search space ``factory(**shape)`` (``shape``: any of frames, height, width,
    width_mult); its families' modules register theirs, a plugin through ``vidnas.spaces``."""
    return SPACES.register(name, factory)


def list_spaces() -> list[str]:
    return SPACES.names()


def get_space(name: str, *, frames: int | None = None, height: int | None = None, width: int | None = None,
              width_mult: float | None = None, field: str = "space") -> SearchSpace:
    """A named search space, optionally at another clip length, pixel size or channel width."""
    factory = SPACES.get(name, field)
    shape = {k: v for k, v in (("frames", frames), ("height", height), ("width", width),
                               ("width_mult", width_mult)) if v is not None}
    return dataclasses.replace(factory(**shape), shape=shape)


def option(op: str, **params: Any) -> OpOption:
    """An :class:`OpOption`; a single value fixes a parameter, a tuple lists the values searched."""
    return OpOption(op, {k: v if isinstance(v, tuple) else (v,) for k, v in params.items()})
