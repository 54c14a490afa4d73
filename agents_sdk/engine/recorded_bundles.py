"""Record the bundles a test run builds, so real OPA compiles each of them too.

With WARDEN_RECORD_BUNDLES=<dir> set (`make test` sets it for the pytest runs), every
bundle built by the control plane (controlplane.bundles.archive.build_archive) or by the
SDK's test helper (agents_sdk.tests.signed_bundles.build_bundle) is written to <dir> as
JSON, `{"modules": {path: text}, "data": value}`, once per distinct compile input: its
policy files and the paths of its data down to three levels (what can collide with a
rule). `nox -s opa-oracle` (agents_sdk/tests/test_opa_oracle_bundles.py) then compiles
each with regorus and with real OPA and requires the same verdict. Unset: nothing happens.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "WARDEN_RECORD_BUNDLES"
_SHAPE_DEPTH = 3


def _paths(value: Any, prefix: str, depth: int) -> list[str]:
    if depth == 0 or not isinstance(value, dict):
        return [prefix]
    return [prefix] + [p for key in sorted(value) for p in _paths(value[key], f"{prefix}/{key}", depth - 1)]


def record(files: Mapping[str, bytes]) -> Path | None:
    """Write the bundle's compile input to $WARDEN_RECORD_BUNDLES (when set and new);
    return the file written, else None. Never raises for a bundle it cannot read."""
    directory = os.environ.get(ENV)
    if not directory:
        return None
    try:
        modules = {name: content.decode("utf-8") for name, content in files.items() if name.endswith(".rego")}
        data: dict[str, Any] = {}
        for name, content in files.items():
            if name == "data.json" or name.endswith("/data.json"):
                value = json.loads(content)
                if not isinstance(value, dict):
                    return None
                target = data
                for part in [p for p in name.split("/")[:-1] if p]:
                    target = target.setdefault(part, {})
                target.update(value)
    except (UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        return None  # a deliberately broken bundle: refused before any compile
    key = hashlib.sha256(json.dumps([sorted(modules.items()), _paths(data, "", _SHAPE_DEPTH)]).encode()).hexdigest()
    path = Path(directory) / f"{key[:32]}.json"
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"modules": modules, "data": data}), encoding="utf-8")
    os.replace(partial, path)  # atomic: parallel test workers may record the same bundle
    return path
