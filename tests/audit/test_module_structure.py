"""The audit app's modules import each other one way: no cycle, no import hidden in a
function to break one (issue 23: the split of services.py and checkpoints.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import controlplane.audit

APP = "controlplane.audit"
ROOT = Path(controlplane.audit.__file__).parent


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join((APP, *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imported(node: ast.AST, known: set[str]) -> set[str]:
    """App modules an import statement names (`from app import x` counts x if it is a module)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
        names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def graph() -> dict[str, set[str]]:
    parsed = modules()
    known = set(parsed)
    return {
        name: {target for node in ast.walk(tree) for target in imported(node, known)} - {name}
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


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


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
