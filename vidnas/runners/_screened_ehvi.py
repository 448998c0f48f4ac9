"""``screened-ehvi``: cheap objectives screen a pool, a surrogate and expected hypervolume improvement pick.

Made for the shape of a vidnas campaign: every objective but quality (latency, memory,
params, FLOPs) is known exactly for any architecture in microseconds, and only the quality
signal costs an evaluation. Per trial:

1. **Pool** (built once): every architecture of the space when it has at most ``pool_size``,
   else ``pool_size`` distinct ones drawn uniformly per group (seeded). Its cheap objectives
   and constrained metrics are computed vectorised (:class:`~vidnas.runners._cheap.CheapModel`)
   and candidates breaking a constraint are dropped: the sampler never proposes one. In a space
   larger than the pool, every one-choice change of the current front's architectures joins the
   candidates each trial (``neighbours``), so the search is not confined to the draw.
2. **Surrogate** of the expensive objective, refitted each trial on the evaluated trials:
   Bayesian linear regression on the one-hot choice of each slot group (an additive model of
   per-group effects), with the prior precision of each group's weights and the noise
   precision set by maximising the evidence (MacKay's updates; ``ard``: one precision per
   group, so a group that does not matter is shrunk; ``ridge``: one for all). It is exact and
   closed form, takes milliseconds on a few thousand trials, gives a calibrated predictive
   variance (larger for options never tried), and never fails to fit; a choice unseen so far
   predicts the prior. Trees or a GP would model interactions, at a cost in trials a search of
   a few hundred evaluations does not have.
3. **Acquisition**: expected hypervolume improvement in the joint objective space over the
   current front (feasible evaluated trials), the cheap objectives exact and the expensive one
   Gaussian from the surrogate. With one cheap objective it is a closed-form sum over the
   front's steps, vectorised; with more, an exact sum over the front's prefixes per candidate.
   An upper bound (the candidate's whole dominated box times the expected improvement below
   the front's level at its cheap point, with a variance bound) ranks the pool, and exact
   values are computed chunk by chunk in bound order until no remaining bound beats the best:
   the argmax over the whole pool, at the cost of a few chunks.
4. **First trials** (``n_startup_trials``): space-filling along the cheap objectives (targets
   at van der Corput quantiles of the pool's cheap score), each pick covering as many
   not-yet-tried options as possible, so the surrogate sees every option early.
5. **Duplicates and parallel trials**: an architecture already in the study (any state,
   including running and waiting trials) is never proposed again; running trials enter the
   front with their predicted value (kriging believer), which keeps parallel workers apart.

Optuna calls :meth:`sample_independent` once per parameter, define-by-run; the first call of
a trial picks the whole architecture and the rest read it, by the names
:meth:`SearchSpace.sample` suggests. Everything is a function of the study's trials and the
seed, so runs, resumed runs and drivers sharing a study behave alike. With no expensive
objective the last objective is treated as exactly known (variance zero): the sampler then
walks the cheap front by hypervolume improvement. Two or more expensive objectives are not
supported (a :class:`SpecError` says so).

Each trial records in its system attributes (``screened_ehvi``) how it was chosen: the
mode, the candidates, and the expected improvement, mean and standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vidnas._errors import SpecError
from vidnas.runners._cheap import CheapModel
from vidnas.runners._metrics import parse_metric

__all__ = ["ScreenedEHVISampler"]

ATTR = "screened_ehvi"
REF = 1.1  # the reference point, in objective units normalised to [0, 1] over the pool (cheap) or trials
CHUNK = 512  # candidates whose exact EHVI is computed at once


def _base_sampler():
    import optuna

    return optuna.samplers.BaseSampler


class ScreenedEHVISampler(_base_sampler()):  # type: ignore[misc]
    """See the module docstring. Keyword-only; built by the sampler registry from a campaign."""

    def __init__(self, *, space, cheap: CheapModel | None, metrics: Sequence[str], directions: Sequence[str],
                 constraints: Mapping[str, float] | None = None, seed: int = 0, pool_size: int = 100_000,
                 n_startup_trials: int | None = None, surrogate: str = "ard", exploration: float = 1.0,
                 neighbours: bool = True) -> None:
        self.space = space
        self.cheap = cheap if cheap is not None else CheapModel(space)
        self.metrics = list(metrics)
        self.signs = np.asarray([1.0 if d == "minimize" else -1.0 for d in directions])
        self.constraints = dict(constraints or {})
        self.seed = int(seed)
        self.pool_size = int(pool_size)
        self.surrogate_kind = surrogate
        self.exploration = float(exploration)
        self.neighbours = bool(neighbours)
        info = [parse_metric(m, check=False) for m in self.metrics]
        expensive = [j for j, m in enumerate(info) if not (m.is_cheap and self.cheap.available(m.name))]
        if len(expensive) > 1:
            raise SpecError("config.objectives", self.metrics, "has more than one expensive objective, which "
                                                               "screened-ehvi does not model",
                            "keep one expensive objective (bound the others by constraints) or use nsga2 or tpe")
        # q: the modelled objective (the expensive one; else the last, known exactly); c: the cheap ones
        self.q_index = expensive[0] if expensive else len(self.metrics) - 1
        self.q_exact = not expensive
        self.c_index = [j for j in range(len(self.metrics)) if j != self.q_index]
        groups = len(space.groups)
        options = int(self.cheap.sizes.sum())
        self.n_startup = (n_startup_trials if n_startup_trials is not None
                          else max(5, math.ceil(options / max(1, groups)) + 2))
        self._pool: dict[str, Any] | None = None
        self._picks: dict[int, dict[str, Any]] = {}
        self._encoded: dict[int, tuple[np.ndarray, int] | None] = {}

    # Optuna's interface ------------------------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        if trial._trial_id not in self._picks:
            self._picks[trial._trial_id] = self._pick(study, trial)
        value = self._picks[trial._trial_id].get(param_name)
        choices = getattr(param_distribution, "choices", None)
        if value is not None and (choices is None or value in choices):
            return value
        # a parameter outside the space's naming (another user of the study): a seeded uniform choice
        import optuna

        rng = np.random.default_rng([self.seed, trial.number, 7])
        if choices is not None:
            return choices[int(rng.integers(len(choices)))]
        return optuna.samplers.RandomSampler(seed=int(rng.integers(2**31))).sample_independent(
            study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._picks.pop(trial._trial_id, None)

    # The pool ----------------------------------------------------------------------------

    def _cheap_names(self) -> list[str]:
        names = [self.metrics[j] for j in self.c_index]
        return names + ([self.metrics[self.q_index]] if self.q_exact else [])

    def _score(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(cheap objectives in minimisation form (N, k'), feasible (N,))`` of candidate rows."""
        names = self._cheap_names()
        signs = [self.signs[j] for j in self.c_index] + ([self.signs[self.q_index]] if self.q_exact else [])
        values = self.cheap.metrics(names, indices) if names else {}
        objectives = np.stack([values[n] * s for n, s in zip(names, signs)], axis=1) if names \
            else np.zeros((len(indices), 0))
        feasible = (self.cheap.violations(indices, self.constraints) <= 0).all(axis=1)
        return objectives, feasible

    def _codes(self, indices: np.ndarray) -> np.ndarray:
        """One integer per architecture: exact mixed-radix codes, or a 64-bit hash for huge spaces."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1, len(self.cheap.sizes))
        if self.cheap.size < 2**62:
            return self.cheap.codes(indices)
        code = np.zeros(len(indices), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for g in range(indices.shape[1]):
                code = code * np.uint64(0x9E3779B97F4A7C15) + indices[:, g].astype(np.uint64) + np.uint64(1)
        return code.view(np.int64)

    def _build_pool(self) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, 1])
        if self.cheap.size <= self.pool_size:
            indices = self.cheap.enumerate_indices()
            complete = True
        else:
            indices = self.cheap.random_indices(self.pool_size, rng)
            _, first = np.unique(self._codes(indices), return_index=True)
            indices = indices[np.sort(first)]
            complete = False
        objectives, feasible = self._score(indices)
        if not feasible.any():
            where = "architecture of the space" if complete else f"of the {len(indices)} candidates drawn"
            raise SpecError("config.constraints", self.constraints, f"leave no {where}",
                            "loosen the constraints" + ("" if complete else " or raise sampler.pool_size"))
        indices, objectives = indices[feasible], objectives[feasible]
        lo = objectives.min(axis=0) if len(objectives) else np.zeros(0)
        hi = objectives.max(axis=0) if len(objectives) else np.zeros(0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        return {"indices": indices, "flat": indices + self.cheap.offsets, "codes": self._codes(indices),
                "objectives": (objectives - lo) / scale, "lo": lo, "scale": scale, "complete": complete,
                "drawn": int(len(feasible)), "feasible": int(feasible.sum())}

    def pool(self) -> dict[str, Any]:
        if self._pool is None:
            self._pool = self._build_pool()
        return self._pool

    # The study ---------------------------------------------------------------------------

    def _encode(self, trial) -> tuple[np.ndarray, int] | None:
        """The trial's choice indices and code (None while its parameters are incomplete)."""
        from optuna.trial import TrialState

        cached = self._encoded.get(trial._trial_id)
        if cached is not None:
            return cached
        params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})
        try:
            indices = self.cheap.encode_params(params)
        except SpecError:
            return None
        out = (indices, int(self._codes(indices[None])[0]))
        if trial.state != TrialState.WAITING:  # a waiting trial's parameters are final too, but it may change state
            self._encoded[trial._trial_id] = out
        return out

    def _history(self, study, current) -> dict[str, Any]:
        """Used codes, evaluated rows (indices, objective values) and pending rows, from the study."""
        from optuna.trial import TrialState

        used, done_idx, done_values, done_feasible, pending = set(), [], [], [], []
        for t in study.get_trials(deepcopy=False):
            if t._trial_id == current._trial_id:
                continue
            encoded = self._encode(t)
            if encoded is None:
                continue
            indices, code = encoded
            used.add(code)
            if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == len(self.metrics):
                values = np.asarray(t.values, dtype=float) * self.signs
                if np.all(np.isfinite(values)):
                    done_idx.append(indices)
                    done_values.append(values)
                    done_feasible.append(all(v <= 0 for v in t.constraints.values()))
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                pending.append(indices)
        groups = len(self.cheap.sizes)
        return {"used": used,
                "indices": np.asarray(done_idx, dtype=np.int64).reshape(-1, groups),
                "values": np.asarray(done_values, dtype=float).reshape(-1, len(self.metrics)),
                "feasible": np.asarray(done_feasible, dtype=bool),
                "pending": np.asarray(pending, dtype=np.int64).reshape(-1, groups)}

    # Picking -----------------------------------------------------------------------------

    def _pick(self, study, trial) -> dict[str, Any]:
        pool = self.pool()
        history = self._history(study, trial)
        rng = np.random.default_rng([self.seed, trial.number])
        indices, flat, objectives, codes = pool["indices"], pool["flat"], pool["objectives"], pool["codes"]
        if self.neighbours and not pool["complete"]:
            extra = self._neighbours(history)
            if len(extra):
                extra_obj, feasible = self._score(extra)
                extra, extra_obj = extra[feasible], extra_obj[feasible]
                extra_codes = self._codes(extra)
                keep = ~np.isin(extra_codes, codes)
                extra, extra_obj, extra_codes = extra[keep], extra_obj[keep], extra_codes[keep]
                _, first = np.unique(extra_codes, return_index=True)
                extra, extra_obj, extra_codes = extra[first], extra_obj[first], extra_codes[first]
                indices = np.concatenate([indices, extra])
                flat = np.concatenate([flat, extra + self.cheap.offsets])
                objectives = np.concatenate([objectives, (extra_obj - pool["lo"]) / pool["scale"]])
                codes = np.concatenate([codes, extra_codes])
        available = ~np.isin(codes, np.fromiter(history["used"], dtype=np.int64, count=len(history["used"])))
        if not available.any():  # every feasible candidate has been tried: a seeded draw from the pool
            row = int(rng.integers(len(indices)))
            return self._record(study, trial, indices[row], {"mode": "exhausted", "candidates": 0})
        if not self.q_exact and len(history["values"]) < self.n_startup:
            row = self._startup(history, indices, objectives, available, rng)
            return self._record(study, trial, indices[row], {"mode": "startup", "candidates": int(available.sum())})
        row, detail = self._ehvi_pick(history, flat, objectives, available)
        return self._record(study, trial, indices[row], {"mode": "ehvi", "candidates": int(available.sum()),
                                                         **detail})

    def _record(self, study, trial, indices: np.ndarray, detail: dict[str, Any]) -> dict[str, Any]:
        clean = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in detail.items()}
        study._storage.set_trial_system_attr(trial._trial_id, ATTR, clean)
        return self.cheap.params_of(indices)

    def _neighbours(self, history) -> np.ndarray:
        """Every one-choice change of the evaluated non-dominated architectures."""
        if not len(history["values"]):
            return np.zeros((0, len(self.cheap.sizes)), dtype=np.int64)
        keep = history["feasible"]
        front = _front_mask(history["values"][keep]) if keep.any() else np.zeros(0, dtype=bool)
        base = history["indices"][keep][front]
        out = []
        for row in base:
            for g, size in enumerate(self.cheap.sizes):
                block = np.repeat(row[None], size, axis=0)
                block[:, g] = np.arange(size)
                out.append(block)
        return np.concatenate(out) if out else np.zeros((0, len(self.cheap.sizes)), dtype=np.int64)

    def _startup(self, history, indices, objectives, available, rng) -> int:
        """Space-filling along the cheap objectives, covering untried options (see the module docstring)."""
        n = len(history["values"]) + len(history["pending"])
        tried = np.zeros(int(self.cheap.sizes.sum()), dtype=bool)
        for rows in (history["indices"], history["pending"]):
            if len(rows):
                tried[(rows + self.cheap.offsets).ravel()] = True
        rows = np.flatnonzero(available)
        if objectives.shape[1]:
            score = objectives[rows].sum(axis=1)
            order = np.argsort(score, kind="stable")
            target = _van_der_corput(n + 1)
            width = max(1, len(rows) // (2 * max(2, self.n_startup)))
            centre = int(target * (len(rows) - 1))
            window = order[max(0, centre - width): centre + width + 1]
            rows = rows[window]
        new = (~tried[indices[rows] + self.cheap.offsets]).sum(axis=1)
        best = rows[new == new.max()]
        return int(best[int(rng.integers(len(best)))])

    def _ehvi_pick(self, history, flat, objectives, available) -> tuple[int, dict[str, Any]]:
        pool = self.pool()
        # the front: feasible evaluated trials, normalised like the pool (cheap) and the trials (q)
        values = history["values"]
        cheap_cols = self.c_index
        c_done = (values[:, cheap_cols] - pool["lo"][: len(cheap_cols)]) / pool["scale"][: len(cheap_cols)]
        model = None
        if self.q_exact:
            q_lo, q_scale = pool["lo"][-1], pool["scale"][-1]
            q_done = (values[:, self.q_index] - q_lo) / q_scale
            cand_c, cand_q = objectives[:, :-1], objectives[:, -1]
            mean, sd_bound = cand_q, np.zeros(len(cand_q))
        else:
            q_raw = values[:, self.q_index]
            q_lo = float(q_raw.min())
            q_scale = float(q_raw.max() - q_lo) or 1.0
            q_done = (q_raw - q_lo) / q_scale
            model = _Surrogate(self.cheap.offsets, self.cheap.sizes, self.surrogate_kind)
            model.fit(history["indices"] + self.cheap.offsets, q_done)
            cand_c = objectives
            mean = model.mean(flat)
            sd_bound = np.sqrt(model.variance_bound(flat)) * self.exploration
        front_c, front_q = c_done[history["feasible"]], q_done[history["feasible"]]
        if len(history["pending"]):  # kriging believer: running trials at their predicted (or exact) value
            p_obj, _ = self._score(history["pending"])
            p_c = (p_obj[:, : len(cheap_cols)] - pool["lo"][: len(cheap_cols)]) / pool["scale"][: len(cheap_cols)]
            if self.q_exact:
                p_q = (p_obj[:, -1] - q_lo) / q_scale
            else:
                p_q = model.mean(history["pending"] + self.cheap.offsets)
            front_c, front_q = np.concatenate([front_c, p_c]), np.concatenate([front_q, p_q])
        keep = front_q < REF
        if len(cheap_cols):
            keep &= (front_c < REF).all(axis=1)
        front_c, front_q = front_c[keep], front_q[keep]
        if len(front_q):
            nd = _front_mask(np.concatenate([front_c, front_q[:, None]], axis=1))
            front_c, front_q = front_c[nd], front_q[nd]
        ref_c = np.full(len(cheap_cols), REF)
        bound = _ehvi_bound(cand_c, mean, np.maximum(sd_bound, 1e-12), front_c, front_q, ref_c, REF)
        bound[~available] = -np.inf

        def exact(rows: np.ndarray) -> np.ndarray:
            sd = np.zeros(len(rows)) if model is None else np.sqrt(model.variance(flat[rows])) * self.exploration
            return _ehvi(cand_c[rows], mean[rows], np.maximum(sd, 1e-12), front_c, front_q, ref_c, REF)

        chunk = CHUNK if len(cheap_cols) <= 1 else 64
        n_avail = int(available.sum())
        first = np.argpartition(-bound, min(chunk, len(bound) - 1))[:chunk] if len(bound) > chunk \
            else np.arange(len(bound))
        first = first[np.isfinite(bound[first])]
        values_first = exact(first)
        best_i = int(np.argmax(values_first))
        best_row, best_value = int(first[best_i]), float(values_first[best_i])
        evaluated = len(first)
        if evaluated < n_avail:
            rest = np.ones(len(bound), dtype=bool)
            rest[first] = False
            rest &= np.isfinite(bound)
            rows_rest = np.flatnonzero(rest)
            order = rows_rest[np.argsort(-bound[rows_rest], kind="stable")]
            for start in range(0, len(order), chunk):
                rows = order[start: start + chunk]
                if bound[rows[0]] <= best_value:
                    break
                v = exact(rows)
                evaluated += len(rows)
                i = int(np.argmax(v))
                if v[i] > best_value:
                    best_row, best_value = int(rows[i]), float(v[i])
        if best_value <= 0:  # no candidate improves the front (in expectation): the best predicted one
            masked = np.where(available, mean, np.inf) if cand_c.shape[1] == 0 \
                else np.where(available, mean + cand_c.sum(axis=1), np.inf)
            best_row = int(np.argmin(masked))
        detail = {"ehvi": best_value, "exact_evaluations": evaluated, "front": int(len(front_q))}
        if model is not None:
            detail.update(mean=float(mean[best_row]) * q_scale + q_lo,
                          std=float(np.sqrt(model.variance(flat[best_row: best_row + 1]))[0]) * q_scale)
        return best_row, detail


# Surrogate -----------------------------------------------------------------------------------


class _Surrogate:
    """Bayesian linear regression on one-hot group choices, evidence-maximised (see the module docstring).

    Targets are centred; weights ``w ~ N(0, diag(1/alpha))`` with ``alpha`` per group (``ard``) or
    shared (``ridge``); noise precision ``beta``. Fitted by MacKay's fixed-point updates from the
    same start every time, so a fit is a function of the data alone.
    """

    def __init__(self, offsets: np.ndarray, sizes: np.ndarray, kind: str = "ard", iterations: int = 50) -> None:
        self.offsets = np.asarray(offsets)
        self.sizes = np.asarray(sizes)
        self.kind = kind
        self.iterations = iterations
        self.dim = int(self.sizes.sum())
        self.group_of = np.repeat(np.arange(len(self.sizes)), self.sizes)

    def fit(self, flat: np.ndarray, y: np.ndarray) -> _Surrogate:
        n = len(y)
        x = np.zeros((n, self.dim))
        if n:
            x[np.arange(n)[:, None], flat] = 1.0
        self.y_mean = float(y.mean()) if n else 0.0
        t = y - self.y_mean
        xtx, xty = x.T @ x, x.T @ t
        var = float(t.var()) if n > 1 else 1.0
        var = var if var > 0 else 1.0
        groups = len(self.sizes)
        alpha = np.full(groups, 1.0 / var)
        beta = 10.0 / var
        for _ in range(self.iterations):
            precision = beta * xtx + np.diag(alpha[self.group_of])
            cov = np.linalg.inv(precision)
            m = beta * cov @ xty
            gamma = 1.0 - alpha[self.group_of] * np.diag(cov)
            if self.kind == "ard":
                g_gamma = np.bincount(self.group_of, gamma, minlength=groups)
                g_m2 = np.bincount(self.group_of, m * m, minlength=groups)
                new_alpha = g_gamma / np.maximum(g_m2, 1e-12)
            else:
                new_alpha = np.full(groups, gamma.sum() / max(float(m @ m), 1e-12))
            new_alpha = np.clip(new_alpha, 1e-6 / var, 1e6 / var)
            residual = float(((t - x @ m) ** 2).sum())
            new_beta = float(np.clip((n - gamma.sum()) / max(residual, 1e-12 * var), 1e-3 / var, 1e8 / var))
            converged = (np.allclose(new_alpha, alpha, rtol=1e-4) and math.isclose(new_beta, beta, rel_tol=1e-4))
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        precision = beta * xtx + np.diag(alpha[self.group_of])
        self.cov = np.linalg.inv(precision)
        self.weights = beta * self.cov @ xty
        self.noise = 1.0 / beta
        self.alpha, self.beta = alpha, beta
        self._diag = np.diag(self.cov).copy()
        return self

    def mean(self, flat: np.ndarray) -> np.ndarray:
        return self.y_mean + self.weights[flat].sum(axis=1)

    def variance(self, flat: np.ndarray) -> np.ndarray:
        """Exact predictive variance (noise included) of a few rows."""
        x = np.zeros((len(flat), self.dim))
        x[np.arange(len(flat))[:, None], flat] = 1.0
        return self.noise + np.einsum("ij,jk,ik->i", x, self.cov, x)

    def variance_bound(self, flat: np.ndarray) -> np.ndarray:
        """An upper bound of :meth:`variance` from the diagonal (x'Sx <= groups x sum of its diagonal terms)."""
        return self.noise + len(self.sizes) * self._diag[flat].sum(axis=1)


# Expected hypervolume improvement --------------------------------------------------------------

_SQRT_2PI = math.sqrt(2 * math.pi)


def _psi(z: np.ndarray) -> np.ndarray:
    """``z Phi(z) + phi(z)``: the integral of the normal CDF up to ``z`` (so ``sd * psi`` is an expected shortfall)."""
    from scipy.special import ndtr

    z = np.asarray(z, dtype=float)
    return z * ndtr(z) + np.exp(-0.5 * z * z) / _SQRT_2PI


def _below(level, mean, sd) -> np.ndarray:
    """``E[max(0, level - Q)]`` for ``Q ~ N(mean, sd^2)`` (``sd`` may be tiny: then ``max(0, level - mean)``)."""
    return sd * _psi((level - mean) / sd)


def _level_at(c: np.ndarray, front_c: np.ndarray, front_q: np.ndarray, ref_q: float) -> np.ndarray:
    """Per candidate, the front's best q among points weakly better on every cheap objective (``ref_q`` if none)."""
    if not len(front_q):
        return np.full(len(c), ref_q)
    if c.shape[1] == 0:
        return np.full(len(c), min(ref_q, float(front_q.min())))
    if c.shape[1] == 1:
        order = np.argsort(front_c[:, 0], kind="stable")
        fc, fq = front_c[order, 0], np.minimum.accumulate(front_q[order])
        levels = np.concatenate([[ref_q], np.minimum(fq, ref_q)])
        return levels[np.searchsorted(fc, c[:, 0], side="right")]
    out = np.full(len(c), ref_q)
    for i in range(len(front_q)):
        covered = (front_c[i] <= c).all(axis=1)
        out[covered] = np.minimum(out[covered], front_q[i])
    return out


def _ehvi_bound(c, mean, sd, front_c, front_q, ref_c, ref_q) -> np.ndarray:
    """Upper bound of the EHVI: the candidate's box times the expected improvement below its level."""
    box = np.prod(np.clip(ref_c - c, 0.0, None), axis=1) if c.shape[1] else np.ones(len(c))
    return box * _below(_level_at(c, front_c, front_q, ref_q), mean, sd)


def _ehvi(c, mean, sd, front_c, front_q, ref_c, ref_q) -> np.ndarray:
    """Exact EHVI (minimisation) of candidates with cheap objectives ``c`` and ``q ~ N(mean, sd^2)``."""
    if c.shape[1] <= 1:
        return _ehvi_steps(c, mean, sd, front_c, front_q, ref_c, ref_q)
    return np.asarray([_ehvi_prefixes(c[i], mean[i], sd[i], front_c, front_q, ref_c, ref_q) for i in range(len(c))])


def _ehvi_steps(c, mean, sd, front_c, front_q, ref_c, ref_q) -> np.ndarray:
    """One cheap objective (or none): the front is a staircase; the improvement a sum over its steps."""
    if c.shape[1] == 0:
        return _below(_level_at(c, front_c, front_q, ref_q), mean, sd)
    order = np.argsort(front_c[:, 0], kind="stable")
    fc, fq = front_c[order, 0], front_q[order]
    starts = np.concatenate([[-np.inf], fc])
    ends = np.concatenate([fc, [ref_c[0]]])
    levels = np.concatenate([[ref_q], np.minimum.accumulate(np.minimum(fq, ref_q))])
    x = c[:, :1]
    widths = np.clip(np.minimum(ends, ref_c[0])[None, :] - np.maximum(starts[None, :], x), 0.0, None)
    return (widths * _below(levels[None, :], mean[:, None], sd[:, None])).sum(axis=1)


def _ehvi_prefixes(c, mean, sd, front_c, front_q, ref_c, ref_q) -> float:
    """Several cheap objectives: the integral over q of the box's volume not yet dominated, per front prefix."""
    from vidnas._pareto import hypervolume

    box = float(np.prod(np.clip(ref_c - c, 0.0, None)))
    if box <= 0:
        return 0.0
    order = np.argsort(front_q, kind="stable")
    qs, cs = front_q[order], np.maximum(front_c[order], c)
    total = 0.0
    lower = -np.inf
    covered = 0.0
    for j in range(len(qs) + 1):
        upper = min(qs[j], ref_q) if j < len(qs) else ref_q
        if upper > lower:
            psi_hi = float(_psi((upper - mean) / sd))
            psi_lo = 0.0 if lower == -np.inf else float(_psi((lower - mean) / sd))
            total += (box - covered) * sd * (psi_hi - psi_lo)
            lower = upper
        if j < len(qs):
            covered = hypervolume(cs[: j + 1], ref_c)
            if covered >= box:
                break
    return total


def _front_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows (minimisation); fast for two objectives."""
    points = np.asarray(points, dtype=float)
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if points.shape[1] == 1:
        return points[:, 0] == points[:, 0].min()
    if points.shape[1] == 2:
        order = np.lexsort((points[:, 1], points[:, 0]))
        keep = np.zeros(n, dtype=bool)
        best = np.inf
        for i in order:
            if points[i, 1] < best:
                keep[i] = True
                best = points[i, 1]
        return keep
    from vidnas._pareto import non_dominated

    return np.asarray(non_dominated(points.tolist()), dtype=bool)


def _van_der_corput(n: int) -> float:
    """The ``n``-th point (n >= 1) of the base-2 van der Corput sequence: 0.5, 0.25, 0.75, 0.125, ..."""
    out, denominator = 0.0, 1.0
    while n:
        denominator *= 2
        n, bit = divmod(n, 2)
        out += bit / denominator
    return out
