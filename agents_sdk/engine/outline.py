"""What a Rego module declares and calls, read from the engine's parse tree (not by regex).

`outline(path, source)` gives the module's package, its rules (with `default` marked), the
functions it calls and the `data` references and imports it makes, each with line and
column, so that a publish gate can refuse a module by what it really contains: the package
a "package" line inside a raw string does not declare, a call hidden in an else branch
that is never reached, an import that aliases a reserved package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import regorus

from agents_sdk.engine.errors import RegoCompileError, RegoError, parse_regorus_errors
from agents_sdk.engine.literal_nesting import nesting_problems


@dataclass(frozen=True)
class Located:
    """A name at a place in a module (1-based line and column)."""

    name: str
    line: int
    column: int


@dataclass
class ModuleOutline:
    package: str
    rules: list[Located] = field(default_factory=list)
    defaults: list[Located] = field(default_factory=list)
    calls: list[Located] = field(default_factory=list)
    data_refs: list[Located] = field(default_factory=list)
    imports: list[Located] = field(default_factory=list)


def outline(path: str, source: str) -> ModuleOutline:
    """Parse one module on its own; raises RegoCompileError (file, line, column) when it
    does not parse."""
    try:
        source.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RegoCompileError([RegoError(path, 0, 0, f"the module is not valid UTF-8 text ({exc.reason})")]) from None
    nesting = nesting_problems(path, source)
    if nesting:  # never handed to the parser: it would take exponential time
        raise RegoCompileError(nesting)
    engine = regorus.Engine()
    engine.set_rego_v0(False)
    try:
        package = engine.add_policy(path, source)
    except RuntimeError as exc:
        raise RegoCompileError(parse_regorus_errors(str(exc))) from None
    tree = json.loads(engine.get_ast_as_json())[0]["ast"]
    found = ModuleOutline(package=package.removeprefix("data."))
    for node in tree.get("imports", []):
        name = _ref_name(node["refr"])
        found.imports.append(Located(name or "<dynamic>", node["span"]["line"], node["span"]["col"]))
    for rule in tree.get("rules", []):
        kind, body = next(iter(rule.items()))
        if kind == "Default":
            found.defaults.append(_located(body["refr"], body["span"]))
            found.rules.append(_located(body["refr"], body["span"]))
        elif kind == "Spec":
            head = next(iter(body["head"].values()))
            found.rules.append(_located(head["refr"], body["span"]))
    _walk(tree.get("rules", []), found)
    return found


def _located(ref: dict, span: dict) -> Located:
    return Located(_ref_name(ref) or "<dynamic>", span["line"], span["col"])


def _ref_name(node: dict) -> str | None:
    """The dotted name of a Var / RefDot chain (`data.warden.x`), None when any part of it is
    computed (`data[x]`)."""
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return body["value"]
    if kind == "RefDot":
        parent = _ref_name(body["refr"])
        return None if parent is None else f"{parent}.{body['field'][1]}"
    if kind == "RefBrack":
        parent = _ref_name(body["refr"])
        index = body.get("index", {})
        if parent is not None and "String" in index:
            return f"{parent}.{index['String']['value']}"
        return None
    return None


def _walk(node, found: ModuleOutline) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
        return
    if not isinstance(node, dict):
        return
    for kind, body in node.items():
        if kind == "Call" and isinstance(body, dict):
            name = _ref_name(body["fcn"]) or "<dynamic>"
            found.calls.append(Located(name, body["span"]["line"], body["span"]["col"]))
        if kind in ("RefDot", "RefBrack", "Var") and isinstance(body, dict):
            root = _root_var(node)
            if root == "data":
                name = _ref_name(node) or _partial_name(node)
                found.data_refs.append(Located(name, body["span"]["line"], body["span"]["col"]))
                continue  # the chain below is this same reference
        _walk(body, found)


def _root_var(node: dict) -> str | None:
    kind, body = next(iter(node.items()))
    while kind in ("RefDot", "RefBrack"):
        kind, body = next(iter(body["refr"].items()))
    return body.get("value") if kind == "Var" else None


def _partial_name(node: dict) -> str:
    """`data.warden[<computed>]` as "data.warden.<dynamic>"."""
    kind, body = next(iter(node.items()))
    if kind in ("RefDot", "RefBrack"):
        parent = _ref_name(body["refr"])
        return f"{parent}.<dynamic>" if parent is not None else f"{_partial_name(body['refr'])}.<dynamic>"
    return "<dynamic>"
