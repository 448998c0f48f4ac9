"""Export a campaign's Pareto set: ONNX and Core ML models, and PyTorch weights ready for training.

With ``init_from`` (a reference model's checkpoint: a safetensors file or a diffusers model
folder), every Pareto architecture first takes the reference's weights where its blocks exist
in the reference (see :func:`~vidnas.search_space.load_reference_weights`); a report per model,
``<rank>-<arch_id>.weights.json``, lists what was loaded, what kept its initialisation, the
reference keys left unused and any shape mismatch. ``safetensors`` writes the (initialised)
weights under ``build_network(spec)``'s parameter names, with the spec in the file's metadata.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec

FORMATS = ("onnx", "coreml", "safetensors")


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """Where and how :func:`export_run` writes the models."""

    out: str | Path | None = None  # the directory (default: RUN_DIR/export)
    batch: int = 1  # the example inputs' batch (traced into ONNX and Core ML)
    init_from: str | Path | None = None  # a reference model's checkpoint whose weights the models take
    reference: str = "diffusers"  # whose parameter names the checkpoint uses


def export_run(run_dir: str | Path, formats: tuple[str, ...] = ("onnx",), options: ExportOptions | None = None, *,
               progress: Callable[[int, int, str], None] | None = None, **fields: Any) -> list[dict[str, Any]]:
    """Write ``export/<rank>-<arch_id>.{onnx,mlpackage,safetensors}`` for every Pareto spec of a run.

    ``fields``: :class:`ExportOptions` fields given one by one (they replace those of ``options``), e.g.
    ``export_run(run_dir, ("safetensors",), init_from=checkpoint)``. Returns one record per model (paths
    written, and with ``init_from`` the weight report's summary and path); the list is also written to
    ``exports.json``.
    """
    from vidnas.search_space import NetworkHarness, build_network, convert_coreml, export_onnx, read_checkpoint

    options = dataclasses.replace(options or ExportOptions(), **fields)
    run_dir = Path(run_dir)
    for f in formats:
        if f not in FORMATS:
            raise SpecError("--format", f, "is not an export format", f"choose from {list(FORMATS)}")
    index = run_dir / "pareto" / "pareto.json"
    if not index.exists():
        raise SpecError("RUN_DIR", str(run_dir), "has no Pareto set (pareto/pareto.json)",
                        "run `vidnas search` (or --resume) to completion first")
    entries = json.loads(index.read_text())["pareto"]
    checkpoint = read_checkpoint(options.init_from) if options.init_from is not None else None
    out = Path(options.out) if options.out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, entry in enumerate(entries, 1):
        spec = ArchSpec.load(run_dir / "pareto" / entry["spec"])
        stem = f"{entry['rank']:02d}-{spec.arch_id}"
        record: dict[str, Any] = {"rank": entry["rank"], "arch_id": spec.arch_id}
        network = build_network(spec)
        if checkpoint is not None:
            record["init"] = _initialise(network, spec, checkpoint, options.reference, out / f"{stem}.weights.json")
        if "safetensors" in formats:
            record["safetensors"] = str(_save_weights(network, spec, out / f"{stem}.safetensors", record.get("init")))
        harness = NetworkHarness(network).eval()
        inputs = harness.example_inputs(options.batch)
        if "onnx" in formats:
            record["onnx"] = str(export_onnx(harness, inputs, out / f"{stem}.onnx"))
        if "coreml" in formats:
            path = out / f"{stem}.mlpackage"
            try:
                convert_coreml(harness, inputs, path)
                record["coreml"] = str(path)
            except Exception as exc:  # reported per model, never silently dropped
                record["coreml_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        written.append(record)
        if progress:
            progress(i, len(entries), stem)
    (out / "exports.json").write_text(json.dumps(written, indent=2))
    return written


def _initialise(network: Any, spec: ArchSpec, checkpoint: Any, reference: str, report_path: Path) -> dict[str, Any]:
    """Load the checkpoint into ``network``; write the full report, return its summary."""
    from vidnas.search_space import load_reference_weights

    try:
        report = load_reference_weights(network, spec, checkpoint.state, reference=reference,
                                        source=checkpoint.source)
    except SpecError as exc:
        if exc.field != "reference":
            raise
        raise SpecError("--reference", exc.value, exc.problem, exc.hint) from None
    data = {"checkpoint": checkpoint.source, "files": list(checkpoint.files),
            "reference_class": checkpoint.class_name, **report.to_dict()}
    report_path.write_text(json.dumps(data, indent=2))
    return {"from": checkpoint.source, **report.summary(), "report": str(report_path)}


def _save_weights(network: Any, spec: ArchSpec, path: Path, init: dict[str, Any] | None) -> Path:
    """The network's state dict as safetensors; the spec and the weights' origin in the metadata."""
    from safetensors.torch import save_file

    import vidnas

    metadata = {"format": "vidnas.weights", "arch_id": spec.arch_id, "spec": spec.to_json(),
                "vidnas": getattr(vidnas, "__version__", "unknown"),
                "init_from": init["from"] if init else "initialisation"}
    state = {name: tensor.detach().contiguous() for name, tensor in network.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path
