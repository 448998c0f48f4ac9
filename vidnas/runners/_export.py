"""Export a campaign's Pareto set as ONNX and Core ML models ready for training or deployment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.search_space import ArchSpec

FORMATS = ("onnx", "coreml")


def export_run(run_dir: str | Path, formats: tuple[str, ...] = ("onnx",), *, out: str | Path | None = None,
               batch: int = 1, progress: Callable[[int, int, str], None] | None = None) -> list[dict[str, Any]]:
    """Write ``export/<rank>-<arch_id>.onnx`` / ``.mlpackage`` for every Pareto spec of a run."""
    from vidnas.search_space import NetworkHarness, build_network, convert_coreml, export_onnx

    run_dir = Path(run_dir)
    for f in formats:
        if f not in FORMATS:
            raise SpecError("--format", f, "is not an export format", f"choose from {list(FORMATS)}")
    index = run_dir / "pareto" / "pareto.json"
    if not index.exists():
        raise SpecError("RUN_DIR", str(run_dir), "has no Pareto set (pareto/pareto.json)",
                        "run `vidnas search` (or --resume) to completion first")
    entries = json.loads(index.read_text())["pareto"]
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, entry in enumerate(entries, 1):
        spec = ArchSpec.load(run_dir / "pareto" / entry["spec"])
        harness = NetworkHarness(build_network(spec)).eval()
        inputs = harness.example_inputs(batch)
        stem = f"{entry['rank']:02d}-{spec.arch_id}"
        record: dict[str, Any] = {"rank": entry["rank"], "arch_id": spec.arch_id}
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
