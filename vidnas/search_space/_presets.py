"""Named architectures: a registry of presets (a backbone of any family and its temporal choices).

The built-in presets are declared by their families (``families/unet/presets.py``: ``tiny``,
``svd``, ``mobilevd``, ``snapgen-v``; ``families/dit/presets.py``: the transformers) and loaded
through the ``vidnas.presets`` entry point group, as a plugin's are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from vidnas._registry import Registry
from vidnas.search_space._backbone import Backbone
from vidnas.search_space._spec import ArchSpec

__all__ = ["PRESETS", "Preset", "get_preset", "list_presets", "preset_spec", "register_preset"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named backbone and its default temporal layers."""

    name: str
    summary: str
    backbone: Backbone
    temporal: Mapping[str, Any]  # slot pattern -> choice; later patterns override earlier ones

    def spec(self, *, frames: int | None = None, height: int | None = None, width: int | None = None,
             width_mult: float | None = None) -> ArchSpec:
        """The preset's spec, optionally at another clip length, pixel size or channel width."""
        backbone = self.backbone
        if frames is not None or height is not None or width is not None or width_mult is not None:
            backbone = backbone.resized(frames=frames, height=height, width=width, width_mult=width_mult)
        return ArchSpec.create(backbone, self.temporal, name=self.name)


PRESETS: Registry[Preset] = Registry("vidnas.presets", "preset", unknown="is not a preset", field="preset")


def register_preset(preset: Preset) -> Preset:
    """Add a named architecture (a backbone of any family and its slot choices)."""
    return PRESETS.register(preset.name, preset)


def list_presets() -> list[str]:
    return PRESETS.names()


def get_preset(name: str, field: str = "preset") -> Preset:
    return PRESETS.get(name, field)


def preset_spec(name: str, **shape: int | None) -> ArchSpec:
    """Shortcut: ``get_preset(name).spec(**shape)``."""
    return get_preset(name).spec(**shape)


SpecFactory = Callable[..., ArchSpec]
