"""``torch``: eager PyTorch on ``cpu`` or ``cuda``.

On a GPU each call is timed with CUDA events, after synchronisation, not with the host
clock; float16 and bfloat16 are recorded in the fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from vidnas._env import package_versions
from vidnas._errors import SpecError
from vidnas._registry import Option
from vidnas.latency_models._backends import (
    _check_device,
    _check_threads,
    device_name,
    host_fingerprint,
    register_backend,
)

DTYPES = ("float32", "float16", "bfloat16")
OPTIONS = (Option("dtype", str, "float32", "the module's and inputs' floating-point type", choices=DTYPES),)


@dataclasses.dataclass
class TorchBackend:
    """Eager PyTorch. ``threads`` fixes intra-op threads (set again before each use)."""

    device: str = "cpu"
    threads: int | None = None
    dtype: str = "float32"
    name: str = "torch"

    def __post_init__(self) -> None:
        self.device = _check_device(self.device)
        self.threads = _check_threads(self.threads)
        if self.dtype not in DTYPES:
            raise SpecError("dtype", self.dtype, "is not supported", "choose float32, float16 or bfloat16")

    def _set_threads(self) -> None:
        import torch

        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def fingerprint(self) -> dict[str, Any]:
        import torch

        self._set_threads()
        return {"backend": self.name, "device": self.device, "device_name": device_name(self.device),
                "threads": torch.get_num_threads(), "dtype": self.dtype,
                "options": self._options(), "versions": package_versions(("torch",)), **host_fingerprint()}

    def _options(self) -> dict[str, Any]:
        import torch

        options: dict[str, Any] = {"mode": "eager", "cuda": None}
        if self.device.startswith("cuda"):
            # What changes a GPU's figures besides the dtype: library versions, TF32 for float32
            # matmuls and convolutions, cuDNN's autotuner, the compute capability; timed with CUDA events.
            options.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                           tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                           tf32_cudnn=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark,
                           capability=list(torch.cuda.get_device_capability(torch.device(self.device))),
                           timer="cuda_events")
        return options

    def prepare(self, module, inputs, *, key=None):
        import torch

        self._set_threads()
        device_name(self.device)  # fail early on a missing GPU
        dtype = getattr(torch, self.dtype)
        module = module.to(self.device).eval()
        if self.dtype != "float32":
            module = module.to(dtype)
        inputs = tuple(t.to(self.device, dtype) if t.is_floating_point() else t.to(self.device) for t in inputs)
        if not self.device.startswith("cuda"):

            def run() -> None:
                with torch.inference_mode():
                    module(*inputs)

            return run
        return _cuda_runner(module, inputs, torch.device(self.device))


def _cuda_runner(module, inputs, device) -> Callable[[], None]:
    """A runner on a GPU: each call returns after the device has finished; ``run.time_calls(n)``
    times ``n`` calls with CUDA events, each call bracketed by its own pair of events and
    waited for, so that no call overlaps the next and the host clock is not involved."""
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)

    def run() -> None:
        with torch.inference_mode(), torch.cuda.device(device):
            module(*inputs)
        torch.cuda.synchronize(device)

    def time_calls(n: int) -> float:
        """Milliseconds per call over ``n`` calls, by CUDA events."""
        torch.cuda.synchronize(device)  # nothing earlier still in flight
        total = 0.0
        with torch.inference_mode(), torch.cuda.device(device):
            for _ in range(n):
                start.record()
                module(*inputs)
                end.record()
                end.synchronize()
                total += start.elapsed_time(end)
        return total / n

    run.time_calls = time_calls  # type: ignore[attr-defined]
    return run


register_backend("torch", summary="eager PyTorch (CPU, CUDA)", devices=("cpu", "cuda"), options=OPTIONS)(TorchBackend)
