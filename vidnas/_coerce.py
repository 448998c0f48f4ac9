"""One set of rules for turning user-given scalars (JSON, YAML, trial values) into typed values.

Used by specs, backbones, op parameters and campaign configs alike, so the same value
is accepted or refused the same way everywhere:

* ``bool``: only ``true``/``false`` (never 0/1 or strings);
* ``int``: an integer, or a float with no fractional part (YAML and Optuna give ``3.0``);
  never a bool;
* ``float``: any integer or float, never a bool;
* ``str``: a string;
* tuples (per-level lists): a list or tuple, each item by the rule of the default's items.

Every refusal is a :class:`~vidnas._errors.SpecError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from vidnas._errors import SpecError

__all__ = ["coerce_field", "coerce_scalar"]


def coerce_scalar(kind: type, value: Any, field: str, *, optional: bool = False) -> Any:
    """``value`` as ``kind`` (bool, int, float, str; anything else passes through)."""
    if value is None:
        if optional:
            return None
        raise SpecError(field, value, "must not be empty")
    if kind is bool:
        if not isinstance(value, bool):
            raise SpecError(field, value, "must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool):
            raise SpecError(field, value, "must be an integer")
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise SpecError(field, value, "must be an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(field, value, "must be a number")
        if not math.isfinite(value):
            raise SpecError(field, value, "must be a finite number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise SpecError(field, value, "must be a string")
        return value
    return value


def coerce_field(f: dataclasses.Field, value: Any, field: str) -> Any:
    """``value`` for dataclass field ``f``, typed by its default (a tuple default means one entry per item)."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None and f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecError(field, value, "must be a list")
        if not default:
            return tuple(value)
        item_type = type(default[0])
        return tuple(coerce_scalar(item_type, v, f"{field}[{i}]") for i, v in enumerate(value))
    if default is None:
        return value
    return coerce_scalar(type(default), value, field)
