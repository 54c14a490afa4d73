"""The rego-cpp engine (Microsoft's C++ Rego interpreter, PyPI `regopy`).

Kept as a measured peer of regorus (bench/decision_engine.py, docs/rego-engine.md);
Warden's default engine is regorus. One Interpreter per thread, like regorus.
"""

from __future__ import annotations

import json
from typing import Any

import regopy

from agents_sdk.bundles.format import package_of
from agents_sdk.engine.errors import (
    RegoCompileError,
    RegoError,
    RegoEvaluationError,
    parse_regocpp_errors,
)

NAME = "regopy"


def version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("regopy")


class Session:
    def __init__(self, modules: dict[str, str], data: dict):
        regopy.set_default_log_level("None")
        self._modules = modules
        interpreter = regopy.Interpreter()
        try:
            for path in sorted(modules):
                interpreter.add_module(path, modules[path])
            interpreter.add_data(data)
        except regopy.RegoError as exc:
            raise RegoCompileError(parse_regocpp_errors(str(exc), modules)) from None
        self._interpreter = interpreter
        self._packages = sorted({package_of(source) for source in modules.values()} - {None})
        self.generation = 0

    def packages(self) -> list[str]:
        return ["data." + package for package in self._packages]

    def check(self, packages: list[str]) -> None:
        # rego-cpp compiles lazily on the first query; errors come back as the output.
        # Packages of *_test.rego files are left to the test run (see docs/rego-engine.md:
        # rego-cpp cannot evaluate `with data.<path> as ...`).
        # Whole packages are not checked either: rego-cpp fails to evaluate data.warden
        # as a document although data.warden.decision evaluates; the entry point is checked.
        self._interpreter.set_input(regopy.Input({}))
        if "data.warden" in packages and not any(p.endswith("_test") for p in packages):
            self._query("data.warden.decision", compile_errors=True)

    def replace_data(self, data: dict, generation: int) -> None:
        # rego-cpp cannot drop data once added: rebuild the interpreter.
        fresh = Session(self._modules, data)
        self._interpreter = fresh._interpreter
        self.generation = generation

    def evaluate(self, query_path: str, input: Any) -> Any:
        self._interpreter.set_input(regopy.Input(input))
        return self._query(query_path)

    def _query(self, query: str, compile_errors: bool = False) -> Any:
        try:
            output = self._interpreter.query(f"__warden_result = {query}")
        except ValueError as exc:
            # regopy parses rego-cpp's output text as JSON, which fails for some values.
            message = f"rego-cpp returned output that is not valid JSON for {query}: {exc}"
            raise RegoEvaluationError(message, [RegoError("<unknown>", 0, 0, message)]) from None
        except regopy.RegoError as exc:
            errors = parse_regocpp_errors(str(exc), self._modules)
            if compile_errors:
                raise RegoCompileError(errors) from None
            raise RegoEvaluationError(str(exc), errors) from None
        if not output.ok():
            # regopy 1.5.2 segfaults when a failed output is read (str() or node()),
            # so the engine's own message cannot be shown here.
            message = f"rego-cpp could not evaluate {query}"
            error = RegoError("<unknown>", 0, 0, message)
            if compile_errors:
                raise RegoCompileError([error])
            raise RegoEvaluationError(message, [error])
        try:
            return json.loads(output.binding("__warden_result").json())
        except (KeyError, IndexError, ValueError, regopy.RegoError):
            return None  # undefined
