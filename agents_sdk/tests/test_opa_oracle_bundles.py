"""Every distinct bundle the test suite built (recorded with WARDEN_RECORD_BUNDLES, see
agents_sdk/engine/recorded_bundles.py) compiles under real OPA exactly when it compiles
under regorus. Runs in `nox -s opa-oracle`; skips elsewhere or when nothing was recorded."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agents_sdk.engine import RegoEngine
from agents_sdk.engine.errors import RegoCompileError
from agents_sdk.engine.recorded_bundles import ENV

if os.environ.get("WARDEN_OPA_ORACLE") == "1":
    import opa_bindings  # noqa: F401  (the oracle session must have real OPA)
else:
    pytest.importorskip("opa_bindings")


def verdict(engine: str, modules: dict, data: dict) -> str:
    try:
        RegoEngine(engine).compile(modules, data)
    except RegoCompileError:
        return "refused"
    return "compiled"


def test_every_recorded_bundle_gets_the_same_verdict_from_real_opa_and_regorus():
    directory = os.environ.get(ENV)
    recorded = sorted(Path(directory).glob("*.json")) if directory else []
    if not recorded:
        pytest.skip(f"no bundles recorded ({ENV} unset or empty): run the test suites with it set first")
    started = time.perf_counter()
    disagreements, verdicts = [], {"compiled": 0, "refused": 0}
    for path in recorded:
        bundle = json.loads(path.read_text("utf-8"))
        opa = verdict("opa", bundle["modules"], bundle["data"])
        ours = verdict("regorus", bundle["modules"], bundle["data"])
        verdicts[opa] += 1
        if opa != ours:
            disagreements.append(f"{path.name}: OPA {opa}, regorus {ours} ({sorted(bundle['modules'])[:5]})")
    print(f"\nrecorded bundles: {len(recorded)} ({verdicts}), {time.perf_counter() - started:.1f} s, "
          f"{len(disagreements)} disagreements")
    assert not disagreements, "\n".join(disagreements)
