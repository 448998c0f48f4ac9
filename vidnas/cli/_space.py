"""``vidnas space``: the temporal-op registry, one spec's counts, random specs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidnas.cli._common import emit_json, handle_errors, human_bytes, human_count, stdout_console
from vidnas.cli._options import FramesOpt, HeightOpt, JsonOpt, SpaceArg, SpecArg, WidthMultOpt, WidthOpt

space_app = typer.Typer(help="Inspect the search space: ops, families, presets and spaces, one architecture's "
                             "counts, random samples.",
                        no_args_is_help=True)


def load_spec_arg(value: str, *, frames: int | None = None, height: int | None = None, width: int | None = None):
    """A preset name or a spec JSON file, optionally resized."""
    from vidnas._errors import SpecError
    from vidnas.search_space import ArchSpec, list_presets, preset_spec

    if value in list_presets():
        return preset_spec(value, frames=frames, height=height, width=width)
    path = Path(value)
    if not path.exists():
        raise SpecError("SPEC", value, "is neither a preset nor an existing spec file",
                        f"presets: {list_presets()}")
    return ArchSpec.load(path).resized(frames=frames, height=height, width=width)


def op_rows() -> list[dict[str, Any]]:
    from vidnas._plugins import origin
    from vidnas.search_space import get_temporal_op, list_temporal_ops

    rows = []
    for name in list_temporal_ops():
        op = get_temporal_op(name)
        rows.append({
            "name": name,
            "summary": op.summary,
            "causal": "always" if op.is_causal({"causal": False}) else "option" if any(
                p.name == "causal" for p in op.params) else "never",
            "uses_context": op.uses_context,
            "has_cost_formula": op.cost is not None,
            "reference": op.reference,
            "source": origin("vidnas.temporal_ops", name),
            "params": [
                {"name": p.name, "type": p.kind.__name__, "default": None if callable(p.default) else p.default,
                 "default_rule": "C // head_dim" if callable(p.default) else None,
                 "choices": list(p.choices) if p.choices else None, "minimum": p.minimum, "maximum": p.maximum,
                 "doc": p.doc}
                for p in op.params
            ],
        })
    return rows


@space_app.command("ops")
@handle_errors
def ops_command(as_json: JsonOpt = False) -> None:
    """List the registered temporal ops with their parameters."""
    rows = op_rows()
    if as_json:
        emit_json({"ops": rows})
        return
    from rich.table import Table

    table = Table(title="Temporal ops", show_lines=False)
    for col in ("op", "causal", "parameters", "summary", "from"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(f"{p['name']}={p['default'] if p['default_rule'] is None else p['default_rule']}"
                           for p in r["params"])
        table.add_row(r["name"], r["causal"], params, r["summary"], r["source"])
    stdout_console().print(table)


def registry_rows() -> dict[str, list[dict[str, Any]]]:
    """Every backbone family, preset and search space, with where it came from (``vidnas`` or a plugin)."""
    from vidnas.search_space import FAMILIES, PRESETS, SPACES

    families = [{"name": n, "backbone": f.backbone_type.__name__, "source": FAMILIES.origin(n)}
                for n, f in FAMILIES.items()]
    presets = [{"name": n, "family": p.backbone.family, "summary": p.summary, "source": PRESETS.origin(n)}
               for n, p in PRESETS.items()]
    spaces = [{"name": n, "source": SPACES.origin(n)} for n in SPACES.names()]
    return {"families": families, "presets": presets, "spaces": spaces}


@space_app.command("list")
@handle_errors
def list_command(as_json: JsonOpt = False) -> None:
    """List the backbone families, presets and search spaces (built-in and plugins')."""
    rows = registry_rows()
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    console = stdout_console()
    for title, columns in (("families", ("name", "backbone", "source")),
                           ("presets", ("name", "family", "summary", "source")), ("spaces", ("name", "source"))):
        table = Table(title=title.capitalize())
        for col in columns:
            table.add_column("from" if col == "source" else col, overflow="fold")
        for r in rows[title]:
            table.add_row(*(str(r[c]) for c in columns))
        console.print(table)


def show_payload(spec, report, unit_rows: bool = True) -> dict[str, Any]:
    bb = spec.backbone
    payload: dict[str, Any] = {
        "arch_id": spec.arch_id,
        "name": spec.name,
        "frames": bb.pixel_frames,
        "height": bb.pixel_height,
        "width": bb.pixel_width,
        "latent": {"channels": bb.input_channels, "frames": bb.frames, "height": bb.latent_height,
                   "width": bb.latent_width},
        **report.to_dict(),
        "op_counts": spec.op_counts(),
        "is_causal": spec.is_causal,
    }
    if unit_rows:
        payload["units"] = [
            {"name": u.name, "kind": u.kind, "slot": u.slot, "op": u.op, "params": u.params, "flops": u.flops,
             "peak_bytes": u.peak_bytes, "signature_id": u.signature_id}
            for u in report.units
        ]
    payload["spec"] = spec.to_dict()
    return payload


@space_app.command("show")
@handle_errors
def show_command(
    spec: SpecArg,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    batch: Annotated[int, typer.Option(help="Clips per network call (2 for batched classifier-free guidance).")] = 1,
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16 (sets activation bytes).")] = "float32",
    method: Annotated[str, typer.Option(help="analytic (closed form) or trace (fake-tensor run, slower).")] =
    "analytic",
    as_json: JsonOpt = False,
) -> None:
    """Count one architecture: params, FLOPs and peak activation memory per network call, per slot."""
    from vidnas.search_space import count_spec

    arch = load_spec_arg(spec, frames=frames, height=height, width=width)
    report = count_spec(arch, batch=batch, dtype=dtype, method=method)
    payload = show_payload(arch, report)
    if as_json:
        emit_json(payload)
        return
    _print_show(payload)


def _print_show(p: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    console.print(f"[bold]{p['name'] or 'spec'}[/]  arch_id [cyan]{p['arch_id']}[/]  "
                  f"{p['frames']} frames x {p['height']}x{p['width']} px (latent {p['latent']['height']}x"
                  f"{p['latent']['width']}), batch {p['batch']}, {p['dtype']}")
    console.print(f"params {p['params']:,} ({human_count(p['params'])})   FLOPs/call {human_count(p['flops'])}   "
                  f"activations {human_bytes(p['activation_bytes'])}   temporal: {human_count(p['temporal_params'])}"
                  f" params, {100 * p['temporal_flops'] / max(p['flops'], 1):.1f}% of FLOPs  [{p['method']}]")
    table = Table(title="Temporal slots")
    for col in ("slot", "op", "params", "GFLOPs", "% FLOPs"):
        table.add_column(col, justify="right" if col != "slot" and col != "op" else "left")
    for row in p["slots"]:
        table.add_row(row["slot"], row["op"], f"{row['params']:,}", f"{row['flops'] / 1e9:.2f}",
                      f"{100 * row['flops'] / max(p['flops'], 1):.1f}")
    console.print(table)


@space_app.command("sample")
@handle_errors
def sample_command(
    space: SpaceArg,
    n: Annotated[int, typer.Option("--n", help="Number of distinct specs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Directory to write the spec files into.")] = Path("specs"),
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    width_mult: WidthMultOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write N random specs of a search space as JSON files."""
    from vidnas._errors import SpecError
    from vidnas.search_space import get_space

    searched = get_space(space, frames=frames, height=height, width=width, width_mult=width_mult)
    specs = searched.random_specs(n, seed)
    if out.exists() and not out.is_dir():
        raise SpecError("--out", str(out), "exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, spec in enumerate(specs):
        path = out / f"{searched.name}-{seed}-{i:03d}-{spec.arch_id}.json"
        spec.save(path)
        written.append({"path": str(path), "arch_id": spec.arch_id, "op_counts": spec.op_counts()})
    if as_json:
        emit_json({"space": searched.name, "space_size": searched.size, "seed": seed, "specs": written})
        return
    console = stdout_console()
    console.print(f"wrote {len(written)} specs of space [bold]{searched.name}[/] "
                  f"({searched.size:.3g} architectures) to {out}")
    for w in written:
        console.print(f"  {w['path']}")
