"""Family-independent module wrappers: one unit or one network as a module of plain tensors.

Timing backends and exporters see only these: :class:`UnitHarness` runs one unit of any
family on the tensors its family's ``unit_inputs`` makes, :class:`NetworkHarness` a
whole network on ``sample, timestep[, context][, added_time_ids]``.
"""

from __future__ import annotations

import torch
from torch import nn

from vidnas.search_space._backbone import Backbone
from vidnas.search_space._family import build_unit, get_family
from vidnas.search_space._plan import UnitPlan

__all__ = ["NetworkHarness", "UnitHarness", "randomize_zero_layers_", "unit_example_inputs"]


class UnitHarness(nn.Module):
    """One unit as a module of plain tensors, for timing and export.

    ``forward(*tensors)`` takes the tensors of :func:`unit_example_inputs` in order (the
    unit's family says which: for a UNet, ``(timestep[, added_time_ids])`` for the time
    embedding, else ``(h[, temb][, context][, aux])``).
    """

    def __init__(self, plan: UnitPlan, module: nn.Module | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.unit = module if module is not None else build_unit(plan)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return get_family(self.plan.family).call_unit(self.unit, self.plan, tensors)


def unit_example_inputs(plan: UnitPlan, backbone: Backbone, batch: int = 1, *, seed: int = 0,
                        dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs for :class:`UnitHarness` of ``plan`` on ``batch`` clips of ``backbone``."""
    return get_family(plan.family).unit_inputs(plan, backbone, batch, seed=seed, dtype=dtype)


class NetworkHarness(nn.Module):
    """A whole network (any family) as a module of plain tensors, for timing and export.

    ``forward(*tensors)`` takes the non-``None`` entries of the network's
    ``example_inputs``, in order: ``sample, timestep[, context][, added_time_ids]``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.network_plan = net.plan
        bb = net.spec.backbone
        self._has_context = bool(bb.context_dim)
        self._has_ids = bool(bb.num_added_time_ids)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        it = iter(tensors)
        sample, timestep = next(it), next(it)
        context = next(it) if self._has_context else None
        ids = next(it) if self._has_ids else None
        return self.net(sample, timestep, context, ids)

    def example_inputs(self, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in self.net.example_inputs(batch, seed=seed) if t is not None)


def randomize_zero_layers_(module: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Give zero-initialised weights small random values, so timing never meets an all-zero fast path."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module
