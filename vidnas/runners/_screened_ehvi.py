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
   Gaussian from the surrogate: its latent (noise-free) prediction, since an evaluation reveals
   the value itself, with the standard deviation scaled by ``exploration`` (0.5: on the
   supernet signal of tiny-enum-3k, 1.0 spent too many evaluations where the additive
   model's uncertainty, not the front, was large). The objective is modelled log-warped
   towards its best values (``warp``), where the front is. With one cheap objective it is a closed-form sum over the
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
mode, the candidates, the expected improvement, mean and standard deviation, and the seconds
the choice took (the pool's one-time screening included in the first trial's).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, NamedTuple

import numpy as np

from vidnas._errors import SpecError
from vidnas.runners._cheap import CheapModel
from vidnas.runners._metrics import parse_metric

__all__ = ["EHVIOptions", "ScreenedEHVISampler"]

ATTR = "screened_ehvi"
REF = 1.1  # the reference point, in objective units normalised to [0, 1] over the pool (cheap) or trials
CHUNK = 512  # candidates whose exact EHVI is computed at once
FAR = 6.0  # standard deviations above the front beyond which a candidate's improvement is taken as 0
MAX_EXACT = 2048  # candidates of highest bound whose exact EHVI may be computed per trial
PSEUDO = 2.0  # the surrogate's hyperprior on per-group precisions, in well-determined weights


def _base_sampler():
    import optuna

    return optuna.samplers.BaseSampler


@dataclasses.dataclass(frozen=True)
class EHVIOptions:
    """The sampler's own options (the registry's ``screened-ehvi`` options; see the module docstring)."""

    pool_size: int = 100_000
    n_startup_trials: int | None = None  # None: enough to try every option once, at least 5
    surrogate: str = "ard"  # ard | ridge
    warp: str = "log"  # log | none
    exploration: float = 0.5
    neighbours: bool = True


class ScreenedEHVISampler(_base_sampler()):  # type: ignore[misc]
    """See the module docstring. Built by the sampler registry from a campaign.

    ``context``: the campaign (a :class:`~vidnas.runners.SamplerContext`: seed, space, directions,
    metrics, constraints and, when it has one, its :class:`CheapModel`)."""

    def __init__(self, context: Any, options: EHVIOptions | None = None) -> None:
        options = options or EHVIOptions()
        space = self.space = context.space
        self.cheap = context.cheap if context.cheap is not None else CheapModel(space)
        self.metrics = list(context.metrics)
        self.signs = np.asarray([1.0 if d == "minimize" else -1.0 for d in context.directions])
        self.constraints = dict(context.constraints or {})
        self.seed = int(context.seed)
        self.pool_size = int(options.pool_size)
        self.surrogate_kind = options.surrogate
        self.warp = options.warp
        self.exploration = float(options.exploration)
        self.neighbours = bool(options.neighbours)
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
        choices = int(self.cheap.sizes.sum())
        self.n_startup = (options.n_startup_trials if options.n_startup_trials is not None
                          else max(5, math.ceil(choices / max(1, groups)) + 2))
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
        if objectives.shape[1]:  # sorted by the first cheap objective: each trial places the front's steps in O(N)
            order = np.argsort(objectives[:, 0], kind="stable")
            indices, objectives = indices[order], objectives[order]
        lo = objectives.min(axis=0) if len(objectives) else np.zeros(0)
        hi = objectives.max(axis=0) if len(objectives) else np.zeros(0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        return {"indices": indices, "flat": indices + self.cheap.offsets, "codes": self._codes(indices),
                "coder": self._codes,
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
        fit, fit_number = None, -1
        for t in study.get_trials(deepcopy=False):
            if t._trial_id == current._trial_id:
                continue
            record = t.system_attrs.get(ATTR)
            if record and "alpha" in record and t.number > fit_number:  # the latest fit: where this one starts
                fit, fit_number = (record["alpha"], record["beta"]), t.number
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
        return {"used": used, "fit": fit,
                "indices": np.asarray(done_idx, dtype=np.int64).reshape(-1, groups),
                "values": np.asarray(done_values, dtype=float).reshape(-1, len(self.metrics)),
                "feasible": np.asarray(done_feasible, dtype=bool),
                "pending": np.asarray(pending, dtype=np.int64).reshape(-1, groups)}

    # Picking -----------------------------------------------------------------------------

    def _pick(self, study, trial) -> dict[str, Any]:
        started = time.perf_counter()
        pool = self.pool()
        history = self._history(study, trial)
        rng = np.random.default_rng([self.seed, trial.number])
        cands = _Candidates(pool, self.cheap.offsets)
        if self.neighbours and not pool["complete"]:
            extra = self._neighbours(history)
            if len(extra):
                extra_obj, feasible = self._score(extra)
                extra, extra_obj = extra[feasible], extra_obj[feasible]
                keep = ~cands.in_pool(self._codes(extra))
                extra, extra_obj = extra[keep], extra_obj[keep]
                _, first = np.unique(self._codes(extra), return_index=True)
                cands.add(extra[first], (extra_obj[first] - pool["lo"]) / pool["scale"])
        available = cands.available(self._codes(history["indices"]), self._codes(history["pending"]),
                                    self._codes_of_used(history))
        if not available.any():  # every feasible candidate has been tried: a seeded draw from the pool
            row = int(rng.integers(len(available)))
            return self._record(study, trial, cands.indices(row), {"mode": "exhausted", "candidates": 0}, started)
        if not self.q_exact and len(history["values"]) < self.n_startup:
            row = self._startup(history, cands, available, rng)
            return self._record(study, trial, cands.indices(row),
                                {"mode": "startup", "candidates": int(available.sum())}, started)
        row, detail = self._ehvi_pick(history, cands, available)
        return self._record(study, trial, cands.indices(row), {"mode": "ehvi", "candidates": int(available.sum()),
                                                               **detail}, started)

    def _codes_of_used(self, history) -> np.ndarray:
        return np.fromiter(history["used"], dtype=np.int64, count=len(history["used"]))

    def _record(self, study, trial, indices: np.ndarray, detail: dict[str, Any], started: float) -> dict[str, Any]:
        """Store how the trial was chosen (with the seconds the choice took) and return its parameters."""
        params = self.cheap.params_of(indices)
        detail = {**detail, "seconds": time.perf_counter() - started}
        clean = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in detail.items()}
        study._storage.set_trial_system_attr(trial._trial_id, ATTR, clean)
        return params

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

    def _startup(self, history, cands: _Candidates, available: np.ndarray, rng) -> int:
        """Space-filling along the cheap objectives, covering untried options (see the module docstring)."""
        n = len(history["values"]) + len(history["pending"])
        tried = np.zeros(int(self.cheap.sizes.sum()), dtype=bool)
        for rows in (history["indices"], history["pending"]):
            if len(rows):
                tried[(rows + self.cheap.offsets).ravel()] = True
        rows = np.flatnonzero(available)
        objectives = cands.objectives
        if objectives.shape[1]:
            score = objectives[rows].sum(axis=1)
            order = np.argsort(score, kind="stable")
            target = _van_der_corput(n + 1)
            width = max(1, len(rows) // (2 * max(2, self.n_startup)))
            centre = int(target * (len(rows) - 1))
            rows = rows[order[max(0, centre - width): centre + width + 1]]
        new = (~tried[cands.flat(rows)]).sum(axis=1)
        best = rows[new == new.max()]
        return int(best[int(rng.integers(len(best)))])

    def _ehvi_pick(self, history, cands: _Candidates, available: np.ndarray) -> tuple[int, dict[str, Any]]:
        pool = self.pool()
        # the front: feasible evaluated trials, normalised like the pool (cheap) and the trials (q)
        values = history["values"]
        k = len(self.c_index)
        lo, scale = pool["lo"][:k], pool["scale"][:k]
        c_done = (values[:, self.c_index] - lo) / scale
        model = None
        objectives = cands.objectives
        if self.q_exact:
            q_lo, q_scale = pool["lo"][-1], pool["scale"][-1]
            q_done = (values[:, self.q_index] - q_lo) / q_scale
            cand_c, mean = objectives[:, :-1], objectives[:, -1]
            sd_bound = np.zeros(len(mean))
        else:
            q_raw = values[:, self.q_index]
            q_lo = float(q_raw.min())
            q_scale = float(q_raw.max() - q_lo) or 1.0
            q_done = _warp((q_raw - q_lo) / q_scale, self.warp)
            model = _Surrogate(self.cheap.offsets, self.cheap.sizes, self.surrogate_kind)
            model.fit(history["indices"] + self.cheap.offsets, q_done, start=history["fit"])
            cand_c = objectives
            both = cands.gather_sums((model.effect + 1j * model.block_sd).astype(np.complex64))[0]  # both sums at once
            mean, sd_sum = both.real.astype(float) + model.y_mean, both.imag.astype(float)
            sd_bound = sd_sum * self.exploration
        front_c, front_q = c_done[history["feasible"]], q_done[history["feasible"]]
        if len(history["pending"]):  # kriging believer: running trials at their predicted (or exact) value
            p_obj, _ = self._score(history["pending"])
            p_c = (p_obj[:, :k] - lo) / scale
            p_q = (p_obj[:, -1] - q_lo) / q_scale if self.q_exact \
                else model.mean(history["pending"] + self.cheap.offsets)
            front_c, front_q = np.concatenate([front_c, p_c]), np.concatenate([front_q, p_q])
        keep = front_q < REF
        if k:
            keep &= (front_c < REF).all(axis=1)
        front_c, front_q = front_c[keep], front_q[keep]
        if len(front_q):
            nd = _front_mask(np.concatenate([front_c, front_q[:, None]], axis=1))
            front_c, front_q = front_c[nd], front_q[nd]
        front = _Front(front_c, front_q, np.full(k, REF), REF)
        bound = _ehvi_bound(cand_c, mean, np.maximum(sd_bound, 1e-12), front, sorted_rows=cands.n_pool)
        bound[~available] = -np.inf

        def exact(rows: np.ndarray) -> np.ndarray:
            sd = np.zeros(len(rows)) if model is None else np.sqrt(model.variance(cands.flat(rows))) * self.exploration
            return _ehvi(cand_c[rows], mean[rows], np.maximum(sd, 1e-12), front)

        # branch and bound: exact values in bound order until no bound beats the best exact value, over the
        # MAX_EXACT candidates of highest bound (when the surrogate is unsure everywhere, bounds stay high)
        chunk = CHUNK if k <= 1 else 64
        top = np.flatnonzero(np.isfinite(bound))
        if len(top) > MAX_EXACT:
            top = top[np.argpartition(-bound[top], MAX_EXACT)[:MAX_EXACT]]
        top = top[np.argsort(-bound[top], kind="stable")]
        best_row, best_value, evaluated = int(top[0]), -np.inf, 0
        for start in range(0, len(top), chunk):
            rows = top[start: start + chunk]
            if bound[rows[0]] <= best_value:
                break
            found = exact(rows)
            evaluated += len(rows)
            if found.max() > best_value:
                best_row, best_value = int(rows[np.argmax(found)]), float(found.max())
        outside = bound[~np.isin(np.arange(len(bound)), top)] if len(top) < np.isfinite(bound).sum() else []
        gap = max(0.0, float(np.max(outside)) - best_value) if len(outside) else 0.0
        if best_value <= 0:  # no candidate improves the front (in expectation): the best predicted one
            score = mean + (cand_c.sum(axis=1) if k else 0.0)
            best_row = int(np.argmin(np.where(available, score, np.inf)))
        detail = {"ehvi": best_value, "exact_evaluations": evaluated, "front": int(len(front_q)), "bound_gap": gap,
                  "fit_iterations": model.iterations_used if model is not None else 0}
        if model is not None:  # in the modelled (warped, normalised) units
            detail.update(alpha=[float(a) for a in model.alpha], beta=float(model.beta), mean=float(mean[best_row]),
                          std=float(np.sqrt(model.variance(cands.flat(np.asarray([best_row]))))[0]))
        return best_row, detail


class _Candidates:
    """The pool (fixed, large) and this trial's extra candidates (small), addressed as one row range
    without copying the pool's index arrays."""

    def __init__(self, pool: dict[str, Any], offsets: np.ndarray) -> None:
        self.pool = pool
        self.offsets = offsets
        self.n_pool = len(pool["indices"])
        self.extra = np.zeros((0, pool["indices"].shape[1]), dtype=np.int64)
        self.objectives = pool["objectives"]
        if "sorted_codes" not in pool:
            order = np.argsort(pool["codes"], kind="stable")
            pool["sorted_codes"], pool["code_order"] = pool["codes"][order], order

    def add(self, indices: np.ndarray, objectives: np.ndarray) -> None:
        self.extra = indices
        self.objectives = np.concatenate([self.pool["objectives"], objectives])

    def in_pool(self, codes: np.ndarray) -> np.ndarray:
        return self._pool_rows(codes) >= 0

    def _pool_rows(self, codes: np.ndarray) -> np.ndarray:
        """Each code's pool row, or -1."""
        sorted_codes = self.pool["sorted_codes"]
        if not len(codes) or not len(sorted_codes):
            return np.full(len(codes), -1)
        at = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
        return np.where(sorted_codes[at] == codes, self.pool["code_order"][at], -1)

    def available(self, *used: np.ndarray) -> np.ndarray:
        """Rows whose architecture is in none of the ``used`` code arrays."""
        mask = np.ones(self.n_pool + len(self.extra), dtype=bool)
        codes = np.concatenate(used) if used else np.zeros(0, dtype=np.int64)
        rows = self._pool_rows(codes)
        mask[rows[rows >= 0]] = False
        if len(self.extra):
            extra_codes = _codes_like(self.pool, self.extra)
            mask[self.n_pool:] = ~np.isin(extra_codes, codes)
        return mask

    def indices(self, row: int) -> np.ndarray:
        return self.pool["indices"][row] if row < self.n_pool else self.extra[row - self.n_pool]

    def flat(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if not len(self.extra):
            return self.pool["flat"][rows]
        out = np.empty((len(rows), self.extra.shape[1]), dtype=np.int64)
        inside = rows < self.n_pool
        out[inside] = self.pool["flat"][rows[inside]]
        out[~inside] = self.extra[rows[~inside] - self.n_pool] + self.offsets
        return out

    def gather_sums(self, *tables: np.ndarray) -> list[np.ndarray]:
        """Per table (one value per option), the sum over each candidate's choices (group by group:
        contiguous gathers from the pool's transposed index array)."""
        if "flat_t" not in self.pool:
            self.pool["flat_t"] = np.ascontiguousarray(self.pool["flat"].T)
        columns = self.pool["flat_t"]
        out = []
        for table in tables:
            total = table[columns[0]].copy() if len(columns) else np.zeros(self.n_pool)
            for column in columns[1:]:
                total += table[column]
            if len(self.extra):
                total = np.concatenate([total, table[self.extra + self.offsets].sum(axis=1)])
            out.append(total)
        return out


def _codes_like(pool: dict[str, Any], indices: np.ndarray) -> np.ndarray:
    return pool["coder"](indices)


# Surrogate -----------------------------------------------------------------------------------


class _Surrogate:
    """Bayesian linear regression on centred one-hot group choices, evidence-maximised (see the module docstring).

    A candidate's features are, per group, its one-hot choice minus the group's mean (1/size),
    so predictions do not depend on a group's overall level, which the centred target's mean
    already carries: the weights' posterior then has no direction that the data cannot see,
    and a candidate's variance splits cleanly by group. Weights ``w ~ N(0, diag(1/alpha))`` with
    ``alpha`` per group (``ard``) or shared (``ridge``); noise precision ``beta``. Fitted by
    MacKay's fixed-point updates from the same start every time, so a fit is a function of the
    data alone.
    """

    def __init__(self, offsets: np.ndarray, sizes: np.ndarray, kind: str = "ard", iterations: int = 30) -> None:
        self.offsets = np.asarray(offsets)
        self.sizes = np.asarray(sizes)
        self.kind = kind
        self.iterations = iterations
        self.dim = int(self.sizes.sum())
        self.group_of = np.repeat(np.arange(len(self.sizes)), self.sizes)
        self.centre = 1.0 / self.sizes[self.group_of]  # per feature: its group's mean one-hot value

    def features(self, flat: np.ndarray) -> np.ndarray:
        x = np.zeros((len(flat), self.dim)) - self.centre
        if len(flat):
            x[np.arange(len(flat))[:, None], flat] += 1.0
        return x

    def fit(self, flat: np.ndarray, y: np.ndarray, start: tuple[list[float], float] | None = None) -> _Surrogate:
        """Fit to ``y`` (one value per row of ``flat``); ``start``: the hyperparameters ``(alpha, beta)`` of an
        earlier fit (in units of that fit's target variance) to iterate from."""
        n = len(y)
        x = self.features(flat)
        self.y_mean = float(y.mean()) if n else 0.0
        t = y - self.y_mean
        xtx, xty = x.T @ x, x.T @ t
        var = float(t.var()) if n > 1 else 1.0
        var = var if var > 0 else 1.0
        groups = len(self.sizes)
        alpha = np.full(groups, 1.0 / var)
        beta = 10.0 / var
        if start is not None and len(start[0]) == groups:  # the previous trial's fit: a few iterations from there
            alpha = np.clip(np.asarray(start[0], dtype=float), 1e-4 / var, 1e4 / var)
            beta = float(np.clip(start[1], 1e-3 / var, 1e2 / var))
        self.iterations_used = 0
        for _ in range(self.iterations):
            self.iterations_used += 1
            cov = np.linalg.inv(beta * xtx + np.diag(alpha[self.group_of]))
            m = beta * cov @ xty
            gamma = 1.0 - alpha[self.group_of] * np.diag(cov)
            shared = gamma.sum() / max(float(m @ m), 1e-12)
            if self.kind == "ard":
                # per group, with a gamma hyperprior of mean `shared` worth `PSEUDO` well-determined weights:
                # a group's own evidence moves its precision only as far as that evidence goes
                g_gamma = np.bincount(self.group_of, gamma, minlength=groups)
                g_m2 = np.bincount(self.group_of, m * m, minlength=groups)
                new_alpha = (g_gamma + PSEUDO) / np.maximum(g_m2 + PSEUDO / shared, 1e-12)
            else:
                new_alpha = np.full(groups, shared)
            new_alpha = np.clip(new_alpha, 1e-4 / var, 1e4 / var)  # weight sd from 100x to 1/100 of y's
            residual = float(((t - x @ m) ** 2).sum())
            # noise sd at least 10 % of y's: with fewer trials than weights the evidence prefers no noise at
            # all (interpolation), and its iterations then crawl towards it
            new_beta = float(np.clip((n - gamma.sum()) / max(residual, 1e-12 * var), 1e-3 / var, 1e2 / var))
            converged = (np.abs(np.log(new_alpha / alpha)).max() < 1e-2 and abs(math.log(new_beta / beta)) < 1e-2)
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        self.cov = np.linalg.inv(beta * xtx + np.diag(alpha[self.group_of]))
        weights = beta * self.cov @ xty
        self.noise = 1.0 / beta
        self.alpha, self.beta = alpha, beta
        # per option: its centred weight, and the variance of its group's term (for the bound)
        self.effect = weights - np.bincount(self.group_of, weights * self.centre)[self.group_of]
        block_var = np.empty(self.dim)
        for start, size in zip(self.offsets, self.sizes):
            block = self.cov[start: start + size, start: start + size]
            phi = np.eye(size) - 1.0 / size
            block_var[start: start + size] = np.einsum("ij,jk,ik->i", phi, block, phi)
        self.block_sd = np.sqrt(np.clip(block_var, 0.0, None))
        # (x - c)'S(x - c) = sum S[a_g, a_h] - 2 sum_g (S c)[a_g] + c'Sc, c the centring vector
        centred = self.cov @ self.centre
        self._row_centre = centred
        self._centre_quad = float(self.centre @ centred)
        return self

    def mean(self, flat: np.ndarray) -> np.ndarray:
        return self.y_mean + self.effect[flat].sum(axis=1)

    def variance(self, flat: np.ndarray) -> np.ndarray:
        """Exact variance of the latent (noise-free) prediction of a few rows: x'Sx of the centred features,
        as sums of covariance entries at the chosen options (no dense feature matrix)."""
        pairs = self.cov[flat[:, :, None], flat[:, None, :]].sum(axis=(1, 2))
        return np.clip(pairs - 2.0 * self._row_centre[flat].sum(axis=1) + self._centre_quad, 0.0, None)


# Expected hypervolume improvement --------------------------------------------------------------

_SQRT_2PI = math.sqrt(2 * math.pi)


def _psi(z: np.ndarray) -> np.ndarray:
    """``z Phi(z) + phi(z)``: the integral of the normal CDF up to ``z`` (so ``sd * psi`` is an expected shortfall)."""
    from scipy.special import ndtr

    z = np.asarray(z, dtype=float)
    return z * ndtr(z) + np.exp(-0.5 * z * z) / _SQRT_2PI


def _psi_upper(z: np.ndarray) -> np.ndarray:
    """An upper bound of :func:`_psi` from one exponential: ``phi(z) / (1 + z^2)`` below 0 (the Mills-ratio
    bound on the normal tail), ``z + phi(z)`` above (``Phi <= 1``)."""
    z = np.asarray(z, dtype=float)
    phi = np.exp(-0.5 * z * z) / _SQRT_2PI
    return np.where(z < 0, phi / (1.0 + z * z), z + phi)


class _Front(NamedTuple):
    """The front the improvement is measured against, in normalised minimisation units: its points' cheap
    objectives ``c`` (N, k) and modelled objective ``q`` (N,), and the reference point ``(ref_c, ref_q)``."""

    c: np.ndarray
    q: np.ndarray
    ref_c: np.ndarray
    ref_q: float


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


def _steps(x: np.ndarray, fc: np.ndarray, sorted_rows: int) -> np.ndarray:
    """``searchsorted(fc, x, side="right")`` for every x, where ``x[:sorted_rows]`` is ascending (a cumulative
    count over the front's breakpoints instead of a binary search per candidate)."""
    out = np.empty(len(x), dtype=np.int64)
    head = x[:sorted_rows]
    marks = np.zeros(len(head) + 1, dtype=np.int64)
    np.add.at(marks, np.searchsorted(head, fc, side="left"), 1)
    out[:sorted_rows] = np.cumsum(marks)[:-1]
    out[sorted_rows:] = np.searchsorted(fc, x[sorted_rows:], side="right")
    return out


def _ehvi_bound(c, mean, sd, front: _Front, sorted_rows: int = 0) -> np.ndarray:
    """Upper bound of the EHVI. One cheap objective: the candidate's own step exactly, the rest of its box at
    the next step's level. Otherwise: the candidate's whole box at the level of its own point.

    Candidates whose mean lies more than ``FAR`` standard deviations above their level get 0 (their bound
    is below 1e-15 of their box) without evaluating the normal distribution."""
    front_c, front_q, ref_c, ref_q = front
    if c.shape[1] == 1 and len(front_q):
        order = np.argsort(front_c[:, 0], kind="stable")
        fc = front_c[order, 0]
        levels = np.concatenate([[ref_q], np.minimum.accumulate(np.minimum(front_q[order], ref_q))])
        ends = np.concatenate([np.minimum(fc, ref_c[0]), [ref_c[0]]])
        x = c[:, 0]
        step = _steps(x, fc, sorted_rows)
        out = np.zeros(len(x))
        near = np.flatnonzero(mean - FAR * sd < levels[step])
        x, step, m, s = x[near], step[near], mean[near], sd[near]
        first_end = ends[step]
        nxt = np.minimum(step + 1, len(levels) - 1)
        own = np.clip(first_end - x, 0.0, None) * s * _psi_upper((levels[step] - m) / s)
        rest = np.clip(ref_c[0] - np.maximum(first_end, x), 0.0, None) * s * _psi_upper((levels[nxt] - m) / s)
        out[near] = own + rest
        return out
    box = np.prod(np.clip(ref_c - c, 0.0, None), axis=1) if c.shape[1] else np.ones(len(c))
    return box * sd * _psi_upper((_level_at(c, front_c, front_q, ref_q) - mean) / sd)


def _ehvi(c, mean, sd, front: _Front) -> np.ndarray:
    """Exact EHVI (minimisation) of candidates with cheap objectives ``c`` and ``q ~ N(mean, sd^2)``."""
    if c.shape[1] <= 1:
        return _ehvi_steps(c, mean, sd, front)
    return np.asarray([_ehvi_prefixes(c[i], mean[i], sd[i], front) for i in range(len(c))])


def _ehvi_steps(c, mean, sd, front: _Front) -> np.ndarray:
    """One cheap objective (or none): the front is a staircase; the improvement a sum over its steps."""
    front_c, front_q, ref_c, ref_q = front
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


def _ehvi_prefixes(c, mean, sd, front: _Front) -> float:
    """Several cheap objectives: the integral over q of the box's volume not yet dominated, per front prefix."""
    from vidnas._pareto import hypervolume

    front_c, front_q, ref_c, ref_q = front
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


WARP_FLOOR = 0.05  # the log warp's offset, in units of the observed range


def _warp(q: np.ndarray, kind: str) -> np.ndarray:
    """The modelled objective from its values normalised to [0, 1] (0 the best seen), back in [0, 1].

    ``log`` stretches the good end and compresses the bad one: the surrogate then spends its
    accuracy where the front is, and a few very poor architectures no longer inflate the noise
    it estimates for all. Monotone, so the front and dominance are unchanged.
    """
    if kind == "none":
        return q
    low, high = math.log(WARP_FLOOR), math.log(1.0 + WARP_FLOOR)
    return (np.log(q + WARP_FLOOR) - low) / (high - low)


def _van_der_corput(n: int) -> float:
    """The ``n``-th point (n >= 1) of the base-2 van der Corput sequence: 0.5, 0.25, 0.75, 0.125, ..."""
    out, denominator = 0.0, 1.0
    while n:
        denominator *= 2
        n, bit = divmod(n, 2)
        out += bit / denominator
    return out
