"""One registry for every extension point: its behaviour, its option schema, and the layout it allows.

Every registry is a :class:`vidnas._registry.Registry` filled from an entry point group, vidnas's
own built-ins declared in its pyproject.toml as a plugin's are; no registry module imports its
implementations, and the package has no import circles (imports inside functions counted).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import sys
import warnings
from pathlib import Path

import pytest
import tomllib

from vidnas._errors import SpecError
from vidnas._registry import Option, Registry, check_options

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vidnas"

# registry module -> the registries it holds (attribute names)
REGISTRIES = {
    "vidnas.search_space._registry": ["TEMPORAL_OPS"],
    "vidnas.search_space._sharing": ["SHARING_RULES"],
    "vidnas.search_space._family": ["FAMILIES"],
    "vidnas.search_space._presets": ["PRESETS"],
    "vidnas.search_space._sampling": ["SPACES"],
    "vidnas.proxies._registry": ["PROXIES"],
    "vidnas.runners._samplers": ["SAMPLERS"],
    "vidnas.latency_models._backends": ["BACKENDS"],
}


def _entry_points() -> dict[str, dict[str, str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]


# The generic registry ------------------------------------------------------------------------------


def test_register_get_list_and_refuse_unknown_names_naming_field_and_value():
    reg: Registry[int] = Registry("vidnas.test_nothing", "widget", field="widget")
    reg.register("a", 1)
    reg.register("b", 2)
    assert reg.get("a") == 1 and "b" in reg and reg.names("a*") == ["a"] and len(reg) == 2
    with pytest.raises(SpecError) as info:
        reg.get("zz", "config.widget")
    message = str(info.value)
    assert "config.widget" in message and "zz" in message and "a" in message and "widget" in message
    reg.unregister("a")
    assert reg.names() == ["b"]


def test_registering_a_name_again_warns_and_replaces_but_the_same_item_does_not_warn():
    reg: Registry[object] = Registry("vidnas.test_nothing", "widget")
    first, second = object(), object()
    reg.register("w", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.register("w", first)  # the same object again: a module imported twice
    with pytest.warns(UserWarning, match="widget `w` is registered again"):
        reg.register("w", second)
    assert reg.get("w") is second


def test_an_item_registered_by_user_code_is_not_called_built_in():
    reg: Registry[object] = Registry("vidnas.test_nothing", "widget")

    def mine():
        return None

    reg.register("mine", mine)
    assert reg.origin("mine") == __name__


def test_options_coerce_check_bounds_and_choices_and_name_the_field():
    opts = (Option("n", int, 4, "a count", minimum=1), Option("mode", str, "a", "a mode", choices=("a", "b")),
            Option("rate", float, None, "optional"))
    assert check_options({"n": 8}, opts, "target.options", "backend `x`") == {"n": 8, "mode": "a", "rate": None}
    for given, field in (({"n": 0}, "target.options.n"), ({"mode": "c"}, "target.options.mode"),
                         ({"n": "many"}, "target.options.n"), ({"nope": 1}, "target.options.nope")):
        with pytest.raises(SpecError) as info:
            check_options(given, opts, "target.options", "backend `x`")
        assert field in str(info.value)
    assert Option("heads", int, lambda c: c // 2, "").default_for(8) == 4


# Every extension point ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(REGISTRIES))
def test_every_extension_point_is_a_registry_with_an_entry_point_group(module):
    from vidnas._plugins import GROUPS

    mod = importlib.import_module(module)
    for name in REGISTRIES[module]:
        reg = getattr(mod, name)
        assert isinstance(reg, Registry), f"{module}.{name}"
        assert reg.group in GROUPS
        assert reg.names(), f"{module}.{name} has no built-in items"
        assert all(reg.origin(n) for n in reg.names())


def test_the_built_in_entry_points_load_and_register_as_built_in():
    from vidnas._plugins import BUILTIN, builtin_entry_points

    declared = _entry_points()
    assert set(declared) >= {"vidnas.temporal_ops", "vidnas.families", "vidnas.presets", "vidnas.spaces",
                             "vidnas.proxies", "vidnas.samplers", "vidnas.backends"}
    for group, eps in declared.items():
        assert {ep.name for ep in builtin_entry_points(group)} == set(eps)
    by_group = {}
    for module, names in REGISTRIES.items():
        for name in names:
            reg = getattr(importlib.import_module(module), name)
            by_group.setdefault(reg.group, []).append(reg)
    for group, regs in by_group.items():
        for reg in regs:
            assert all(reg.origin(n) == BUILTIN for n in reg.names()), group


def _imports(path: Path) -> set[str]:
    """The vidnas modules ``path`` imports, anywhere in it (functions included; type-checking blocks not)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for b in node.body for n in ast.walk(b)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidnas"):
            found.update(f"{node.module}.{a.name}" for a in node.names)  # a submodule, or a name of the module
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("vidnas"))
    return found


def _module_path(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_no_registry_module_imports_its_implementations():
    implementations = {value.split(":")[0] for eps in _entry_points().values() for value in eps.values()}
    for module in REGISTRIES:
        bad = _imports(_module_path(module)) & implementations
        assert not bad, f"{module} imports {sorted(bad)}"


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    return {m: {t for t in map(resolve, _imports(p)) if t and t != m} for m, p in modules.items()}


def test_the_package_has_no_import_circles():
    graph = _module_graph()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_search_space_is_a_house_of_folders():
    """The family-independent core at the top, ops and families in their own folders."""
    top = {p.name for p in (PACKAGE / "search_space").glob("*.py")}
    assert not any(n.startswith(("_unet", "_dit", "_ops_")) or n.endswith("_branches.py") for n in top), top
    for family in ("unet", "dit"):
        files = {p.stem for p in (PACKAGE / "search_space" / "families" / family).glob("*.py")}
        assert {"spec", "plan", "family", "network", "weights", "presets", "spaces"} <= files
    assert {"attention", "conv", "tokens"} <= {p.stem for p in (PACKAGE / "search_space" / "ops").glob("*.py")}


def test_no_private_module_of_another_package_is_imported():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0]
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) >= 3 and parts[1] != own and parts[2].startswith("_") and parts[1] != "_registry":
                offenders.append(f"{path.relative_to(ROOT)} -> {module}")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_a_stored_correction_has_the_fields_of_the_correction_class():
    from vidnas.latency_models._predictor import Correction
    from vidnas.latency_models._table import CORRECTION_FIELDS

    assert {f.name for f in dataclasses.fields(Correction)} == set(CORRECTION_FIELDS)
