"""Predicted against measured latency: MAPE, share within +-10 %, rank correlations, worst cases."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any

from vidnas._errors import SpecError
from vidnas._stats import kendall, spearman


@dataclasses.dataclass(frozen=True)
class AccuracyReport:
    """Predicted against measured end-to-end latency on held-out architectures.

    ``mape`` and ``within_10pct`` are fractions (0.05 is 5 %); errors are relative to the
    measured figure.
    """

    n: int
    mape: float
    within_10pct: float
    spearman: float
    kendall: float
    worst: tuple[dict[str, Any], ...]

    @classmethod
    def from_pairs(cls, predicted: Sequence[float], measured: Sequence[float], arch_ids: Sequence[str],
                   worst: int = 5) -> AccuracyReport:
        if not len(predicted) == len(measured) == len(arch_ids) or not measured:
            raise SpecError("predicted/measured", (len(predicted), len(measured), len(arch_ids)),
                            "must be equally long and not empty")
        errors = [(p - m) / m for p, m in zip(predicted, measured)]
        order = sorted(range(len(errors)), key=lambda i: -abs(errors[i]))[:worst]
        worst_rows = tuple({"arch_id": arch_ids[i], "predicted_ms": predicted[i], "measured_ms": measured[i],
                            "error": errors[i]} for i in order)
        return cls(len(errors), statistics.fmean(abs(e) for e in errors),
                   sum(abs(e) <= 0.10 for e in errors) / len(errors),
                   spearman(predicted, measured) if len(errors) > 2 else math.nan,
                   kendall(predicted, measured) if len(errors) > 2 else math.nan, worst_rows)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "worst": list(self.worst)}
