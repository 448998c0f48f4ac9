"""``debug``: no real work; a synthetic latency from the closed-form FLOPs on a virtual clock.

For tests that need deterministic timings of tables, predictors and resumption.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, ClassVar

from vidnas._env import package_versions
from vidnas._errors import VidnasError
from vidnas._registry import Option
from vidnas.latency_models._backends import VirtualClock, host_fingerprint, register_backend

OPTIONS = (
    Option("gflops", float, 50.0, "synthetic speed: GFLOP/s of every unit"),
    Option("overhead_ms", float, 0.05, "fixed cost of a unit call, ms", minimum=0.0),
    Option("network_overhead_ms", float, 0.4, "fixed cost of a whole network call, ms", minimum=0.0),
    Option("fusion", float, 0.9, "a network's share of the sum of its units", minimum=0.0),
    Option("noise", float, 0.0, "relative standard deviation of each sample", minimum=0.0),
    Option("seed", int, 0, "seed of the noise"),
    Option("sleep_ms", float, 0.0, "really sleep this long in prepare() (tests of interrupted builds)", minimum=0.0),
    Option("dtype", str, "float32", "the dtype recorded (nothing is computed)"),
)


@dataclasses.dataclass
class DebugBackend:
    """Synthetic timings without running anything: for tests of tables, predictors and resumption.

    A unit's latency is ``overhead_ms + flops / (gflops * 1e6)``; a whole network's is
    ``network_overhead_ms + fusion * sum(units)``, so a correction has something real to
    learn. ``noise`` is the relative standard deviation of each sample; ``sleep_ms``
    really sleeps in :meth:`prepare` (to test interrupted builds).
    """

    device: str = "cpu"
    gflops: float = 50.0
    overhead_ms: float = 0.05
    network_overhead_ms: float = 0.4
    fusion: float = 0.9
    noise: float = 0.0
    seed: int = 0
    sleep_ms: float = 0.0
    threads: int | None = 1
    dtype: str = "float32"
    name: str = "debug"
    wall_clock: ClassVar[bool] = False  # a virtual clock: a busy machine cannot disturb it

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "device_name": "debug", "threads": self.threads,
                "dtype": self.dtype,
                "options": {"gflops": self.gflops, "overhead_ms": self.overhead_ms,
                            "network_overhead_ms": self.network_overhead_ms, "fusion": self.fusion},
                "versions": package_versions(("vidnas",)), **host_fingerprint()}

    def latency_ms(self, module, inputs) -> float:
        """The synthetic latency of a unit harness or a network harness on ``inputs``."""
        from vidnas.search_space import get_family, unit_cost

        plan = getattr(module, "plan", None)
        rows = inputs[0].shape[0] if inputs else 1
        if plan is not None:  # a UnitHarness
            batch = get_family(plan.family).batch_of(plan, inputs)
            return self.overhead_ms + unit_cost(plan, batch).flops / (self.gflops * 1e6)
        plans = getattr(module, "network_plan", None)
        if plans is None:
            raise VidnasError("the debug backend times only units and networks built by vidnas")
        total = sum(self.overhead_ms + unit_cost(p, rows).flops / (self.gflops * 1e6)
                    for p in plans if not p.is_identity)
        return self.network_overhead_ms + self.fusion * total

    def prepare(self, module, inputs, *, key=None):
        import time

        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1000)
        base = self.latency_ms(module, inputs)
        rng = random.Random(f"{self.seed}-{key}")
        clock = VirtualClock()

        def run() -> None:
            clock.now += max(0.0, base * (1 + self.noise * rng.gauss(0, 1))) / 1000

        run.clock = clock  # type: ignore[attr-defined]
        return run


register_backend("debug", summary="synthetic latency from FLOPs on a virtual clock (tests)", devices=("cpu",),
                 options=OPTIONS)(DebugBackend)
