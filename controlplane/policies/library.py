"""Warden's shipped policy library (rego/ in the repository), as bundle files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings

LIBRARY_ROOT = Path(settings.BASE_DIR) / "rego"


def library_modules(include_tests: bool = True) -> dict[str, str]:
    """{bundle path: source} of every library module, e.g. 'warden/decision.rego'."""
    modules = dict(_read_library(str(LIBRARY_ROOT)))
    if include_tests:
        return modules
    return {path: source for path, source in modules.items() if not path.endswith("_test.rego")}


@lru_cache(maxsize=1)
def _read_library(root: str) -> tuple[tuple[str, str], ...]:
    # The library ships with the code, so it is read once per process.
    base = Path(root)
    return tuple(
        (path.relative_to(base).as_posix(), path.read_text(encoding="utf-8")) for path in sorted(base.rglob("*.rego"))
    )
