"""OPA delta bundles: a `patch.json` of operations on the data of the active bundle.

A delta bundle holds `/.manifest` (same `roots` as the snapshot it patches; its own
revision and metadata) and `/patch.json`, ``{"data": [{"op": "upsert"|"replace"|"remove",
"path": "/json/pointer", "value": ...}, ...]}``, applied in order (OPA's
management-bundles docs, "Delta Bundles"). OPA does not verify signatures on delta
bundles; the SDK does: with verification configured, a delta must carry a
`.signatures.json` listing `.manifest` and `patch.json` with their hashes, as Warden signs
them, or it is refused.

The patch is applied copy-on-write: only the objects on each operation's path are
copied, so the previous bundle's data is left untouched (engines may still decide with
it) and a change costs what it touches, not the registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agents_sdk.bundles.archive import Bundle, verify_signatures
from agents_sdk.bundles.format import (
    MANIFEST_FILE,
    SIGNATURES_FILE,
    BundleError,
    BundleVerificationError,
    _reject_constant,
)
from agents_sdk.bundles.keys import VerificationConfig

PATCH_FILE = "patch.json"
OPERATIONS = frozenset({"upsert", "replace", "remove"})


def is_delta(files: Mapping[str, bytes]) -> bool:
    """A bundle with a patch.json is a delta (OPA: a non-empty patch makes the type delta)."""
    return PATCH_FILE in files


def parse_pointer(path: str) -> list[str]:
    """The segments of a JSON pointer (RFC 6901: ~1 is "/", ~0 is "~")."""
    if path == "" or path == "/":
        return []
    if not path.startswith("/"):
        raise BundleError(f"{PATCH_FILE}: path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _in_roots(segments: list[str], roots: tuple[str, ...]) -> bool:
    joined = "/".join(segments)
    return any(root == "" or joined == root or joined.startswith(root + "/") for root in roots)


def apply_patch(data: dict[str, Any], operations: list[Any], roots: tuple[str, ...] = ("",)) -> dict[str, Any]:
    """`data` with `operations` applied in order, copy-on-write (`data` is not changed).

    Raises BundleError for an operation OPA would refuse: an unknown op, a path outside
    `roots`, `replace` or `remove` of a path that does not exist, or a path through a value
    that is not an object."""
    result = dict(data)
    copied: set[int] = {id(result)}  # the objects already copied for this patch: mutate those in place
    for index, operation in enumerate(operations):
        if (
            not isinstance(operation, dict)
            or operation.get("op") not in OPERATIONS
            or not isinstance(operation.get("path"), str)
        ):
            raise BundleError(f"{PATCH_FILE}: operation {index} is not an upsert, replace or remove with a path")
        op, segments = operation["op"], parse_pointer(operation["path"])
        if not segments:
            raise BundleError(f"{PATCH_FILE}: operation {index} targets the whole data document")
        if not _in_roots(segments, roots):
            raise BundleError(f"{PATCH_FILE}: path {operation['path']!r} is outside the bundle roots {list(roots)}")
        if op != "remove" and "value" not in operation:
            raise BundleError(f"{PATCH_FILE}: operation {index} ({op}) has no value")
        node = result
        for segment in segments[:-1]:
            child = node.get(segment)
            if child is None and op == "upsert":
                child = {}
            elif not isinstance(child, dict):
                raise BundleError(f"{PATCH_FILE}: path {operation['path']!r} does not lead through objects")
            if id(child) not in copied:
                child = dict(child)
                copied.add(id(child))
            node[segment] = child
            node = child
        last = segments[-1]
        if op == "remove":
            if last not in node:
                raise BundleError(f"{PATCH_FILE}: cannot remove {operation['path']!r}: it does not exist")
            del node[last]
        elif op == "replace" and last not in node:
            raise BundleError(f"{PATCH_FILE}: cannot replace {operation['path']!r}: it does not exist")
        else:
            node[last] = operation["value"]
    return result


def apply_delta(
    active: Bundle | None,
    files: Mapping[str, bytes],
    archive: bytes,
    *,
    etag: str = "",
    verification: VerificationConfig | None = None,
) -> Bundle:
    """The bundle `active` becomes with the delta bundle `files` (read_archive) applied.

    Raises BundleVerificationError if its signature does not verify, BundleError if there is
    no active bundle to patch, the delta holds other files, its roots differ from the
    active bundle's, or an operation cannot be applied."""
    if active is None:
        raise BundleError("a delta bundle arrived but no bundle is active to patch")
    signed_by = None
    if verification is not None:
        if SIGNATURES_FILE not in files:
            raise BundleVerificationError(f"delta bundle missing {SIGNATURES_FILE} file", file=SIGNATURES_FILE)
        signed_by = verify_signatures(files, verification)
    extra = sorted(set(files) - {MANIFEST_FILE, PATCH_FILE, SIGNATURES_FILE})
    if extra:
        raise BundleError(f"delta bundle expected to contain only patch file but found {extra}")
    try:
        manifest = json.loads(files[MANIFEST_FILE].decode("utf-8-sig")) if MANIFEST_FILE in files else {}
        patch = json.loads(files[PATCH_FILE].decode("utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"delta bundle is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(patch, dict) or not isinstance(patch.get("data"), list):
        raise BundleError(f'delta bundle: .manifest must be an object and {PATCH_FILE} {{"data": [...]}}')
    if not patch["data"]:
        raise BundleError(f"delta bundle: {PATCH_FILE} has no operations")  # OPA would read it as an empty snapshot
    roots = tuple(root.strip("/") for root in manifest.get("roots", [""]))
    if roots != active.roots:
        raise BundleError(f"delta bundle roots {list(roots)} differ from the active bundle's {list(active.roots)}")
    revision = manifest.get("revision", "")
    if not isinstance(revision, str):
        raise BundleError("bundle load failed on manifest decode: revision must be a string")
    data = apply_patch(active.data, patch["data"], roots)
    return replace(
        active,
        revision=revision,
        manifest=manifest,
        data=data,
        archive=archive,
        etag=etag,
        signed_by=signed_by or active.signed_by,
        delta=True,
    )
