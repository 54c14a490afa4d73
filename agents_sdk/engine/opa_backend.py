"""Real OPA (the Go engine, PyPI `opa-golib-python-bindings`), Warden's oracle for Rego semantics.

Not a production engine: it runs in its own test environment (`nox -s opa-oracle`), where
every Rego test and a differential corpus of decisions must agree with regorus. The
package embeds OPA 1.20 with strict builtin errors, so a builtin that fails raises here
(an `engine-error` deny), where regorus' interpreter raises too.
"""

from __future__ import annotations

import re
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from agents_sdk.engine.errors import RegoCompileError, RegoError, RegoEvaluationError

NAME = "opa"

# "org/a.rego:3: rego_type_error: multiple default rules ..." (several joined in one text)
_OPA_ERROR = re.compile(r"(?P<file>[^\s:]+\.rego):(?P<line>\d+): (?P<message>rego_\w+: .*?)(?=\n?[^\s:]+\.rego:\d+: rego_|\Z)", re.S)


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("opa-golib-python-bindings")


def parse_opa_errors(text: str) -> list[RegoError]:
    """OPA's "file:line: code: message" texts as RegoErrors; the column comes from the caret
    line OPA prints under parse errors (1 when it prints none)."""
    errors = []
    for found in _OPA_ERROR.finditer(text):
        message = found["message"].strip()
        column = 1
        lines = message.split("\n")
        if len(lines) >= 3 and lines[-1].strip() == "^":
            column = len(lines[-1].rstrip().lstrip("\t"))
        errors.append(RegoError(found["file"], int(found["line"]), column, lines[0].strip()))
    return errors or [RegoError("<unknown>", 0, 0, text.strip() or "unknown error")]


class Session:
    """One OPA engine with the modules and data (OPA compiles them at the first query)."""

    def __init__(self, modules: dict[str, str], data: dict):
        self._modules = modules
        self._engine = self._build(modules, data)
        self.generation = 0

    @staticmethod
    def _build(modules: dict[str, str], data: dict) -> OpaEngine:
        engine = OpaEngine()
        try:
            for path in sorted(modules):
                engine.add_policy(path, modules[path])
            engine.add_data(data)
        except OpaError as exc:
            raise RegoCompileError(parse_opa_errors(exc.message)) from None
        return engine

    def packages(self) -> list[str]:
        from agents_sdk.bundles.format import package_of

        return sorted({"data." + p for p in (package_of(s) for s in self._modules.values()) if p})

    def check(self, packages: list[str]) -> None:
        # OPA compiles every module (type checks, conflicts with data) before its first query.
        try:
            self._engine.eval_query("__warden_compiled = true", {})
        except OpaError as exc:
            raise RegoCompileError(parse_opa_errors(exc.message)) from None

    def replace_data(self, data: dict, generation: int) -> None:
        # OPA merges data into what it holds: a new engine drops the old data.
        self._engine = self._build(self._modules, data)
        self.generation = generation

    def evaluate(self, query_path: str, input: Any) -> Any:
        # "data.a.b" is the document a/b; "data" itself is the whole document, path "".
        path = "" if query_path == "data" else query_path.removeprefix("data.")
        try:
            return self._engine.eval_document(path, input)
        except OpaUndefinedError:
            return None
        except OpaError as exc:
            errors = parse_opa_errors(exc.message)
            if exc.code in ("prepare_error", "parse_error"):
                raise RegoCompileError(errors) from None
            raise RegoEvaluationError(exc.message, errors) from None
