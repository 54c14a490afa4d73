"""A verified chain in other standards' words, for gateways that speak them.

- OAuth 2.0 Token Exchange (RFC 8693, section 4.1): the acting party is ``sub`` and each
  earlier party nests as ``act``; the outermost ``act`` is the current actor's delegator, the
  innermost the chain's origin (RFC 8693: "the least recent actor is the most deeply nested").
- AuthZEN Authorization API 1.0: the subject is the acting agent; the chain goes into
  ``subject.properties`` so a PDP can reason about it without parsing Warden's grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["act_claims", "authzen_subject"]


def act_claims(facts: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 8693 claims of a verified chain (``input.delegation``): ``sub`` is the acting
    agent, ``act`` the party it acts for, nested down to the origin; scope as a string."""
    chain = list(facts["chain"])
    claims: dict[str, Any] = {"sub": chain[-1], "scope": " ".join(facts["scopes"])}
    nested: dict[str, Any] | None = None
    for principal in chain[:-1]:  # origin first, so it ends up innermost
        nested = {"sub": principal} if nested is None else {"sub": principal, "act": nested}
    if nested is not None:
        claims["act"] = nested
    if "session" in facts:
        claims["sid"] = facts["session"]
    if "expires" in facts:
        claims["exp"] = facts["expires"]
    return claims


def authzen_subject(facts: Mapping[str, Any]) -> dict[str, Any]:
    """An AuthZEN ``subject`` for the acting agent with the verified chain as properties."""
    chain = list(facts["chain"])
    properties: dict[str, Any] = {
        "delegation_chain": chain,
        "delegation_origin": chain[0],
        "delegated_scopes": list(facts["scopes"]),
        "delegation_constraints": dict(facts.get("constraints") or {}),
        "delegation_grants": list(facts.get("grants") or []),
    }
    if "tools" in facts:
        properties["delegated_tools"] = list(facts["tools"])
    return {"type": "agent", "id": chain[-1], "properties": properties}
