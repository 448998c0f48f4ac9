"""Weight sharing between an op's variants: which choices are sub-shapes of one module.

A weight-sharing supernet holds, per slot, one module per *sharing key* and runs each choice
with a slice of that module's weights. An op registers a :class:`SharingRule` beside its
definition (``register_temporal_op(..., sharing=RULE)``) saying which of its parameters leave
the weights' meaning unchanged (they go into the key) and how to cut a variant's weights out
of the largest one; the built-in rules
sit in ``ops/conv.py`` (kernel 3 is the centre of kernel 5, a funnel the first channels) and
``ops/attention.py`` (a funnel keeps the first heads and hidden units).

Ops without a rule share nothing: each distinct choice has its own module, so any op (a
plugin's too) works in a supernet. No torch at import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._registry import Registry

__all__ = ["SHARING_RULES", "SharingRule", "get_sharing_rule", "no_sharing_key", "prefix_slice", "register_sharing"]

Slicer = Callable[[str, Any, tuple[int, ...], Mapping[str, Any], Mapping[str, Any]], Any]


def prefix_slice(name: str, tensor: Any, shape: tuple[int, ...], full: Mapping[str, Any],
                 sub: Mapping[str, Any]) -> Any:
    """The leading ``shape`` block of ``tensor`` (the default cut: first channels, rows, heads)."""
    return tensor[tuple(slice(0, n) for n in shape)]


@dataclasses.dataclass(frozen=True)
class SharingRule:
    """How an op's variants share weights.

    ``shared`` names the parameters whose values do not enter the key (variants differing
    only in them share one module); ``largest`` picks, from the variants of one key, the
    parameters of the module to build (every variant must be a sub-shape of it); ``cut``
    returns a variant's parameter tensor from the largest module's (default: the leading block).
    """

    shared: tuple[str, ...]
    largest: Callable[[list[Mapping[str, Any]]], dict[str, Any]]
    cut: Slicer = prefix_slice

    def key(self, op: str, params: Mapping[str, Any]) -> tuple:
        return (op, tuple(sorted((k, v) for k, v in params.items() if k not in self.shared)))


SHARING_RULES: Registry[SharingRule] = Registry("vidnas.temporal_ops", "weight-sharing rule", field="op")


def register_sharing(op: str, rule: SharingRule) -> None:
    """Declare how the variants of ``op`` share weights (an op usually passes ``sharing=`` when it
    registers; this adds or replaces the rule of an op registered elsewhere)."""
    SHARING_RULES.register(op, rule)


def get_sharing_rule(op: str) -> SharingRule | None:
    """The rule of ``op``, or None when its variants share nothing."""
    return SHARING_RULES.get(op) if op in SHARING_RULES else None


def no_sharing_key(op: str, params: Mapping[str, Any]) -> tuple:
    return (op, tuple(sorted(params.items())))
