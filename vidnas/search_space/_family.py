"""Backbone families behind one seam.

A family (``unet``, ``dit``, or one registered by a plugin) is one module implementing
:class:`BackboneFamily` and one :func:`register_family` call. The rest of vidnas never
names a family's classes: it builds networks with :func:`build_network`, lists units
with :func:`build_plan`, counts them with :func:`unit_cost` and times them through
:class:`~vidnas.search_space.UnitHarness`, each dispatching on ``spec.family`` (or
``plan.family``).

Describing, planning and counting need no torch; a family imports torch only in
:meth:`BackboneFamily.build_unit`, :meth:`build_network` and the input builders.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vidnas._errors import SpecError
from vidnas._registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from vidnas.search_space._backbone import Backbone
    from vidnas.search_space._cost import Cost
    from vidnas.search_space._plan import UnitPlan
    from vidnas.search_space._spec import ArchSpec

__all__ = ["FAMILIES", "BackboneFamily", "build_network", "build_plan", "get_family", "list_families",
           "register_family", "unit_cost"]


class BackboneFamily(abc.ABC):
    """What a backbone family implements.

    Networks a family builds take ``forward(sample, timestep, context=None,
    added_time_ids=None)`` with ``sample`` ``(B, T, input_channels, H, W)`` latents and return
    ``(B, T, output_channels, H, W)``; they expose ``plan`` (the units, in order) and
    ``units`` (an ``nn.ModuleDict`` of unit modules keyed by :func:`module_key` of the
    unit's name), ``example_inputs(batch, seed=)``, and ``stream(...)`` when they can stream.
    A network runs every non-conditioning unit through :class:`~vidnas.search_space.PlanWalk` as
    ``self.units[module_key(plan.name)](h, cond, aux)`` with a family-specific ``cond``, so that
    a unit's module can be swapped for another with the same call (the supernet does).
    """

    name: str
    backbone_type: type

    @abc.abstractmethod
    def plan(self, spec: ArchSpec) -> list[UnitPlan]:
        """The units of ``spec`` in execution order."""

    @abc.abstractmethod
    def unit_cost(self, plan: UnitPlan, batch: int) -> Cost | None:
        """Closed-form cost of one unit on ``batch`` clips; ``None`` when it has no formula."""

    @abc.abstractmethod
    def build_unit(self, plan: UnitPlan) -> nn.Module:
        """The module of one unit, freshly initialised."""

    @abc.abstractmethod
    def build_network(self, spec: ArchSpec) -> nn.Module:
        """The whole network of ``spec``, freshly initialised."""

    @abc.abstractmethod
    def unit_inputs(self, plan: UnitPlan, backbone: Backbone, batch: int, *, seed: int = 0,
                    dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        """Random plain-tensor inputs of one unit (see :meth:`call_unit`)."""

    @abc.abstractmethod
    def call_unit(self, module: nn.Module, plan: UnitPlan, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Run a unit's module on the tensors of :meth:`unit_inputs` (for timing and export)."""

    def reference_state_dict(self, spec: ArchSpec, state: Mapping[str, torch.Tensor], *, reference: str
                             ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Map a reference implementation's weights onto ``build_network(spec)``'s parameter names.

        ``reference`` names the implementation (e.g. ``diffusers``). Returns the mapped state
        dict and the reference keys that found no place in ``spec`` (blocks it does not have).
        Families without a mapping raise :class:`SpecError`.
        """
        raise SpecError("reference", reference, f"has no weight mapping for the `{self.name}` family")

    def batch_of(self, plan: UnitPlan, tensors: tuple[torch.Tensor, ...]) -> int:
        """The number of clips the tensors of :meth:`unit_inputs` hold. Default: a conditioning
        unit's first input has one row per clip, any other unit's one row per frame."""
        rows = tensors[0].shape[0] if tensors else 1
        return rows if plan.conditioning else max(1, rows // plan.frames)

    def conditioning_elements(self, backbone: Backbone, batch: int) -> int:
        """Elements of the conditioning tensors alive through a whole call (time embedding,
        context ...), for the activation-memory count. Default: none."""
        return 0


FAMILIES: Registry[BackboneFamily] = Registry("vidnas.families", "backbone family", field="family")


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Register ``family`` under ``family.name``; registering a name twice replaces it and warns."""
    return FAMILIES.register(family.name, family, module=type(family).__module__)


def get_family(name: str, field: str = "family") -> BackboneFamily:
    return FAMILIES.get(name, field)


def list_families() -> list[str]:
    return FAMILIES.names()


def module_key(name: str) -> str:
    """The key of a unit's module in a network's ``units`` dict (dots are not allowed there)."""
    return name.replace(".", "_")


# Dispatch --------------------------------------------------------------------------------------


def build_plan(spec: ArchSpec) -> list[UnitPlan]:
    """The units of ``spec`` in execution order (its family's plan)."""
    return get_family(spec.family).plan(spec)


def unit_cost(plan: UnitPlan, batch: int) -> Cost | None:
    """Closed-form cost of one unit on ``batch`` clips (its family's formula)."""
    return get_family(plan.family).unit_cost(plan, batch)


def build_unit(plan: UnitPlan) -> Any:
    """The module of one unit, freshly initialised."""
    return get_family(plan.family).build_unit(plan)


def build_network(spec: ArchSpec) -> Any:
    """The network ``spec`` describes, freshly initialised: the only way vidnas builds one."""
    return get_family(spec.family).build_network(spec)
