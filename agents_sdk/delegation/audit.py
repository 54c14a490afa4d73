"""Offline checks of the delegation chains that signed records carry (``warden audit verify``).

A Guard that verified a chain signs it into the call's ``intent`` record as
``payload.delegation`` (the facts plus ``token``, the chain itself). Offline there is no
registry, so this re-checks what needs only public keys: each link's signature, the parent
hashes, that each link's issuer key is the previous link's audience, and that the last
link was addressed to the key and session of the record that used it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.delegation.grants import (
    DelegationError,
    decode_chain,
    grant_form_problem,
    grant_hash,
    grant_signing_bytes,
)

__all__ = ["chain_problems"]


def chain_problems(records: Sequence[Any], public_keys: Mapping[str, Ed25519PublicKey]) -> tuple[int, list[tuple[int, str]]]:
    """Check every record's delegation chain; return (chains checked, [(record index, problem)])."""
    checked, problems = 0, []
    for index, record in enumerate(records):
        payload = record.get("payload") if isinstance(record, Mapping) else None
        delegation = payload.get("delegation") if isinstance(payload, Mapping) else None
        if not isinstance(delegation, Mapping):
            continue
        checked += 1
        problem = _problem(record, delegation, public_keys)
        if problem is not None:
            problems.append((index, problem))
    return checked, problems


def _problem(record: Mapping[str, Any], delegation: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    try:
        chain = decode_chain(delegation.get("token"))
    except DelegationError as exc:
        return f"chain: {exc.check}: {exc}"
    hashes: list[str] = []
    prev: dict[str, Any] | None = None
    for link, grant in enumerate(chain, start=1):
        problem = grant_form_problem(grant)
        if problem is not None:
            return f"link {link}: form: {problem}"
        key = keys.get(grant["kid"])
        if key is None:
            return f"link {link}: issuer-key: no public key given for {grant['iss']} key {grant['kid'][:16]}…"
        try:
            key.verify(base64.b64decode(grant["sig"]), grant_signing_bytes(grant))
        except InvalidSignature:
            return f"link {link}: signature: does not verify"
        if grant["parent"] != (hashes[-1] if hashes else None):
            return f"link {link}: parent-hash: does not chain to link {link - 1}"
        if prev is not None and (grant["kid"] != prev["aud"] or grant["iss"] != prev["sub"]):
            return f"link {link}: audience: issuer is not link {link - 1}'s audience"
        hashes.append(grant_hash(grant))
        prev = grant
    assert prev is not None
    if prev["aud"] != record.get("key_id") or prev["sub"] != record.get("agent"):
        return f"link {len(chain)}: audience: addressed to {prev['sub']}, but {record.get('agent')} signed the record"
    if prev["session"] != record.get("session_id"):
        return f"link {len(chain)}: session: issued for session {prev['session']!r}, used in {record.get('session_id')!r}"
    if list(delegation.get("grants") or []) != hashes:
        return "chain: grants: the recorded grant hashes do not match the chain"
    return None
