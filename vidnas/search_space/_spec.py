"""ArchSpec: a frozen, validated, versioned description of one video architecture.

An ArchSpec is a backbone (a latent video UNet: levels, channels, blocks, spatial
attention, conditioning, frames and latent resolution) plus the temporal choice at
every *slot*. Slots are named ``{stage}.{level}.{block}.{position}``:

* ``stage``: ``down``, ``mid`` or ``up``;
* ``level``: resolution level, 0 the finest (the mid block is at the last level);
* ``block``: index of the residual block in that stage and level;
* ``position``: ``res`` (after the residual block) or ``attn`` (inside the spatial
  transformer, between its spatial block and its output projection, as in SVD).

The canonical JSON (sorted keys, defaults filled in, no whitespace) is the spec's
identity: ``arch_id`` is the first 16 hex digits of its SHA-256, the spec's name
excluded. It keys every cache, table row and trial attribute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space._registry import SlotShape, get_temporal_op

__all__ = ["SPEC_FORMAT", "SPEC_VERSION", "ArchSpec", "BackboneSpec", "SlotInfo", "TemporalChoice"]

SPEC_FORMAT = "vidnas.arch_spec"
SPEC_VERSION = 1
POSITIONS = ("res", "attn")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """A latent video UNet (the SVD family). One entry per resolution level where a tuple."""

    channels: tuple[int, ...] = (320, 640, 1280, 1280)  # block width per level
    layers_per_block: tuple[int, ...] = (2, 2, 2, 2)  # residual blocks per level going down (up: +1)
    attention: tuple[bool, ...] = (True, True, True, False)  # spatial transformer after each block of the level
    in_channels: int = 8  # latent channels in (SVD: noisy latent + conditioning-image latent)
    out_channels: int = 4  # latent channels predicted
    head_dim: int = 64  # width of a spatial attention head
    cross_attention_dim: int = 1024  # width of conditioning tokens; 0 = no cross-attention
    context_tokens: int = 1  # conditioning tokens per clip (SVD: 1 CLIP image embedding)
    mid_attention: bool = True  # spatial transformer in the mid block
    norm_groups: int = 32  # GroupNorm groups throughout
    addition_time_embed_dim: int = 0  # width of each extra conditioning scalar's embedding (SVD: 256)
    num_added_time_ids: int = 0  # extra conditioning scalars (SVD: fps, motion bucket, noise aug = 3)
    frames: int = 14  # frames per clip
    latent_height: int = 72  # latent rows (pixels / vae_scale_factor)
    latent_width: int = 128  # latent columns
    vae_scale_factor: int = 8  # pixels per latent cell of the autoencoder (recorded, not built)

    @property
    def num_levels(self) -> int:
        return len(self.channels)

    @property
    def temb_channels(self) -> int:
        return 4 * self.channels[0]

    @property
    def pixel_height(self) -> int:
        return self.latent_height * self.vae_scale_factor

    @property
    def pixel_width(self) -> int:
        return self.latent_width * self.vae_scale_factor

    def level_size(self, level: int) -> tuple[int, int]:
        """Latent (height, width) at ``level``."""
        return self.latent_height >> level, self.latent_width >> level

    def slot_shape(self, level: int, position: str = "res") -> SlotShape:
        height, width = self.level_size(level)
        return SlotShape(
            channels=self.channels[level],
            frames=self.frames,
            height=height,
            width=width,
            temb_channels=self.temb_channels,
            context_dim=self.cross_attention_dim or None,
            context_tokens=self.context_tokens if self.cross_attention_dim else None,
            norm_groups=self.norm_groups,
            head_dim=self.head_dim,
            channels_last=position == "attn",
        )

    def slots(self) -> list[SlotInfo]:
        """Every temporal slot in execution order."""
        out: list[SlotInfo] = []
        last = self.num_levels - 1

        def add(stage: str, level: int, block: int, with_attn: bool) -> None:
            out.append(SlotInfo(f"{stage}.{level}.{block}.res", stage, level, block, "res", self.slot_shape(level)))
            if with_attn:
                out.append(SlotInfo(f"{stage}.{level}.{block}.attn", stage, level, block, "attn",
                                    self.slot_shape(level, "attn")))

        for level in range(self.num_levels):
            for block in range(self.layers_per_block[level]):
                add("down", level, block, self.attention[level])
        add("mid", last, 0, self.mid_attention)
        add("mid", last, 1, False)
        for level in reversed(range(self.num_levels)):
            for block in range(self.layers_per_block[level] + 1):
                add("up", level, block, self.attention[level])
        return out

    def validate(self, field: str = "backbone") -> None:
        """Raise :class:`SpecError` naming the first invalid field."""
        n = len(self.channels)
        if n < 1:
            raise SpecError(f"{field}.channels", self.channels, "needs at least one level")
        for name in ("layers_per_block", "attention"):
            value = getattr(self, name)
            if len(value) != n:
                raise SpecError(
                    f"{field}.{name}", value, f"has {len(value)} entries but `channels` has {n} levels",
                    "give one entry per level",
                )
        for i, c in enumerate(self.channels):
            if c < 1 or c % self.norm_groups:
                raise SpecError(f"{field}.channels[{i}]", c,
                                f"must be a positive multiple of norm_groups={self.norm_groups}")
            if (self.attention[i] or (i == n - 1 and self.mid_attention)) and c % self.head_dim:
                raise SpecError(f"{field}.channels[{i}]", c, f"is not a multiple of head_dim={self.head_dim}")
        for i, layers in enumerate(self.layers_per_block):
            if layers < 1:
                raise SpecError(f"{field}.layers_per_block[{i}]", layers, "must be >= 1")
        positive = ("in_channels", "out_channels", "head_dim", "norm_groups", "frames", "latent_height",
                    "latent_width", "vae_scale_factor", "context_tokens")
        for name in positive:
            if getattr(self, name) < 1:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 1")
        for name in ("cross_attention_dim", "addition_time_embed_dim", "num_added_time_ids"):
            if getattr(self, name) < 0:
                raise SpecError(f"{field}.{name}", getattr(self, name), "must be >= 0")
        if (self.addition_time_embed_dim == 0) != (self.num_added_time_ids == 0):
            raise SpecError(
                f"{field}.num_added_time_ids", self.num_added_time_ids,
                "must be 0 exactly when addition_time_embed_dim is 0",
            )
        factor = 2 ** (n - 1)
        for name in ("latent_height", "latent_width"):
            value = getattr(self, name)
            if value % factor:
                raise SpecError(
                    f"{field}.{name}", value, f"must be divisible by {factor} for {n} levels",
                    f"pixel sizes must be multiples of {factor * self.vae_scale_factor}",
                )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str = "backbone") -> BackboneSpec:
        if not isinstance(data, Mapping):
            raise SpecError(field, data, "must be an object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise SpecError(f"{field}.{key}", value, "is not a backbone field", f"known fields: {sorted(known)}")
            kwargs[key] = _coerce_field(known[key], value, f"{field}.{key}")
        spec = cls(**kwargs)
        spec.validate(field)
        return spec


def _coerce_field(f: dataclasses.Field, value: Any, field: str) -> Any:
    default = f.default
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise SpecError(field, value, "must be a list with one entry per level")
        item_type = type(default[0])
        return tuple(_coerce_scalar(item_type, v, f"{field}[{i}]") for i, v in enumerate(value))
    return _coerce_scalar(type(default), value, field)


def _coerce_scalar(kind: type, value: Any, field: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise SpecError(field, value, "must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(field, value, "must be an integer")
        return value
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class SlotInfo:
    """A temporal slot of a backbone and the shape it offers."""

    name: str
    stage: str
    level: int
    block: int
    position: str
    shape: SlotShape


@dataclasses.dataclass(frozen=True)
class TemporalChoice:
    """The op at one slot and its parameters (canonical once inside an :class:`ArchSpec`)."""

    op: str = "none"
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(sorted(dict(self.params).items()))))

    def __hash__(self) -> int:
        return hash((self.op, json.dumps(dict(self.params), sort_keys=True)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemporalChoice) and self.op == other.op and dict(self.params) == dict(other.params)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "params": dict(self.params)}

    @classmethod
    def parse(cls, value: Any, field: str) -> TemporalChoice:
        """Accept a TemporalChoice, an op name, or ``{"op": ..., "params": {...}}``."""
        if isinstance(value, TemporalChoice):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"op", "params"}
            if unknown:
                key = sorted(unknown)[0]
                raise SpecError(f"{field}.{key}", value[key], "is not a field of a temporal choice",
                                "use `op` and `params`")
            if "op" not in value:
                raise SpecError(f"{field}.op", None, "is missing")
            params = value.get("params", {})
            if not isinstance(params, Mapping):
                raise SpecError(f"{field}.params", params, "must be an object")
            return cls(value["op"], params)
        raise SpecError(field, value, "must be an op name or an object with `op` and `params`")

    def canonical(self, shape: SlotShape, field: str) -> TemporalChoice:
        if not isinstance(self.op, str):
            raise SpecError(f"{field}.op", self.op, "must be a string")
        opdef = get_temporal_op(self.op, f"{field}.op")
        return TemporalChoice(self.op, opdef.canonical_params(self.params, shape, f"{field}.params"))


@dataclasses.dataclass(frozen=True, eq=False)
class ArchSpec:
    """A backbone plus the temporal choice at every slot; validated and canonical on creation.

    ``temporal`` must name every slot of the backbone exactly once (see
    :meth:`BackboneSpec.slots`). Use :meth:`create` to fill unnamed slots with a default.
    """

    backbone: BackboneSpec
    temporal: Mapping[str, TemporalChoice]
    name: str = ""

    def __post_init__(self) -> None:
        self.backbone.validate()
        given = {k: TemporalChoice.parse(v, f"temporal.{k}") for k, v in dict(self.temporal).items()}
        slots = self.backbone.slots()
        expected = [s.name for s in slots]
        missing = [s for s in expected if s not in given]
        extra = sorted(set(given) - set(expected))
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}")
            if extra:
                detail.append(f"unknown {extra[:4]}{'...' if len(extra) > 4 else ''}")
            raise SpecError(
                "temporal", f"{len(given)} slots",
                f"the backbone has {len(expected)} slots ({'; '.join(detail)})",
                "name every slot once; `vidnas space show PRESET` lists them",
            )
        canonical = {s.name: given[s.name].canonical(s.shape, f"temporal.{s.name}") for s in slots}
        object.__setattr__(self, "temporal", MappingProxyType(canonical))

    # Construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        backbone: BackboneSpec,
        temporal: Mapping[str, Any] | None = None,
        *,
        default: Any = "none",
        name: str = "",
    ) -> ArchSpec:
        """A spec whose unnamed slots get ``default``; ``temporal`` may use shell patterns as keys.

        Later keys override earlier ones, e.g. ``{"*.res": "conv1d", "down.0.*": "none"}``.
        """
        import fnmatch

        backbone.validate()
        slot_names = [s.name for s in backbone.slots()]
        choices: dict[str, Any] = {n: default for n in slot_names}
        for pattern, choice in (temporal or {}).items():
            matched = [n for n in slot_names if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                raise SpecError(f"temporal.{pattern}", choice, "matches no slot of the backbone")
            for n in matched:
                choices[n] = choice
        return cls(backbone, choices, name)

    def replace_choices(self, choices: Mapping[str, Any]) -> ArchSpec:
        merged = dict(self.temporal)
        merged.update(choices)
        return ArchSpec(self.backbone, merged, self.name)

    def with_shape(self, *, frames: int | None = None, latent_height: int | None = None,
                   latent_width: int | None = None) -> ArchSpec:
        """The same architecture at another clip length or resolution (revalidated)."""
        changes = {k: v for k, v in (("frames", frames), ("latent_height", latent_height),
                                     ("latent_width", latent_width)) if v is not None}
        return ArchSpec(dataclasses.replace(self.backbone, **changes), self.temporal, self.name)

    # Views -----------------------------------------------------------------------------

    def slots(self) -> list[SlotInfo]:
        return self.backbone.slots()

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for choice in self.temporal.values():
            counts[choice.op] = counts.get(choice.op, 0) + 1
        return counts

    @property
    def is_causal(self) -> bool:
        """True when every temporal op is causal (or absent): the network can stream."""
        return all(
            c.op == "none" or get_temporal_op(c.op).is_causal(c.params) for c in self.temporal.values()
        )

    @property
    def causal_block_frames(self) -> int:
        """Frames a causal network must receive at a time when streaming: the least common
        multiple of its ops' causal blocks (1 when every op is strictly causal)."""
        import math

        block = 1
        for c in self.temporal.values():
            if c.op != "none":
                block = math.lcm(block, get_temporal_op(c.op).causal_block_frames(c.params))
        return block

    # Serialisation ---------------------------------------------------------------------

    def to_dict(self, *, include_name: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": SPEC_FORMAT,
            "version": SPEC_VERSION,
            "backbone": self.backbone.to_dict(),
            "temporal": {k: v.to_dict() for k, v in self.temporal.items()},
        }
        if include_name:
            data["name"] = self.name
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys); ``indent`` only changes white space."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @property
    def arch_id(self) -> str:
        canonical = json.dumps(self.to_dict(include_name=False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        if not isinstance(data, Mapping):
            raise SpecError("spec", type(data).__name__, "must be a JSON object")
        fmt = data.get("format")
        if fmt != SPEC_FORMAT:
            raise SpecError("format", fmt, "is not an architecture spec", f"expected \"{SPEC_FORMAT}\"")
        version = data.get("version")
        if version != SPEC_VERSION:
            raise SpecError("version", version, "is not supported", f"this vidnas reads version {SPEC_VERSION}")
        unknown = sorted(set(data) - {"format", "version", "name", "backbone", "temporal"})
        if unknown:
            raise SpecError(unknown[0], data[unknown[0]], "is not a field of an architecture spec")
        for key in ("backbone", "temporal"):
            if key not in data:
                raise SpecError(key, None, "is missing")
        temporal = data["temporal"]
        if not isinstance(temporal, Mapping):
            raise SpecError("temporal", temporal, "must be an object mapping slot names to choices")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise SpecError("name", name, "must be a string")
        return cls(BackboneSpec.from_dict(data["backbone"]), temporal, name)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            shown = text[:40] + ("..." if len(text) > 40 else "")
            raise SpecError("spec", shown, f"is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchSpec:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError("path", str(path), f"cannot be read ({exc.strerror})") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(indent=2) + "\n")
        return path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.arch_id)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}x{v}" for k, v in sorted(self.op_counts().items()))
        return f"ArchSpec(name={self.name!r}, arch_id={self.arch_id}, slots={len(self.temporal)}, ops=[{counts}])"
