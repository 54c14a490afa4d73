"""Warden's one interface to an embedded Rego engine: compile, evaluate, run tests.

    engine = RegoEngine()                        # regorus, Warden's default engine
    policy = engine.compile(modules, data)       # raises RegoCompileError(file, line, column)
    decision = policy.decide(input)              # data.warden.decision, fail closed
    report = engine.run_tests(modules)           # test_ rules of *_test.rego files

Only this subpackage imports an engine's package; the control plane and the SDK use
this interface. See docs/rego-engine.md for why regorus and what was measured.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

from agents_sdk.engine.errors import (
    RegoCompileError,
    RegoEngineError,
    RegoError,
    RegoEvaluationError,
    drop_engine_frames,
)
from agents_sdk.engine.policy import DEFAULT_QUERY, CompiledPolicy, fail_closed_decision
from agents_sdk.engine.testing import TestReport, TestResult, discover_tests

__all__ = [
    "BACKENDS",
    "DEFAULT_QUERY",
    "CompiledPolicy",
    "RegoCompileError",
    "RegoEngine",
    "RegoEngineError",
    "RegoError",
    "RegoEvaluationError",
    "TestReport",
    "TestResult",
    "discover_tests",
    "fail_closed_decision",
    "load_modules",
]

BACKENDS = {
    "regorus": "agents_sdk.engine.regorus_backend",
    "regopy": "agents_sdk.engine.regopy_backend",
    # Real OPA, the reference for Rego semantics; installed only in `nox -s opa-oracle`.
    "opa": "agents_sdk.engine.opa_backend",
}


class RegoEngine:
    """Compiles Rego modules with one engine backend ("regorus" by default)."""

    def __init__(self, backend: str = "regorus"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown Rego engine {backend!r}; choose one of {sorted(BACKENDS)}")
        self._backend = importlib.import_module(BACKENDS[backend])

    @property
    def name(self) -> str:
        return self._backend.NAME

    @property
    def version(self) -> str:
        return self._backend.version()

    def compile(self, modules: dict[str, str], data: dict | None = None, *, copied: bool = True) -> CompiledPolicy:
        """Parse and check `modules` ({file name: source}) with `data`.

        `copied=False` takes `data` as is, as CompiledPolicy.set_data does, for a caller that
        never changes it (a parsed bundle): besides the copy's cost, the next data patched
        from the bundle's (a delta) then shares its unchanged objects with the data the
        engine encoded, so it is encoded again only where it changed (engine.data_json).

        Raises RegoCompileError whose `.errors` give file, line, column and the
        engine's message for each problem found.
        """
        if not modules:
            raise RegoCompileError([RegoError("<modules>", 0, 0, "no Rego modules given")])
        data = (copy.deepcopy(data) if copied else data) if data is not None else {}
        if not isinstance(data, dict):
            raise TypeError("data must be a JSON object (dict)")
        try:
            session = self._backend.Session(modules, data)
            session.check(session.packages())
        except BaseException as exc:
            session = None  # this frame stays in the traceback: it must not hold the engine either
            drop_engine_frames(exc)
            raise
        return CompiledPolicy(self._backend, modules, data, session)

    def run_tests(self, modules: dict[str, str], data: dict | None = None) -> TestReport:
        """Run every test_ rule found in the *_test.rego files among `modules`.

        A test passes when its rule evaluates to true. Raises RegoCompileError when
        the modules do not compile.
        """
        from agents_sdk.engine.testing import run_tests

        return run_tests(self.compile(modules, data), modules)


def load_modules(root: str | Path, relative_to: str | Path | None = None) -> dict[str, str]:
    """Read every .rego file under `root` into {path: source}, paths relative to
    `relative_to` (default: the current directory when root is inside it).

    Raises FileNotFoundError when `root` does not exist (a wrong path must not silently
    give a policy with no modules)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no Rego modules at {root}: the path does not exist (relative to {Path.cwd()})")
    base = Path(relative_to) if relative_to is not None else Path.cwd()
    modules = {}
    paths = [root] if root.is_file() else sorted(root.rglob("*.rego"))
    for path in paths:
        try:
            name = path.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            name = path.as_posix()
        modules[name] = path.read_text(encoding="utf-8")
    return modules
