"""OPA patch operations (delta bundles' `patch.json`, docs/opa.md "Delta bundles") between two
JSON documents; the builds record them for the registry outside its agents and keys."""

from __future__ import annotations

from typing import Any

# Ops are computed down to this depth: warden_registry/agents/<name>/<field>,
# warden_registry/delegation/keys/<kid>.
DIFF_DEPTH = 4
# What the builds record entry by entry (BundlePart.changes "agents" and "keys"); an op on
# one of these or above them would overwrite entries recorded there.
ENTRY_OBJECTS = ("/warden_registry/agents", "/warden_registry/delegation/keys")


def pointer(path: list[str]) -> str:
    """A JSON pointer (RFC 6901), as OPA parses patch paths."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def diff(old: Any, new: Any, path: list[str] | None = None, depth: int = DIFF_DEPTH) -> list[dict]:
    """OPA patch operations turning `old` into `new` (both JSON objects): `remove` for keys
    gone, `upsert` for keys new or changed, recursing into objects down to `depth`."""
    path = path or []
    ops: list[dict] = []
    for key in sorted(old.keys() - new.keys()):
        ops.append({"op": "remove", "path": pointer([*path, key])})
    for key in sorted(new):
        value = new[key]
        if key not in old:
            ops.append({"op": "upsert", "path": pointer([*path, key]), "value": value})
        elif old[key] != value:
            if depth > 1 and isinstance(value, dict) and isinstance(old[key], dict) and value and old[key]:
                ops.extend(diff(old[key], value, [*path, key], depth - 1))
            else:
                ops.append({"op": "upsert", "path": pointer([*path, key]), "value": value})
    return ops


def touches_entries(ops: list[dict]) -> bool:
    """Whether an op lands on or above the agents or delegation keys objects."""
    return any(target == op["path"] or target.startswith(op["path"] + "/") or op["path"].startswith(target + "/")
               for op in ops for target in ENTRY_OBJECTS)
