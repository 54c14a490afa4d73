"""Modules import each other one way: no import cycle inside any app of the control plane
or inside agents_sdk, none between them, and (in audit) no import hidden in a function to
break one (issue 23: one owner per contract; submodules import siblings, not their package)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import agents_sdk
import controlplane
import controlplane.audit

APP = "controlplane.audit"
ROOT = Path(controlplane.audit.__file__).parent
# Every package whose modules the cycle check reads: each app of the control plane and the SDK.
PACKAGES = {
    "controlplane": Path(controlplane.__file__).parent,
    "agents_sdk": Path(agents_sdk.__file__).parent,
}
APPS = sorted(
    [f"controlplane.{path.parent.name}" for path in PACKAGES["controlplane"].glob("*/__init__.py")] + ["agents_sdk"]
)


@functools.cache
def sources() -> dict[str, Path]:
    """Every module of controlplane and agents_sdk by dotted name, without migrations and tests."""
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            outside = any(not (root.joinpath(*parts[:depth]) / "__init__.py").exists() for depth in range(1, len(parts)))
            if outside or "migrations" in parts or "tests" in parts:  # build/, scripts: not importable
                continue
            found[".".join((package, *parts)).removesuffix(".__init__")] = path
    return found


@functools.cache
def parsed_tree() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in sources().items()}


def modules(app: str = APP) -> dict[str, ast.Module]:
    return {name: tree for name, tree in parsed_tree().items() if name == app or name.startswith(f"{app}.")}


def imported(node: ast.AST, known: set[str], importer: str = "") -> set[str]:
    """Modules an import statement names. `from pkg import x` counts x if it is a module, and
    pkg too: a submodule that imports a sibling through its package depends on the package."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            base = importer.split(".")
            is_package = any(other.startswith(f"{importer}.") for other in known)
            base = base[: len(base) - node.level + is_package]
            module = ".".join([*base, module] if module else base)
        names = {module} | {f"{module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def graph(app: str | None = APP) -> dict[str, set[str]]:
    """Import edges between the modules of `app` (of everything when None), wherever the
    import stands: at the top, inside a function, or under TYPE_CHECKING."""
    parsed = parsed_tree() if app is None else modules(app)
    known = set(parsed)
    return {
        name: {target for node in ast.walk(tree) for target in imported(node, known, name)} - {name}
        for name, tree in parsed.items()
    }


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_audit_modules_import_each_other_without_a_cycle():
    edges = graph()
    assert f"{APP}.verification" in edges and f"{APP}.storage" in edges[f"{APP}.verification"]
    assert cycle(edges) is None, " -> ".join(cycle(edges))


@pytest.mark.parametrize("app", APPS)
def test_no_import_cycle_inside_an_app(app):
    found = cycle(graph(app))
    assert found is None, " -> ".join(found)


def test_no_import_cycle_between_apps():
    edges = graph(None)
    # The graph is the real one: apps import each other and the SDK.
    assert "agents_sdk.records" in edges["controlplane.audit.verification"]
    found = cycle(edges)
    assert found is None, " -> ".join(found)


def test_no_module_passes_600_lines():
    """STYLE.md: a module past ~500 lines is usually two ideas; split it before it passes ~600."""
    long = {name: lines for name, path in sources().items() if (lines := len(path.read_text().splitlines())) > 600}
    assert long == {}


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_an_import_of_a_sibling_through_the_package_is_an_edge_to_the_package():
    known = {"p", "p.a", "p.b"}
    assert imported(ast.parse("from p import b").body[0], known, "p.a") == {"p", "p.b"}
    assert imported(ast.parse("from p.b import f").body[0], known, "p.a") == {"p.b"}
    assert imported(ast.parse("from . import b").body[0], known, "p.a") == {"p", "p.b"}


def test_no_audit_module_imports_inside_a_function():
    lazy = [
        f"{name}:{inner.lineno}"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        # AppConfig.ready is where Django wants registration imports.
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "ready"
        for inner in ast.walk(node)
        if isinstance(inner, (ast.Import, ast.ImportFrom))
    ]
    assert lazy == []


def test_the_event_columns_are_defined_once():
    tuples = [
        f"{name}:{node.lineno}"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Tuple) and {"record_hash", "sealed_record"} <= {
            e.value for e in node.elts if isinstance(e, ast.Constant)
        }
    ]
    assert tuples == [f"{APP}.storage:{_line_of_event_columns()}"]


def _line_of_event_columns() -> int:
    tree = ast.parse((ROOT / "storage.py").read_text())
    return next(
        node.lineno for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EVENT_COLUMNS"
    )
