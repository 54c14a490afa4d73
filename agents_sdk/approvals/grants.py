"""Approval grants as the agent holds them: verified offline, checked against the call,
consumed once.

A grant is a compact JWS (RS256) signed with the control plane's bundle signing key, so
the key an engine already trusts for bundles verifies it. Its claims bind it to one
action: ``agent``, ``environment``, ``tool``, ``args_sha256`` (SHA-256 of the canonical
JSON of the *unmasked* arguments), ``exp`` (Unix seconds) and ``jti`` (the grant id, the
``approval_token`` the policy looks up). ``GrantLedger`` makes its use single: the first
process to create the grant's ledger file wins, every other use is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents_sdk.bundles.keys import VerificationConfig
from agents_sdk.records import canonical_json

__all__ = ["GrantLedger", "args_sha256", "binding_failures", "read_grant"]


def args_sha256(args: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the unmasked arguments: what a grant binds."""
    return hashlib.sha256(canonical_json(dict(args))).hexdigest()


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the grant is not a compact JWS") from exc


def read_grant(token: str, verification: VerificationConfig | None) -> dict[str, Any]:
    """The claims of grant ``token``; with ``verification``, only if its signature verifies
    with one of those keys. Raises ValueError naming what is wrong."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("the grant is not a compact JWS (header.payload.signature)")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except json.JSONDecodeError as exc:
        raise ValueError("the grant's header or claims are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("the grant's header and claims must be JSON objects")
    if verification is not None:
        key_id = verification.keyid or str(header.get("kid", ""))
        key = verification.keys.get(key_id)
        if key is None or header.get("alg") != key.algorithm:
            raise ValueError(f"the grant is signed with key {header.get('kid')!r}, which is not trusted")
        if not key.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), _b64url(parts[2])):
            raise ValueError("the grant's signature does not verify with the control plane's key")
    return claims


def binding_failures(
    claims: Mapping[str, Any], *, agent: str, environment: str | None, tool: str, args: Mapping[str, Any],
    now: float | None = None,
) -> list[str]:
    """Which bindings of a grant fail for this call (``agent``, ``env``, ``tool``, ``args``,
    ``expiry``), in that order; empty when the grant covers exactly this call."""
    failures = []
    if claims.get("agent") != agent:
        failures.append("agent")
    if environment is not None and claims.get("environment") != environment:
        failures.append("env")
    if claims.get("tool") != tool:
        failures.append("tool")
    if claims.get("args_sha256") != args_sha256(args):
        failures.append("args")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or (time.time() if now is None else now) >= expires:
        failures.append("expiry")
    return failures


class GrantLedger:
    """Where this host records the grants it has used: one file per grant id, created with
    O_CREAT|O_EXCL, so of two processes (or threads) using one grant exactly one wins."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, grant_id: str) -> Path:
        # The id comes from a signed grant, but is hashed anyway: no path can be smuggled in.
        return self.directory / (hashlib.sha256(grant_id.encode("utf-8")).hexdigest() + ".used")

    def consume(self, grant_id: str, *, detail: Mapping[str, Any] | None = None) -> bool:
        """Mark ``grant_id`` used; True for the one caller that did, False if it already was."""
        try:
            fd = os.open(self._path(grant_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(canonical_json({"grant_id": grant_id, "used_at": time.time(), **dict(detail or {})}))
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def used(self, grant_id: str) -> bool:
        return self._path(grant_id).exists()
