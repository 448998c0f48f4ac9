"""``write_study``: a study's self-contained HTML page (figures inline, no network) and its JSON document."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

STUDY_HTML = "study.html"
STUDY_JSON = "study.json"


def _clean(value: Any) -> Any:
    """NaN and infinities (not JSON) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def study_json(doc: dict[str, Any]) -> str:
    return json.dumps(_clean(doc), indent=2, default=str) + "\n"


def _gib(n: float | None) -> str:
    return "" if n is None else f"{n / 2 ** 30:.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "n/a" if x is None else format(x, fmt)


def render_study(doc: dict[str, Any]) -> str:
    import jinja2

    from vidnas.reports._study_figures import study_figures

    env = jinja2.Environment(loader=jinja2.PackageLoader("vidnas.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True))
    env.filters.update(gib=_gib, pct=_pct, num=_num)
    tally = {v: sum(1 for r in doc["rules"] if r["verdict"] == v) for v in ("holds", "fails", "undecided")}
    versions = (doc.get("environment") or {}).get("versions") or {}
    return env.get_template("study.html.j2").render(
        doc=doc, figures=study_figures(doc), tally=tally, json_file=STUDY_JSON,
        versions=", ".join(f"{k} {v}" for k, v in versions.items() if v),
        source_details=[(k, v) for k, v in doc["source"].items() if k not in ("label", "kind") and v is not None])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_study(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``study.json`` and ``study.html`` into ``out_dir`` (created), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / STUDY_JSON, "html": out / STUDY_HTML}
    _atomic_write(paths["json"], study_json(doc))
    _atomic_write(paths["html"], render_study(doc))
    return paths
