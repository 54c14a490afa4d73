"""Rego constructs regorus' compiled VM mis-evaluates, found from the modules' parse tree.

In the VM (regorus.Rvm), `x := <undefined>` (an undefined reference, rule or function
call) does not fail the body as OPA and the interpreter do: the body goes on with `x`
bound to undefined. A later statement that reads `x` fails as it should, but when only
the rule head reads it (or nothing does), the rule holds anyway, and a set or object rule
gets a member "<undefined>":

    s contains y if { y := f(input.x) }          # f undefined: VM [<undefined>], OPA []
    t contains k if { some k in [1, 2]; y := h }  # h undefined: VM [1, 2], OPA []

So a module may run on the VM only when every `:=` in a body is read by a later statement
of the same body (the library adds a test such as `is_string(x)`); otherwise the whole
policy is decided by the interpreter. The check is made once per compile, from the AST,
never per input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def _names(node: Any, into: set[str]) -> set[str]:
    if isinstance(node, dict):
        var = node.get("Var")
        if isinstance(var, dict) and isinstance(var.get("value"), str):
            into.add(var["value"])
        for member in node.values():
            _names(member, into)
    elif isinstance(node, list):
        for member in node:
            _names(member, into)
    return into


def _queries(node: Any) -> Iterator[dict]:
    """Every query (rule body, else body, comprehension body, `every` body) in the tree."""
    if isinstance(node, dict):
        if isinstance(node.get("stmts"), list):
            yield node
        for member in node.values():
            yield from _queries(member)
    elif isinstance(node, list):
        for member in node:
            yield from _queries(member)


def unread_assignments(tree: Any) -> list[tuple[int, int, str]]:
    """(line, column, variables) of each `:=` in a body that no later statement reads."""
    found = []
    for query in _queries(tree):
        statements = query["stmts"]
        for index, statement in enumerate(statements):
            literal = statement.get("literal") or {}
            assign = (literal.get("Expr") or {}).get("expr", {}).get("AssignExpr")
            if not isinstance(assign, dict) or assign.get("op") != "ColEq":
                continue
            names = _names(assign.get("lhs"), set()) - {"_"}
            if names and not names & _names(statements[index + 1 :], set()):
                span = next(iter(assign["lhs"].values())).get("span") or {}  # the assigned name
                found.append((int(span.get("line", 0)), int(span.get("col", 0)), ", ".join(sorted(names))))
    return found


def vm_hazards(ast_json: str) -> list[str]:
    """`file:line:col: ...` for each construct the VM mis-evaluates, in regorus' AST JSON
    (Engine.get_ast_as_json) of the policy's modules; `_test.rego` files are skipped (tests
    are never decided on the VM)."""
    hazards = []
    for module in json.loads(ast_json):
        path = str((module.get("source") or {}).get("file", "")) if isinstance(module.get("source"), dict) else ""
        if path.endswith("_test.rego"):
            continue
        for line, column, names in unread_assignments(module.get("ast")):
            hazards.append(f"{path}:{line}:{column}: {names} := ... is read by no later statement")
    return hazards
