"""``demo_debug``: the debug backend's synthetic timing, at another speed, registered by a function."""

from __future__ import annotations


def register() -> None:
    import dataclasses

    from vidnas.latency_models import DebugBackend, register_backend

    @dataclasses.dataclass
    class DemoBackend(DebugBackend):
        gflops: float = 20.0
        name: str = "demo_debug"

    register_backend("demo_debug", summary="synthetic timing at 20 GFLOP/s (demo plugin)")(DemoBackend)
