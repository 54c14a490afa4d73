"""Running Rego tests: every rule named test_* in a *_test.rego file, as `opa test` does.

The engines have no test runner of their own, so tests are found from the modules'
source (package line and top-level rule heads) and each is evaluated as
data.<package>.<rule>; a test passes when it evaluates to true.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from agents_sdk.engine.errors import RegoEngineError

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


@dataclass(frozen=True)
class TestResult:
    """One test_ rule's outcome."""

    __test__ = False  # not a pytest class

    name: str
    package: str
    file: str
    passed: bool
    message: str = ""
    duration_ms: float = 0.0

    @property
    def path(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass
class TestReport:
    """All tests' outcomes, in discovery order."""

    __test__ = False

    results: list[TestResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.passed)

    @property
    def failures(self) -> list[TestResult]:
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        """True when at least one test ran and none failed."""
        return bool(self.results) and self.failed == 0

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


def discover_tests(modules: dict[str, str]) -> list[tuple[str, str, str]]:
    """Return (file, package, rule name) for each test_ rule of each *_test.rego file.

    A rule defined in several bodies is one test, as in OPA.
    """
    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for file in sorted(modules):
        if not file.endswith("_test.rego"):
            continue
        source = modules[file]
        package = _PACKAGE.search(source)
        if package is None:
            continue
        for name in _TEST_RULE.findall(source):
            key = (package.group(1), name)
            if key not in seen:
                seen.add(key)
                found.append((file, package.group(1), name))
    return found


def run_tests(policy, modules: dict[str, str]) -> TestReport:
    """Evaluate each discovered test against a compiled policy holding `modules`."""
    report = TestReport()
    for file, package, name in discover_tests(modules):
        started = time.perf_counter()
        try:
            value = policy.evaluate(f"data.{package}.{name}", {})
            passed = value is True
            message = "" if passed else ("undefined" if value is None else f"evaluated to {value!r}")
        except RegoEngineError as exc:
            passed, message = False, f"error: {exc}"
        duration_ms = (time.perf_counter() - started) * 1000
        report.results.append(TestResult(name, package, file, passed, message, duration_ms))
    return report
