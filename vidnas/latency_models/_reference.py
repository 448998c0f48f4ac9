"""The reference workload every measurement is paired with.

Shared machines change speed by tens of percent over seconds and minutes. Every table
entry and every end-to-end network is therefore timed interleaved with this fixed
workload, on the same backend, and its ratio to it is stored beside its plain median;
ratios measured minutes apart stay comparable when absolute times do not. A ratio
converts to milliseconds through the reference's median time over the whole table
(``TableMeta.reference_ms``). Whether a measurement group stands on its per-round ratios,
on its plain medians rescaled by the reference's level, or on the plain medians alone is
decided from the group's own rounds (``_pairing``): when the measured work uses every core
or another process loads one, the reference competes with it and its ratio can turn to
noise.

The workload is a residual block (64 channels, 16x16, 4 frames, batch 1): convolutions,
group norms and a linear layer, about the size of a typical unit.
"""

from __future__ import annotations

from typing import Any

from vidnas.search_space import UnitPlan

REFERENCE_DESCRIPTION = "resblock 64->64 channels, 16x16 latent, 4 frames, batch 1"


def reference_plan() -> UnitPlan:
    return UnitPlan(
        name="reference", kind="resblock",
        config={"in_channels": 64, "out_channels": 64, "temb_channels": 256, "norm_groups": 32},
        in_shape=(64, 16, 16), out_shape=(64, 16, 16), frames=4,
    )


def reference_runner(backend, artefacts=None) -> Any:
    """A runner of the reference workload on ``backend``."""
    from vidnas.latency_models._units import unit_runner
    from vidnas.search_space import BackboneSpec

    backbone = BackboneSpec(channels=(64,), layers_per_block=(1,), attention=(False,), cross_attention_dim=0)
    return unit_runner(reference_plan(), backend, 1, backbone, artefacts=artefacts)
