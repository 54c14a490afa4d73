"""The regorus engine (Microsoft's Rust Rego interpreter, PyPI `gordon-to-regorus`).

regorus parses modules when they are added but checks a rule's safety and the
functions it calls only when the rule is first evaluated, so `check` evaluates
every package once to surface those errors at compile time.

A regorus Engine is bound to the thread that created it (a pyo3 "unsendable" class:
using it from another thread panics), so the policy keeps one session per thread.
"""

from __future__ import annotations

from typing import Any

import regorus

from agents_sdk.engine.errors import (
    RegoCompileError,
    RegoEvaluationError,
    parse_regorus_errors,
    strip_backtrace,
)

NAME = "regorus"


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("gordon-to-regorus")


class Session:
    """One regorus Engine holding the modules and data, used by one thread only."""

    def __init__(self, modules: dict[str, str], data: dict):
        engine = regorus.Engine()
        engine.set_rego_v0(False)
        errors = []
        for path in sorted(modules):
            try:
                engine.add_policy(path, modules[path])
            except RuntimeError as exc:
                errors.extend(parse_regorus_errors(str(exc)))
        if errors:
            raise RegoCompileError(errors)
        engine.add_data(data)
        self._engine = engine
        self.generation = 0

    def packages(self) -> list[str]:
        return list(self._engine.get_packages())

    def check(self, packages: list[str]) -> None:
        """Evaluate each package once with empty input, so unsafe variables and unknown
        functions in any rule are reported now rather than at the first decision."""
        engine = self._engine
        engine.set_input({})
        for package in packages:
            try:
                engine.eval_query(package)
            except RuntimeError as exc:
                raise RegoCompileError(parse_regorus_errors(str(exc))) from None

    def replace_data(self, data: dict, generation: int) -> None:
        self._engine.clear_data()
        self._engine.add_data(data)
        self.generation = generation

    def evaluate(self, query_path: str, input: Any) -> Any:
        engine = self._engine
        try:
            engine.set_input(input)
            return engine.eval_rule(query_path)
        except RuntimeError as exc:
            text = str(exc)
            if "not a valid rule path" in text:
                return self._evaluate_query(query_path)
            raise RegoEvaluationError(strip_backtrace(text), parse_regorus_errors(text)) from None

    def _evaluate_query(self, query: str) -> Any:
        try:
            result = self._engine.eval_query(query)
        except RuntimeError as exc:
            text = str(exc)
            raise RegoEvaluationError(strip_backtrace(text), parse_regorus_errors(text)) from None
        rows = result.get("result") or []
        if not rows:
            return None
        return rows[0]["expressions"][0]["value"]
