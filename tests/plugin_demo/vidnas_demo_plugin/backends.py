"""``demo_debug``: the debug backend's synthetic timing, at another speed, registered by a function.

Its options are a typed schema (``BackendOption``): ``-O gflops=...`` on the command line and
``target.options.gflops`` in a campaign are checked against it, errors naming the field.
"""

from __future__ import annotations


def register() -> None:
    import dataclasses

    from vidnas.latency_models import BackendOption, DebugBackend, register_backend

    @dataclasses.dataclass
    class DemoBackend(DebugBackend):
        gflops: float = 20.0
        name: str = "demo_debug"

    options = (BackendOption("gflops", float, 20.0, "synthetic speed, GFLOP/s"),
               BackendOption("noise", float, 0.0, "relative standard deviation of each sample", minimum=0.0))
    register_backend("demo_debug", summary="synthetic timing at 20 GFLOP/s (demo plugin)", options=options)(DemoBackend)
