"""ArchSpec: a frozen, validated, versioned description of one video architecture.

An ArchSpec is a backbone of some *family* (``unet``: a latent video UNet; ``dit``: a
video diffusion transformer; see ``_family``) plus the op chosen at every *slot* the
backbone offers (``vidnas space show PRESET`` lists them; ``families/unet/spec`` and
``families/dit/spec`` name them).

Format: version 2 records the family (``"family": "unet"``); version 1 files, written
before there was more than one family, are UNets and still load. The canonical JSON
(sorted keys, defaults filled in, no whitespace) is the spec's identity: ``arch_id`` is
the first 16 hex digits of its SHA-256, the spec's name excluded. A UNet's id is computed
from its version-1 form, so ids (and every cache keyed by them) survive the format change.
The key ``temporal`` holds the choice at every slot, whatever the slot's position.
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
from vidnas.search_space._backbone import Backbone, SlotInfo
from vidnas.search_space._registry import SlotShape, get_temporal_op

__all__ = ["SPEC_FORMAT", "SPEC_VERSION", "ArchSpec", "TemporalChoice"]

SPEC_FORMAT = "vidnas.arch_spec"
SPEC_VERSION = 2
READABLE_VERSIONS = (1, 2)


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
    """A backbone plus the choice at every slot; validated and canonical on creation.

    ``temporal`` must name every slot of the backbone exactly once (see
    :meth:`Backbone.slots`). Use :meth:`create` to fill unnamed slots with a default.
    """

    backbone: Backbone
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
        backbone: Backbone,
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
        """The same architecture at another clip length or resolution, in latent units (revalidated)."""
        changes = {k: v for k, v in (("frames", frames), ("latent_height", latent_height),
                                     ("latent_width", latent_width)) if v is not None}
        return ArchSpec(dataclasses.replace(self.backbone, **changes), self.temporal, self.name)

    def resized(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
                width_mult: float | None = None) -> ArchSpec:
        """The same choices on the backbone resized to ``frames`` x ``height`` x ``width`` pixels and
        ``width_mult`` times its channels (see :meth:`Backbone.resized`)."""
        if frames is None and height is None and width is None and width_mult is None:
            return self
        backbone = self.backbone.resized(frames=frames, height=height, width=width, width_mult=width_mult)
        return ArchSpec(backbone, self.temporal, self.name)

    # Views -----------------------------------------------------------------------------

    @property
    def family(self) -> str:
        """The backbone family (``unet``, ``dit``, ...)."""
        return self.backbone.family

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
            "family": self.family,
            "backbone": self.backbone.to_dict(),
            "temporal": {k: v.to_dict() for k, v in self.temporal.items()},
        }
        if include_name:
            data["name"] = self.name
        return data

    def _identity_dict(self) -> dict[str, Any]:
        """What ``arch_id`` hashes: the canonical content; a UNet in its version-1 form."""
        data = self.to_dict(include_name=False)
        if self.family == "unet":
            del data["family"]
            data["version"] = 1
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys); ``indent`` only changes white space."""
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @property
    def arch_id(self) -> str:
        canonical = json.dumps(self._identity_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        if not isinstance(data, Mapping):
            raise SpecError("spec", type(data).__name__, "must be a JSON object")
        fmt = data.get("format")
        if fmt != SPEC_FORMAT:
            raise SpecError("format", fmt, "is not an architecture spec", f"expected \"{SPEC_FORMAT}\"")
        version = data.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise SpecError("version", version, "is not supported",
                            f"this vidnas reads versions {list(READABLE_VERSIONS)}")
        allowed = {"format", "version", "name", "backbone", "temporal"} | ({"family"} if version >= 2 else set())
        unknown = sorted(set(data) - allowed)
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
        family_name = data.get("family", "unet")  # version 1 had only UNets
        if version >= 2 and "family" not in data:
            raise SpecError("family", None, "is missing", "version-2 specs name their backbone family")
        if not isinstance(family_name, str):
            raise SpecError("family", family_name, "must be a string")
        from vidnas.search_space._family import get_family

        backbone_type = get_family(family_name).backbone_type
        return cls(backbone_type.from_dict(data["backbone"]), temporal, name)

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
