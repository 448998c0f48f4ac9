"""The cheap metrics of many architectures at once: integer choice arrays in, metric arrays out.

A space's architecture is a choice per slot group; :class:`CheapModel` writes it as an
integer vector (per group, the index of the choice in the group's enumeration order, the
order of :meth:`SearchSpace.enumerate` and ``SpacePredictor``) and computes the cheap metrics
of :mod:`vidnas.runners._metrics` for an ``(N, groups)`` array in a few vectorised steps,
exactly as :func:`vidnas.runners._evaluate.cheap_metrics` computes them one spec at a time
(a test holds the two equal):

* **additive metrics**: params, FLOPs and roofline latency are sums over the network's units;
  the units outside the searched slots are the same for every architecture, and a slot's unit
  depends on its own choice only. So each is a constant plus, per group, a table lookup of the
  chosen option's units (the tables are read from :func:`count_spec` and
  :func:`roofline_estimate` on one spec per option). Table latency is ``SpacePredictor``'s
  (the same sum, with the table's correction).
* **memory** (weights plus the peak of activations, bytes): the peak is a maximum over units of
  what is alive at each. What is alive besides a unit's own working memory depends only on
  which slots are identity (``none``: no tensor is created), so per *identity pattern* the
  peak is ``max(constant, max over groups of a per-option lookup)``. Patterns are counted once
  each (one ``count_spec``) as they appear, and cached; past ``EXACT_PATTERNS`` in one call,
  the all-active pattern's table serves them all when sampled patterns show it exact.
* ``video_ms`` is ``steps x calls per step x`` the latency at the video's call batch.

Units: ``latency_ms`` and ``video_ms`` in milliseconds, ``memory_bytes`` in bytes (float32),
``params`` and ``flops`` (per call) as counts; counts are per network call at batch 2 when
classifier-free guidance is batched, else at the campaign's batch (as the evaluation counts them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vidnas._errors import SpecError
from vidnas.runners._metrics import CHEAP_METRICS, parse_metric
from vidnas.search_space import ArchSpec, SearchSpace, TemporalChoice

__all__ = ["CheapModel", "CheapSettings"]


@dataclasses.dataclass(frozen=True)
class CheapSettings:
    """What the cheap metrics depend on besides the space and the table (the fields of the same names of
    :class:`~vidnas.runners.EvalSettings`)."""

    roofline: str | None = None  # a datasheet device name for roofline latency when there is no table
    roofline_dtype: str = "float16"  # the roofline's dtype
    batch: int = 1  # the campaign's batch (latency per call at this batch)
    steps: int = 25  # denoising steps (``video_ms``)
    cfg: str = "none"  # classifier-free guidance mode (``video_ms``, and the batch counts are taken at)


def _choice_key(op: str, params: Mapping[str, Any]) -> tuple:
    return (op, tuple(sorted(params.items())))


class CheapModel:
    """Vectorised cheap metrics of one space for one latency source (see the module docstring).

    Args:
        space: The search space.
        predictor: A ``LatencyPredictor`` (table latency), or ``None``.
        settings: The roofline (when there is no table), the batch and the video (:class:`CheapSettings`).
        fields: :class:`CheapSettings` fields given one by one (they replace those of ``settings``),
            e.g. ``CheapModel(space, roofline="laptop-cpu", batch=2)``.
    """

    def __init__(self, space: SearchSpace, *, predictor: Any = None, settings: CheapSettings | None = None,
                 **fields: Any) -> None:
        settings = dataclasses.replace(settings or CheapSettings(), **fields)
        self.space = space
        self.predictor = predictor
        self.roofline = settings.roofline
        self.roofline_dtype = settings.roofline_dtype
        self.batch = settings.batch
        self.steps = settings.steps
        self.cfg = settings.cfg
        self.call_batch = 2 if self.cfg == "batched" else self.batch  # counts and memory (as the evaluation)
        self.video_batch = 2 if self.cfg == "batched" else 1  # the latency video_ms multiplies
        self.calls_per_step = 2 if self.cfg == "sequential" else 1
        self.groups = space.groups
        self.choices: list[list[TemporalChoice]] = [[c for o in g.options for c in o.choices()] for g in space.groups]
        self.sizes = np.asarray([len(c) for c in self.choices], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self._index = [{_choice_key(c.op, c.params): i for i, c in enumerate(cs)} for cs in self.choices]
        self._options = [{o.op: o for o in g.options} for g in space.groups]
        self._cache: dict[str, Any] = {}

    @classmethod
    def for_settings(cls, space: SearchSpace, settings: Any) -> CheapModel:
        """The model for a campaign's evaluation settings (:class:`~vidnas.runners.EvalSettings`), sharing the
        latency predictor their cache keeps."""
        predictor = settings.cache.predictor(settings) if settings.table is not None else None
        cheap = CheapSettings(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(CheapSettings)})
        return cls(space, predictor=predictor, settings=cheap)

    # Encoding --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        if "size" not in self._cache:
            self._cache["size"] = self.space.size
        return self._cache["size"]

    def encode(self, spec: ArchSpec) -> np.ndarray:
        """The choice indices of ``spec`` (a :class:`SpecError` if it is not in the space)."""
        return self.encode_params(self.space.params_of(spec))

    def encode_params(self, params: Mapping[str, Any]) -> np.ndarray:
        """The choice indices of an Optuna trial's parameters (as :meth:`SearchSpace.sample` names them)."""
        out = np.empty(len(self.groups), dtype=np.int64)
        for g, group in enumerate(self.groups):
            op = params.get(f"{group.name}:op")
            option = self._options[g].get(op)
            if option is None:
                raise SpecError(f"{group.name}:op", op, f"is not an option of group {group.name}")
            values = {}
            for name, choices in option.params.items():
                values[name] = choices[0] if len(choices) == 1 else params.get(f"{group.name}:{op}.{name}")
            index = self._index[g].get(_choice_key(op, values))
            if index is None:
                raise SpecError(f"{group.name}:{op}", values, f"is not a choice of group {group.name}")
            out[g] = index
        return out

    def params_of(self, indices: Sequence[int]) -> dict[str, Any]:
        """The trial parameters (names as :meth:`SearchSpace.sample` suggests them) of one index vector."""
        out: dict[str, Any] = {}
        for g, group in enumerate(self.groups):
            choice = self.choices[g][int(indices[g])]
            out[f"{group.name}:op"] = choice.op
            for name, values in self._options[g][choice.op].params.items():
                if len(values) > 1:
                    out[f"{group.name}:{choice.op}.{name}"] = choice.params[name]
        return out

    def spec(self, indices: Sequence[int]) -> ArchSpec:
        """The architecture of one index vector."""
        return self.space.base.replace_choices({s: self.choices[g][int(i)] for g, (group, i)
                                                in enumerate(zip(self.groups, indices)) for s in group.slots})

    def enumerate_indices(self, limit: int = 10_000_000) -> np.ndarray:
        """Every architecture of the space as an ``(size, groups)`` array, in :meth:`SearchSpace.enumerate` order."""
        if self.size > limit:
            raise SpecError("space", self.space.name, f"has {self.size:.3g} architectures, too many to enumerate "
                                                      f"(limit {limit})")
        codes = np.arange(self.size, dtype=np.int64)
        return self.decode_codes(codes)

    def decode_codes(self, codes: np.ndarray) -> np.ndarray:
        """Index vectors of mixed-radix codes (the last group varies fastest, as ``itertools.product``)."""
        out = np.empty((len(codes), len(self.groups)), dtype=np.int64)
        rest = np.asarray(codes, dtype=np.int64).copy()
        for g in range(len(self.groups) - 1, -1, -1):
            out[:, g] = rest % self.sizes[g]
            rest //= self.sizes[g]
        return out

    def codes(self, indices: np.ndarray) -> np.ndarray:
        """Mixed-radix codes of index vectors (unique per architecture; spaces up to 2**63)."""
        if self.size >= 2**63:
            raise SpecError("space", self.space.name, "is too large for integer codes")
        code = np.zeros(len(indices), dtype=np.int64)
        for g in range(len(self.groups)):
            code = code * self.sizes[g] + np.asarray(indices)[:, g]
        return code

    def random_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` index vectors drawn uniformly over each group's choices."""
        return np.stack([rng.integers(0, s, n) for s in self.sizes], axis=1) if len(self.sizes) \
            else np.zeros((n, 0), dtype=np.int64)

    # Metrics ---------------------------------------------------------------------------------

    def available(self, name: str) -> bool:
        """Whether this model computes metric ``name`` (cheap metrics need a latency source for latency)."""
        if name in ("latency_ms", "video_ms"):
            return self.predictor is not None or self.roofline is not None
        return name in CHEAP_METRICS

    def metrics(self, names: Sequence[str], indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: self.metric(name, indices) for name in names}

    def metric(self, name: str, indices: np.ndarray) -> np.ndarray:
        """Metric ``name`` of every row of ``indices`` (float64)."""
        metric = parse_metric(name, "metric", check=False)
        if not metric.is_cheap:
            raise SpecError("metric", name, "is not a cheap metric", "only cheap metrics are computed vectorised")
        if not self.available(name):
            raise SpecError("metric", name, "needs a latency table or a roofline device")
        indices = np.asarray(indices, dtype=np.int64).reshape(-1, len(self.groups))
        if name == "latency_ms":
            return self._latency(indices, self.batch)
        if name == "video_ms":
            return self.steps * self.calls_per_step * self._latency(indices, self.video_batch)
        if name in ("params", "flops"):
            base, table = self._additive(name)
            return base + table[indices + self.offsets].sum(axis=1)
        return self._memory(indices)

    def violations(self, indices: np.ndarray, constraints: Mapping[str, float]) -> np.ndarray:
        """``(N, constraints)``: value minus bound per constraint (feasible where all are <= 0)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1, len(self.groups))
        if not constraints:
            return np.zeros((len(indices), 0))
        return np.stack([self.metric(k, indices) - float(b) for k, b in constraints.items()], axis=1)

    # Internals -------------------------------------------------------------------------------

    def _anchor(self) -> list[int]:
        return [0] * len(self.groups)

    def _option_specs(self):
        """One spec per (group, choice): the anchor with that group set to that choice."""
        for g in range(len(self.groups)):
            for i in range(len(self.choices[g])):
                indices = self._anchor()
                indices[g] = i
                yield g, i, self.spec(indices)

    def _latency(self, indices: np.ndarray, batch: int) -> np.ndarray:
        if self.predictor is not None:
            key = f"space_predictor:{batch}"
            if key not in self._cache:
                self._cache[key] = self.predictor.compile(self.space, batch=batch)
            return np.asarray(self._cache[key].predict_indices(indices)[1], dtype=float)
        base, table = self._additive(f"roofline:{batch}")
        return base + table[indices + self.offsets].sum(axis=1)

    def _slot_group(self) -> dict[str, int]:
        return {slot: g for g, group in enumerate(self.groups) for slot in group.slots}

    def _additive(self, key: str) -> tuple[float, np.ndarray]:
        """``(constant, flat per-choice table)`` of an additive metric: params, flops or roofline:BATCH."""
        if key in self._cache:
            return self._cache[key]
        from vidnas.search_space import count_spec

        group_of = self._slot_group()
        table = np.zeros(int(self.sizes.sum()), dtype=float)
        base = None

        device = None
        if key.startswith("roofline:"):
            from vidnas.latency_models import get_device, roofline_estimate

            device = get_device(self.roofline)  # parsed once, not once per spec

        def per_unit(spec: ArchSpec) -> list[tuple[str | None, float]]:
            if device is not None:
                est = roofline_estimate(spec, device, batch=int(key.split(":")[1]), dtype=self.roofline_dtype)
                return [(u["slot"], float(u["estimate_ms"])) for u in est["units"]]
            report = count_spec(spec, batch=self.call_batch)
            return [(u.slot, float(getattr(u, key))) for u in report.units]

        for g, i, spec in self._option_specs():
            units = per_unit(spec)
            table[self.offsets[g] + i] = sum(v for slot, v in units if slot is not None and group_of.get(slot) == g)
            if base is None:
                base = sum(v for slot, v in units if slot is None or slot not in group_of)
        self._cache[key] = (base or 0.0, table)
        return self._cache[key]

    def _identity_keys(self) -> list[np.ndarray]:
        """Per group, for each choice, the index of its identity pattern among the group's (``none`` or not)."""
        if "identity" not in self._cache:
            keys = []
            for choices in self.choices:
                flags = [c.op == "none" for c in choices]
                kinds = sorted(set(flags))
                keys.append(np.asarray([kinds.index(f) for f in flags], dtype=np.int64))
            self._cache["identity"] = keys
        return self._cache["identity"]

    def _memory(self, indices: np.ndarray) -> np.ndarray:
        from vidnas.search_space import ITEMSIZE

        base, params = self._additive("params")
        weights = (base + params[indices + self.offsets].sum(axis=1)) * ITEMSIZE["float32"]
        return weights + self._peak(indices)

    def _unit_peaks(self) -> np.ndarray:
        """Per (group, choice), flat: the largest own working memory of the choice's units at each slot,
        as a per-slot dict (slot -> bytes)."""
        if "unit_peaks" not in self._cache:
            from vidnas.search_space import count_spec

            group_of = self._slot_group()
            peaks: list[dict[str, int]] = [{} for _ in range(int(self.sizes.sum()))]
            for g, i, spec in self._option_specs():
                report = count_spec(spec, batch=self.call_batch)
                peaks[self.offsets[g] + i] = {u.slot: u.peak_bytes for u in report.units
                                              if u.slot is not None and group_of.get(u.slot) == g}
            self._cache["unit_peaks"] = peaks
        return self._cache["unit_peaks"]

    def _pattern(self, code: tuple[int, ...]) -> tuple[float, np.ndarray]:
        """``(constant, flat per-choice table)`` of the activation peak for one identity pattern."""
        patterns = self._cache.setdefault("patterns", {})
        if code in patterns:
            return patterns[code]
        from vidnas.search_space import count_spec

        keys = self._identity_keys()
        rep = [int(np.flatnonzero(keys[g] == k)[0]) for g, k in enumerate(code)]
        report = count_spec(self.spec(rep), batch=self.call_batch)
        group_of = self._slot_group()
        constant = max([u.live_bytes for u in report.units if u.slot is None or u.slot not in group_of], default=0)
        alive = {u.slot: u.live_bytes - u.peak_bytes for u in report.units
                 if u.slot is not None and u.slot in group_of and u.live_bytes > 0}
        peaks = self._unit_peaks()
        table = np.zeros(int(self.sizes.sum()), dtype=float)
        for g in range(len(self.groups)):
            for i, choice in enumerate(self.choices[g]):
                if choice.op == "none" or keys[g][i] != code[g]:
                    continue  # identity units hold nothing; other patterns' choices never meet this table
                flat = self.offsets[g] + i
                table[flat] = max(alive[s] + p for s, p in peaks[flat].items())
        patterns[code] = (float(constant), table)
        return patterns[code]

    # Beyond this many identity patterns in one call, the peak is computed from one table when the space
    # is separable (checked exactly on sampled patterns); each pattern costs a full count of a network.
    EXACT_PATTERNS = 32

    def _separable(self, unique: np.ndarray) -> tuple[float, np.ndarray] | None:
        """The table of the pattern with every slot active, when it gives every pattern's peak exactly.

        Slot layers are shape-preserving residual branches, so what is alive beside a slot's unit
        normally does not depend on which other slots are identities; this checks it on a few of
        ``unique``'s patterns (and the all-identity one) instead of assuming it."""
        if "separable" not in self._cache:
            keys = self._identity_keys()
            active = []
            for g, choices in enumerate(self.choices):
                live = [int(keys[g][i]) for i, c in enumerate(choices) if c.op != "none"]
                active.append(live[0] if live else int(keys[g][0]))
            constant, table = self._pattern(tuple(active))
            rng = np.random.default_rng(0)
            picks = [unique[i] for i in rng.choice(len(unique), size=min(4, len(unique)), replace=False)]
            picks.append(np.asarray([int(keys[g][0]) if self.choices[g][0].op == "none" else active[g]
                                     for g in range(len(self.groups))]))
            ok = True
            for code in picks:
                c, t = self._pattern(tuple(int(v) for v in code))
                used = t > 0
                if c != constant or not np.array_equal(t[used], table[used]):
                    ok = False
                    break
            self._cache["separable"] = (constant, table) if ok else None
        return self._cache["separable"]

    def _peak(self, indices: np.ndarray) -> np.ndarray:
        keys = self._identity_keys()
        pattern = np.stack([keys[g][indices[:, g]] for g in range(len(self.groups))], axis=1)
        unique, inverse = np.unique(pattern, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        out = np.empty(len(indices), dtype=float)
        flat = indices + self.offsets
        if len(unique) > self.EXACT_PATTERNS and flat.shape[1]:
            separable = self._separable(unique)
            if separable is not None:
                constant, table = separable
                return np.maximum(constant, table[flat].max(axis=1))
        for p, code in enumerate(unique):
            rows = np.flatnonzero(inverse == p)
            constant, table = self._pattern(tuple(int(c) for c in code))
            out[rows] = np.maximum(constant, table[flat[rows]].max(axis=1) if flat.shape[1] else 0.0)
        return out
