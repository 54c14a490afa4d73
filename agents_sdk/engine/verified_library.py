"""Digests of the library modules that may be decided on regorus' compiled VM.

The VM, like OPA's default mode, makes a rule whose builtin fails undefined instead of
raising, so it is used only for modules known not to fail: the shipped library, whose
every builtin call is guarded by the input contract, whose tests pass under regorus and
real OPA and which agrees with real OPA on the differential corpus (`nox -s opa-oracle`).
Any other module (organisation policy, a library file changed in a bundle) is decided by
the interpreter, where an error is an `engine-error` deny.

Regenerate after changing rego/warden (a test fails until you do):

    python -m agents_sdk.engine.verified_library rego
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

DIGESTS_FILE = Path(__file__).with_name("verified_library.json")


def digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def verified_digests() -> frozenset[str]:
    try:
        return frozenset(json.loads(DIGESTS_FILE.read_text(encoding="utf-8"))["sha256"])
    except (OSError, ValueError, KeyError):
        return frozenset()


def library_digests(root: str | Path) -> list[str]:
    return sorted(
        digest(path.read_text(encoding="utf-8"))
        for path in Path(root).rglob("*.rego")
        if not path.name.endswith("_test.rego")
    )


def main(argv: list[str]) -> int:
    root = argv[0] if argv else "rego"
    DIGESTS_FILE.write_text(json.dumps({"sha256": library_digests(root)}, indent=1) + "\n", encoding="utf-8")
    print(f"{DIGESTS_FILE}: {len(library_digests(root))} library modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
