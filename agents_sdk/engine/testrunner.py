"""Run Warden's Rego tests through the embedded engine (what `make rego-test` calls).

    python -m agents_sdk.engine.testrunner rego/ [--data data.json] [--engine regorus] [-v]

Prints each failure, then a last line "N passed, M failed". Exits 1 when a test
fails or none was found, 2 when the modules do not compile.
"""

from __future__ import annotations

import argparse
import json
import sys

from agents_sdk.engine import RegoCompileError, RegoEngine, load_modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents_sdk.engine.testrunner", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="directories or .rego files")
    parser.add_argument("--data", help="JSON file loaded as data for the tests")
    parser.add_argument("--engine", default="regorus", help="engine backend (default: regorus)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test, not only failures")
    options = parser.parse_args(argv)

    modules: dict[str, str] = {}
    for path in options.paths:
        modules.update(load_modules(path))
    data = None
    if options.data:
        with open(options.data, encoding="utf-8") as handle:
            data = json.load(handle)

    try:
        report = RegoEngine(options.engine).run_tests(modules, data)
    except RegoCompileError as exc:
        for error in exc.errors:
            print(f"{error.file}:{error.line}:{error.column}: {error.message}", file=sys.stderr)
        print("0 passed, 0 failed")
        return 2

    for result in report.results:
        if not result.passed:
            print(f"FAIL {result.path} ({result.file}): {result.message}")
        elif options.verbose:
            print(f"PASS {result.path} ({result.duration_ms:.2f} ms)")
    if not report.results:
        print("no test_ rules found in *_test.rego files", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
