"""Pretrained weights of a reference model, loaded into a vidnas network.

A user who holds weights for the model a preset reproduces (diffusers' Stable Video
Diffusion UNet, say) loads them into any architecture of that family: every block that
exists in both takes its weights, every other parameter keeps its initialisation, and
nothing mismatches silently.

* :func:`read_checkpoint` reads a safetensors file or a diffusers model folder
  (``config.json`` beside ``*.safetensors``, possibly sharded with a
  ``*.safetensors.index.json``). Pickle checkpoints (``.bin``, ``.pt``, ``.ckpt`` ...) are
  refused: loading one can run arbitrary code.
* :func:`load_reference_weights` maps the reference's names onto the network's with its
  family's :meth:`~vidnas.search_space.BackboneFamily.reference_state_dict`, checks every
  shape, and loads *units* whole: when any tensor of a unit (``units.<name>``, one residual
  block, one temporal slot ...) has another shape than the reference's, the whole unit keeps
  its initialisation, so no module is left half reference, half random. The
  :class:`WeightReport` lists what was loaded, what kept its initialisation, the reference
  keys left unused and the shape mismatches.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidnas._errors import SpecError, VidnasError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from vidnas.search_space._spec import ArchSpec

__all__ = ["PICKLE_SUFFIXES", "Checkpoint", "WeightReport", "load_reference_weights", "read_checkpoint"]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_PREFERRED = ("diffusion_pytorch_model", "model")  # diffusers' and transformers' file stems


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A reference model's tensors and where they came from."""

    state: Mapping[str, torch.Tensor]
    source: str  # the path given
    files: tuple[str, ...]  # the safetensors files read
    config: Mapping[str, Any] | None = None  # a diffusers folder's config.json

    @property
    def class_name(self) -> str | None:
        """The reference class a diffusers folder names (``_class_name``), if any."""
        return None if self.config is None else self.config.get("_class_name")


@dataclasses.dataclass(frozen=True)
class WeightReport:
    """What loading a reference's weights into one network did (names are the network's,
    except ``unused``, which are the reference's)."""

    arch_id: str
    reference: str
    loaded: tuple[str, ...]  # parameters and buffers that took the reference's values
    initialised: tuple[str, ...]  # kept their initialisation (new or changed layers)
    unused: tuple[str, ...]  # reference keys with no place in this architecture
    mismatched: tuple[dict[str, Any], ...]  # {"key", "shape", "reference_shape"}: their units kept initialisation

    @property
    def partial(self) -> tuple[str, ...]:
        """Units that took reference weights while some of their parameters kept initialisation
        (a layer the reference has in another form, e.g. without its time-embedding input)."""
        loaded = {_unit_of(k) for k in self.loaded}
        return tuple(sorted(loaded & {_unit_of(k) for k in self.initialised}))

    def summary(self) -> dict[str, int]:
        return {"loaded": len(self.loaded), "initialised": len(self.initialised), "unused": len(self.unused),
                "mismatched": len(self.mismatched), "partial_units": len(self.partial)}

    def to_dict(self) -> dict[str, Any]:
        return {"arch_id": self.arch_id, "reference": self.reference, "summary": self.summary(),
                "loaded": list(self.loaded), "initialised": list(self.initialised), "unused": list(self.unused),
                "mismatched": [dict(m) for m in self.mismatched], "partial_units": list(self.partial)}


# Reading ------------------------------------------------------------------------------------------


def _refuse_pickle(path: Path, field: str) -> SpecError:
    return SpecError(field, str(path), "is a pickle checkpoint, which vidnas never loads (unpickling can run code)",
                     "convert it to safetensors first, e.g. `safetensors.torch.save_file(torch.load(path, "
                     "weights_only=True), 'model.safetensors')`, or save the diffusers model with "
                     "`save_pretrained(..., safe_serialization=True)`")


def _pick(files: list[Path], kind: str, folder: Path, field: str) -> Path:
    """One file of ``files``: the only one, or the one with a standard stem (no variant)."""
    if len(files) == 1:
        return files[0]
    for stem in _PREFERRED:
        for f in files:
            if f.name.split(".")[0] == stem and f.name.count(".") == (3 if kind == "index" else 1):
                return f
    raise SpecError(field, str(folder), f"holds several {kind} files ({', '.join(f.name for f in files)})",
                    "pass the path of the one to load")


def _load_files(paths: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in paths:
        state.update(load_file(str(path)))
    return state


def read_checkpoint(path: str | Path, *, field: str = "--init-from") -> Checkpoint:
    """Read a safetensors file or a diffusers model folder (sharded or not); refuse pickle.

    Raises :class:`SpecError` naming ``field`` and the path for a missing path, a pickle
    checkpoint, a folder without safetensors weights, or an ambiguous folder.
    """
    path = Path(path)
    if not path.exists():
        raise SpecError(field, str(path), "does not exist")
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise _refuse_pickle(path, field)
        if path.name.endswith(".safetensors.index.json"):
            return _read_index(path, path.parent, field)
        if path.suffix.lower() != ".safetensors":
            raise SpecError(field, str(path), "is not a safetensors file or a diffusers model folder",
                            "give a .safetensors file or a folder with config.json and *.safetensors")
        return Checkpoint(_load_files([path]), str(path), (str(path),), _read_config(path.parent))
    if (path / "model_index.json").exists() and not (path / "config.json").exists():
        raise SpecError(field, str(path), "is a pipeline folder, not a model folder",
                        "pass its model's subfolder, e.g. `unet` or `transformer`")
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if indexes:
        return _read_index(_pick(indexes, "index", path, field), path, field)
    files = sorted(path.glob("*.safetensors"))
    if files:
        chosen = _pick(files, "safetensors", path, field)
        return Checkpoint(_load_files([chosen]), str(path), (str(chosen),), _read_config(path))
    pickled = sorted(f for f in path.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise _refuse_pickle(pickled[0], field)
    raise SpecError(field, str(path), "holds no *.safetensors weights")


def _read_index(index: Path, folder: Path, field: str) -> Checkpoint:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpecError(field, str(index), f"is not a safetensors index ({type(exc).__name__}: {exc})") from None
    shards = sorted({folder / name for name in weight_map.values()})
    for shard in shards:
        if shard.suffix.lower() in PICKLE_SUFFIXES:
            raise _refuse_pickle(shard, field)
        if not shard.exists():
            raise SpecError(field, str(shard), "is listed in the index but missing")
    state = _load_files(shards)
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise SpecError(field, str(index), f"lists {len(missing)} tensors its shards lack (e.g. {missing[0]})")
    return Checkpoint(state, str(folder), tuple(str(s) for s in shards), _read_config(folder))


def _read_config(folder: Path) -> dict[str, Any] | None:
    config = folder / "config.json"
    if not config.exists():
        return None
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# Loading ------------------------------------------------------------------------------------------


def _unit_of(name: str) -> str:
    """The unit a parameter belongs to: ``units.<name>`` in every family's network, else its first component."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "units" and len(parts) > 2 else parts[0]


def load_reference_weights(network: nn.Module, spec: ArchSpec, state: Mapping[str, torch.Tensor], *,
                           reference: str = "diffusers", source: str = "checkpoint") -> WeightReport:
    """Load a reference model's ``state`` into ``network`` (``build_network(spec)``) in place.

    Units whose every mapped tensor has the network's shape take the reference's values (cast to
    the network's dtype); the rest keep their initialisation. Raises :class:`SpecError` when no
    tensor at all could be loaded (``source`` names the checkpoint), which means the checkpoint
    is not of the reference model ``spec``'s family maps.
    """
    import torch

    from vidnas.search_space._family import get_family

    mapped, unused = get_family(spec.family).reference_state_dict(spec, state, reference=reference)
    target = network.state_dict()
    stray = sorted(set(mapped) - set(target))
    if stray:
        raise VidnasError(f"the `{spec.family}` family mapped reference weights to {stray[0]!r}, which its network "
                          f"does not have ({len(stray)} such names)")
    mismatched = []
    bad_units = set()
    for name, tensor in mapped.items():
        shape, ref_shape = tuple(target[name].shape), tuple(tensor.shape)
        if shape != ref_shape:
            mismatched.append({"key": name, "shape": list(shape), "reference_shape": list(ref_shape)})
            bad_units.add(_unit_of(name))
    loadable = {name: tensor for name, tensor in mapped.items() if _unit_of(name) not in bad_units}
    if not loadable:
        raise SpecError("--init-from", source, f"shares no weights with architecture {spec.arch_id} "
                        f"({len(mismatched)} shape mismatches, {len(unused)} of {len(state)} keys without a place)",
                        f"pass a checkpoint of the {reference} model this `{spec.family}` preset reproduces")
    with torch.no_grad():
        for name, tensor in loadable.items():
            target[name].copy_(tensor.to(dtype=target[name].dtype))
    return WeightReport(
        arch_id=spec.arch_id,
        reference=reference,
        loaded=tuple(sorted(loadable)),
        initialised=tuple(sorted(set(target) - set(loadable))),
        unused=tuple(sorted(unused)),
        mismatched=tuple(sorted(mismatched, key=lambda m: m["key"])),
    )
