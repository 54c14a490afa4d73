"""The hook every enforcement point calls before evaluating: raw chain in, verified facts out.

The agent passes its chain as ``context.delegation`` (``encode_chain``'s string). The
policy never sees it: ``delegation_input`` removes it, drops any ``input.delegation`` the
caller sent (only a verifier may write it), verifies the chain against the registry of
the active bundle and sets ``input.delegation`` to the verified facts, and
``context.on_behalf_of`` to the chain's agents. An unverifiable chain is a refusal naming
the link and check, which the caller turns into a ``delegation-invalid`` deny.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from agents_sdk.delegation.chain import CLOCK_SKEW, DelegationRefused, VerifiedDelegation, verify_chain

__all__ = ["REFUSAL_RULE", "ChainCache", "delegation_input", "registry_of"]

REFUSAL_RULE = "delegation-invalid"
REGISTRY_ROOT = "warden_registry"


def registry_of(data: Any) -> Mapping[str, Any] | None:
    """``data.warden_registry`` of a bundle's data, or None."""
    # `type(x) is dict or isinstance(x, Mapping)`: called on every decision; the ABC check
    # runs Python code, and a plain dict (what bundles and inputs are) can skip it.
    registry = data.get(REGISTRY_ROOT) if (type(data) is dict or isinstance(data, Mapping)) else None
    return registry if (type(registry) is dict or isinstance(registry, Mapping)) else None


class ChainCache:
    """Verified chains of one registry, so a chain's signatures are checked once per bundle.

    Keyed by the chain's SHA-256 and the acting agent; a new registry object (the next
    bundle) empties it. Time and session are checked again on every use.
    """

    def __init__(self, size: int = 1024):
        self.size = size
        self._registry: Mapping[str, Any] | None = None
        self._entries: OrderedDict[tuple[str, str], VerifiedDelegation] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: Any, registry: Mapping[str, Any], agent: str, session_id: str | None,
               now: float) -> VerifiedDelegation:
        if not isinstance(token, str):
            return verify_chain(token, registry, agent=agent, session_id=session_id, now=now)
        key = (hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest(), agent)
        with self._lock:
            if registry is not self._registry:
                self._registry, self._entries = registry, OrderedDict()
            hit = self._entries.get(key)
        if hit is not None and _still_valid(hit, session_id, now):
            return hit
        verified = verify_chain(token, registry, agent=agent, session_id=session_id, now=now)
        with self._lock:
            if registry is self._registry:
                self._entries[key] = verified
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return verified


def _still_valid(hit: VerifiedDelegation, session_id: str | None, now: float) -> bool:
    # Anything else may have changed only with a new registry, which empties the cache.
    return hit.session == session_id and hit.not_before <= now + CLOCK_SKEW and now - CLOCK_SKEW < hit.expires


def delegation_input(
    input: dict[str, Any],
    registry: Mapping[str, Any] | None,
    *,
    cache: ChainCache | None = None,
    now: float | None = None,
) -> tuple[dict[str, Any], VerifiedDelegation | None, str | None]:
    """Replace the raw chain in ``input`` by verified facts.

    Returns ``(input, verified, refusal)``: the input to evaluate (a shallow copy when
    changed), the verified chain or None when the input carries none, and the reason to
    deny (``"link 2 (researcher → executor): signature: …"``) or None. With no registry
    (the engine is remote) a chain is left in place for the engine's own verifier, and
    ``input.delegation`` is still dropped.
    """
    context = input.get("context")
    has_chain = (type(context) is dict or isinstance(context, Mapping)) and context.get("delegation") is not None
    if not has_chain and "delegation" not in input:
        return input, None, None
    result = dict(input)
    result.pop("delegation", None)  # only a verifier writes input.delegation
    if not has_chain:
        return result, None, None
    assert isinstance(context, Mapping)
    if registry is None:
        return result, None, None
    ctx = dict(context)
    token = ctx.pop("delegation")
    result["context"] = ctx
    agent = input.get("agent")
    agent_id = agent.get("id") if isinstance(agent, Mapping) else None
    session_id = ctx.get("session_id")
    moment = time.time() if now is None else now
    try:
        if not isinstance(agent_id, str):
            raise DelegationRefused(None, "audience", "the input names no acting agent")
        session = session_id if isinstance(session_id, str) else None
        verified = (cache.verify(token, registry, agent_id, session, moment) if cache is not None
                    else verify_chain(token, registry, agent=agent_id, session_id=session, now=moment))
    except DelegationRefused as refused:
        return result, None, f"Delegation chain refused at {refused}"
    result["delegation"] = verified.facts()
    ctx["on_behalf_of"] = list(verified.agents[:-1])
    return result, verified, None
