"""Export a search space's units as Core ML models to time on a Mac or device.

``export_coreml_bundle`` writes ``units/<signature>.mlpackage`` per distinct unit, a
``manifest.json`` (signatures, input names and shapes, harness settings) and
``time_coreml.py``, a stand-alone script that times every model with vidnas's procedure
and writes a CSV for ``vidnas lut import``. Units that fail to convert are listed in the
manifest with the error, never dropped silently.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from vidnas.latency_models._builder import space_units
from vidnas.latency_models._harness import HarnessConfig
from vidnas.search_space import SearchSpace

BUNDLE_FORMAT = "vidnas.coreml_bundle"


def export_coreml_bundle(space: SearchSpace, out_dir: str | Path, *, batch: int = 1, compute_units: str = "ALL",
                         precision: str = "float16", config: HarnessConfig | None = None,
                         progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    from vidnas.search_space import UnitHarness, convert_coreml, randomize_zero_layers_, unit_example_inputs

    out = Path(out_dir)
    (out / "units").mkdir(parents=True, exist_ok=True)
    backbone = space.base.backbone
    units = space_units(space)
    entries = []
    for i, plan in enumerate(units, 1):
        harness = randomize_zero_layers_(UnitHarness(plan).eval())
        inputs = unit_example_inputs(plan, backbone, batch)
        package = f"units/{plan.signature_id}-b{batch}.mlpackage"
        entry: dict[str, Any] = {"signature_id": plan.signature_id, "batch": batch, "kind": plan.kind,
                                 "op": plan.config["op"] if plan.slot is not None else plan.kind,
                                 "signature": json.dumps(plan.signature, sort_keys=True), "package": package}
        try:
            model = convert_coreml(harness, inputs, out / package, compute_units=compute_units, precision=precision)
            spec_inputs = list(model.get_spec().description.input)
            entry["inputs"] = [{"name": d.name, "shape": list(t.shape)} for d, t in zip(spec_inputs, inputs)]
        except Exception as exc:  # a unit Core ML cannot take is recorded, not hidden
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        entries.append(entry)
        if progress:
            progress(i, len(units), plan.name)
    manifest = {"format": BUNDLE_FORMAT, "version": 1, "space": space.name, "batch": batch,
                "compute_units": compute_units, "precision": precision,
                "harness": (config or HarnessConfig()).to_dict(), "units": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    template = resources.files("vidnas.latency_models").joinpath("templates/time_coreml.py")
    with resources.as_file(template) as src:
        shutil.copy(src, out / "time_coreml.py")
    return manifest
