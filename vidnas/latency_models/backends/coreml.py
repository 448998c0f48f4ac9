"""``coreml``: converted with coremltools on any OS; timed only on macOS.

Elsewhere :meth:`CoreMLBackend.prepare` raises :class:`BackendUnavailableError`, and
``vidnas lut export --backend coreml`` writes a bundle of models with a timing script to
run on the Mac or device (:func:`vidnas.latency_models.export_coreml_bundle`); ``vidnas
lut import`` brings its CSV back.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

from vidnas._env import cpu_model, package_versions
from vidnas._errors import SpecError
from vidnas._registry import Option
from vidnas.latency_models._backends import (
    BackendUnavailableError,
    BundleExporter,
    host_fingerprint,
    register_backend,
)
from vidnas.search_space import COREML_COMPUTE_UNITS, COREML_PRECISIONS

OPTIONS = (
    Option("compute_units", str, "ALL", "where Core ML may run the model", choices=tuple(COREML_COMPUTE_UNITS)),
    Option("precision", str, "float16", "the converted model's precision", choices=tuple(COREML_PRECISIONS)),
)


@dataclasses.dataclass
class CoreMLBackend:
    """Core ML: converted anywhere, timed only where Core ML runs (macOS)."""

    device: str = "ane"  # the compute-unit family timed: recorded, chosen by ``compute_units``
    compute_units: str = "ALL"
    precision: str = "float16"
    threads: int | None = None
    name: str = "coreml"

    def __post_init__(self) -> None:
        if self.compute_units not in COREML_COMPUTE_UNITS:
            raise SpecError("compute_units", self.compute_units, "is not a Core ML compute unit",
                            f"choose one of {list(COREML_COMPUTE_UNITS)}")
        if self.precision not in COREML_PRECISIONS:
            raise SpecError("precision", self.precision, "is not supported", f"choose one of {list(COREML_PRECISIONS)}")

    @property
    def dtype(self) -> str:
        return self.precision

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "device_name": platform.machine() + " " + cpu_model(),
                "threads": None, "dtype": self.precision,
                "options": {"compute_units": self.compute_units, "precision": self.precision},
                "versions": package_versions(("coremltools", "torch")), **host_fingerprint()}

    def convert(self, module, inputs, path: Path | None = None):
        from vidnas.search_space import convert_coreml

        return convert_coreml(module, inputs, path, compute_units=self.compute_units, precision=self.precision)

    def prepare(self, module, inputs, *, key=None):
        from vidnas.search_space import coreml_can_run

        if not coreml_can_run():
            raise BackendUnavailableError(
                "Core ML models can be converted here but timed only on macOS; run `vidnas lut export --backend "
                "coreml --space SPACE --out DIR` to write the models with a timing script, time them on the Mac or "
                "device, then `vidnas lut import RESULTS.csv` to bring the table back"
            )
        model = self.convert(module, inputs)
        names = [i.name for i in model.get_spec().description.input]
        feeds = dict(zip(names, (t.detach().cpu().numpy() for t in inputs)))

        def run() -> None:
            model.predict(feeds)

        return run


def _write_bundle(space, out_dir, *, batch: int = 1, progress=None, **options: Any):
    """A space's units as Core ML models, a manifest and ``time_coreml.py`` (see ``export_coreml_bundle``)."""
    from vidnas.latency_models._coreml_bundle import export_coreml_bundle

    return export_coreml_bundle(space, out_dir, batch=batch, progress=progress, **options)


BUNDLE = BundleExporter(_write_bundle, "on macOS: python {out}/time_coreml.py --out results.csv; then "
                                       "vidnas lut import results.csv --out TABLE.parquet")


@register_backend("coreml", summary="Core ML: converted anywhere, timed on macOS (elsewhere: lut export bundle)",
                  devices=("ane", "gpu", "cpu"), options=OPTIONS, measures_here=platform.system() == "Darwin",
                  datasheet="phone-npu", bundle=BUNDLE)
def _coreml(*, device: str = "ane", threads: int | None = None, **options: Any) -> CoreMLBackend:
    # The compute units choose where Core ML runs; the device argument of other backends has no meaning here.
    return CoreMLBackend(threads=threads, **options)
