"""One unit prepared for timing: its harness, example inputs and the backend's runner."""

from __future__ import annotations

from pathlib import Path

from vidnas.latency_models._backends import Backend
from vidnas.search_space import UnitPlan

__all__ = ["unit_runner"]


def unit_runner(plan: UnitPlan, backend: Backend, batch: int, backbone, *, seed: int = 0,
                artefacts: Path | None = None):
    """A prepared runner timing one unit on ``backend``."""
    import torch

    from vidnas.search_space import UnitHarness, randomize_zero_layers_, unit_example_inputs

    torch.manual_seed(seed)
    harness = randomize_zero_layers_(UnitHarness(plan).eval(), seed)
    inputs = unit_example_inputs(plan, backbone, batch, seed=seed)
    if artefacts is not None and hasattr(backend, "cache_dir"):
        backend.cache_dir = artefacts
    return backend.prepare(harness, inputs, key=f"{plan.signature_id}-b{batch}")
