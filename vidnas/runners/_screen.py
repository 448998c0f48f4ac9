"""Cheap metrics first: a constraint the cheap metrics decide is checked before any expensive evaluation.

Every constraint of a campaign bounds a cheap metric (:mod:`vidnas.runners._metrics`), so the
driver can decide feasibility itself, in milliseconds, from the architecture alone. A trial
whose architecture breaks a bound is *screened*: it is never submitted for evaluation, it is
recorded at once (state PRUNED, user attributes ``screened: true``, the cheap metrics computed,
``fail_reason`` naming the bound broken, and its constraint values, so that samplers which
learn from constraints, such as TPE, learn from it), and it does not count against the
trial budget (:func:`vidnas.runners._trials.counts`). Reports and resumed campaigns count
screened trials apart from evaluated ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vidnas.runners._evaluate import EvalSettings, cheap_metrics
from vidnas.search_space import ArchSpec

__all__ = ["SCREEN_LIMIT", "Screen"]

# Screened trials in a row after which a campaign stops: its sampler keeps proposing architectures
# the constraints rule out (they may rule out nearly the whole space).
SCREEN_LIMIT = 2000


class Screen:
    """The campaign's cheap constraints, checked in the driver (see the module docstring)."""

    def __init__(self, constraints: Mapping[str, float], settings: EvalSettings) -> None:
        self.constraints = dict(constraints)
        self.settings = settings
        self.in_a_row = 0  # screened trials since the last evaluated one

    @property
    def active(self) -> bool:
        return bool(self.constraints)

    def verdict(self, spec: ArchSpec) -> tuple[dict[str, Any], dict[str, float]] | None:
        """``(cheap metrics, violations)`` when ``spec`` breaks a bound (violation = value - bound > 0), else None."""
        if not self.constraints:
            return None
        metrics = cheap_metrics(spec, self.settings)
        violations = {k: float(metrics[k]) - bound for k, bound in self.constraints.items()}
        if all(v <= 0 for v in violations.values()):
            return None
        return metrics, violations

    def screen(self, study, trial, spec: ArchSpec) -> bool:
        """Record ``trial`` as screened if ``spec`` breaks a bound; whether it did.

        A cheap metric that cannot be computed (e.g. a table entry missing) screens nothing: the
        evaluation then runs and fails with its own reason, recorded on the trial."""
        try:
            found = self.verdict(spec)
        except Exception:  # noqa: BLE001 (the evaluation reports the same failure, on the trial)
            self.in_a_row = 0
            return False
        if found is None:
            self.in_a_row = 0
            return False
        from optuna.trial import TrialState

        metrics, violations = found
        broken = [f"{k} {metrics[k]:.4g} > {self.constraints[k]:.4g}" for k, v in violations.items() if v > 0]
        trial.set_user_attr("arch_id", spec.arch_id)
        trial.set_user_attr("op_counts", spec.op_counts())
        for key, value in metrics.items():
            if key != "slot_ms":
                trial.set_user_attr(key, value)
        trial.set_user_attr("screened", True)
        trial.set_user_attr("fail_reason", f"screened: {', '.join(broken)} (cheap constraint); not evaluated, "
                                           "not counted")
        for key, value in violations.items():
            trial.set_constraint(key, value)
        study.tell(trial, state=TrialState.PRUNED)
        self.in_a_row += 1
        return True

    @property
    def exhausted(self) -> bool:
        """Whether the sampler has proposed :data:`SCREEN_LIMIT` screened architectures in a row."""
        return self.in_a_row >= SCREEN_LIMIT
