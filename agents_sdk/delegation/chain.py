"""Chain verification: is this chain of grants, root first, a valid delegation to this agent now?

Verified against the registry as the bundle carries it (``data.warden_registry``): the
agents' status and scopes, ``delegation.keys`` (key id → agent and public key, only keys
not revoked), ``delegation.authorities`` (the control plane's key for person-issued
grants), ``delegation.rules`` (per agent: ``may_delegate_to``, ``max_depth``,
``max_lifetime_seconds`` for the grants it issues, ``may_act_for`` for the people whose
grants it accepts), ``delegation.max_depth`` and ``delegation.revoked`` (grant
hashes). Every refusal names the link (1 = the root) and the check that failed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agents_sdk.delegation.grants import (
    MAX_LINKS,
    PERSON_PREFIX,
    DelegationError,
    decode_chain,
    grant_form_problem,
    grant_hash,
    grant_signing_bytes,
    person_allowed,
)

__all__ = ["CHECKS", "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_LIFETIME", "CLOCK_SKEW", "DelegationRefused",
           "VerifiedDelegation", "verify_chain"]

DEFAULT_MAX_DEPTH = 3
DEFAULT_MAX_LIFETIME = 3600
CLOCK_SKEW = 30
"""Seconds of clock difference tolerated between issuer and verifier."""

CHECKS = ("size", "form", "depth", "issuer-key", "signature", "parent-hash", "loop", "audience", "allowlist",
          "attenuation", "lifetime", "not-yet-valid", "expired", "revoked", "session")
"""Every check a refusal can name."""


class DelegationRefused(DelegationError):
    """The chain failed a check at a link; ``str()`` is the reason the deny carries."""

    def __init__(self, link: int | None, check: str, message: str, chain: Sequence[str] = ()):
        where = "chain" if link is None else f"link {link}"
        if link is not None and chain:
            where += f" ({chain[link - 1]})"
        super().__init__(f"{where}: {check}: {message}", check=check, link=link)
        self.detail = message


@dataclass(frozen=True)
class VerifiedDelegation:
    """What a verified chain establishes; ``facts()`` is what the policy sees as ``input.delegation``."""

    principals: tuple[str, ...]
    agents: tuple[str, ...]
    grants: tuple[str, ...]
    scopes: tuple[str, ...]
    tools: tuple[str, ...] | None
    constraints: dict[str, Any]
    session: str
    parent_session: str | None
    not_before: int
    expires: int
    sessions: tuple[str | None, ...] = field(default=())

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "verified": True,
            "chain": list(self.principals),
            "agents": list(self.agents),
            "origin": self.principals[0],
            "depth": len(self.grants),
            "grants": list(self.grants),
            "scopes": list(self.scopes),
            "constraints": dict(self.constraints),
            "session": self.session,
            "sessions": list(self.sessions),
            "expires": self.expires,
        }
        if self.tools is not None:
            facts["tools"] = list(self.tools)
        if self.parent_session is not None:
            facts["parent_session"] = self.parent_session
        return facts


def verify_chain(
    token: Any,
    registry: Mapping[str, Any],
    *,
    agent: str,
    session_id: str | None,
    now: float | None = None,
) -> VerifiedDelegation:
    """Verify ``token`` (``encode_chain``'s string or a list of grants) as a delegation to
    ``agent`` acting in ``session_id``. Returns the verified facts; raises DelegationRefused
    naming the link and check that failed."""
    moment = time.time() if now is None else now
    try:
        chain = decode_chain(token)
    except DelegationRefused:
        raise
    except DelegationError as exc:
        raise DelegationRefused(exc.link, exc.check, str(exc)) from exc
    checker = _Checker(chain, registry, moment)
    return checker.run(agent, session_id)


class _Checker:
    def __init__(self, chain: list[dict[str, Any]], registry: Mapping[str, Any], now: float):
        self.chain = chain
        self.now = now
        self.agents = _mapping(registry.get("agents"))
        delegation = _mapping(registry.get("delegation"))
        self.keys = _mapping(delegation.get("keys"))
        self.authorities = _mapping(delegation.get("authorities"))
        self.rules = _mapping(delegation.get("rules"))
        revoked = delegation.get("revoked")
        self.revoked = set(revoked) if isinstance(revoked, list) else set()
        self.max_depth = _positive(delegation.get("max_depth"), DEFAULT_MAX_DEPTH)
        self.default_lifetime = _positive(delegation.get("max_lifetime_seconds"), DEFAULT_MAX_LIFETIME)
        self.names: list[str] = []

    def refuse(self, link: int | None, check: str, message: str) -> DelegationRefused:
        return DelegationRefused(link, check, message, self.names)

    def run(self, agent: str, session_id: str | None) -> VerifiedDelegation:
        # Names first, so every refusal can say which hop it is about.
        self.names = [
            f"{g.get('iss')!s:.80} → {g.get('sub')!s:.80}" if isinstance(g, dict) else "?" for g in self.chain
        ]
        hashes: list[str] = []
        principals: list[str] = []
        seen_agents: set[str] = set()
        depth_limit = min(self.max_depth, MAX_LINKS)
        prev: dict[str, Any] | None = None
        for link, grant in enumerate(self.chain, start=1):
            problem = grant_form_problem(grant)
            if problem is not None:
                raise self.refuse(link, "form", problem)
            iss, sub = grant["iss"], grant["sub"]
            person = iss.startswith(PERSON_PREFIX)
            if person and link != 1:
                raise self.refuse(link, "form", "only the root of a chain may be issued by a person")
            if not person:
                depth_limit = min(depth_limit, _positive(_mapping(self.rules.get(iss)).get("max_depth"), self.max_depth))
            if link > depth_limit:
                raise self.refuse(link, "depth", f"the chain may be at most {depth_limit} links deep here")
            public_key = self.issuer_key(link, grant)
            try:
                public_key.verify(base64.b64decode(grant["sig"]), grant_signing_bytes(grant))
            except InvalidSignature:
                raise self.refuse(link, "signature", f"the signature does not verify with key {grant['kid'][:16]}…") from None
            digest = grant_hash(grant)
            if digest in hashes:
                raise self.refuse(link, "loop", "the same grant appears twice in the chain")
            if prev is None:
                if grant["parent"] is not None:
                    raise self.refuse(link, "parent-hash", "the root grant names a parent")
                principals.append(iss)
                if not person:
                    seen_agents.add(iss)
            else:
                if grant["parent"] != hashes[-1]:
                    raise self.refuse(link, "parent-hash", "parent is not the hash of the previous link")
                if iss != prev["sub"] or grant["kid"] != prev["aud"]:
                    raise self.refuse(link, "audience", f"issued by {iss} with key {grant['kid'][:16]}…, but link "
                                      f"{link - 1} was addressed to {prev['sub']} with key {prev['aud'][:16]}…")
                if grant.get("parent_session") != prev["session"]:
                    raise self.refuse(link, "session", f"parent_session is not link {link - 1}'s session")
            if sub in seen_agents:
                raise self.refuse(link, "loop", f"agent {sub} appears twice in the chain")
            seen_agents.add(sub)
            self.check_audience_key(link, grant)
            self.check_allowlist(link, grant, person)
            self.check_attenuation(link, grant, prev)
            self.check_time(link, grant, person)
            if digest in self.revoked:
                raise self.refuse(link, "revoked", f"grant {digest[:16]}… was revoked")
            hashes.append(digest)
            principals.append(sub)
            prev = grant
        assert prev is not None
        if prev["sub"] != agent:
            raise self.refuse(len(self.chain), "audience", f"the chain delegates to {prev['sub']}, but {agent} is acting")
        if session_id is None or prev["session"] != session_id:
            raise self.refuse(len(self.chain), "session", f"the grant is for session {prev['session']!r}, not "
                              f"{session_id!r}: a grant is used only in the session it was issued for")
        return self.result(principals, hashes)

    def issuer_key(self, link: int, grant: dict[str, Any]) -> Ed25519PublicKey:
        kid, iss = grant["kid"], grant["iss"]
        if iss.startswith(PERSON_PREFIX):
            entry = _mapping(self.authorities.get(kid))
            if not entry:
                raise self.refuse(link, "issuer-key", f"key {kid[:16]}… is not a delegation authority of this registry")
        else:
            entry = _mapping(self.keys.get(kid))
            if not entry:
                raise self.refuse(link, "issuer-key", f"key {kid[:16]}… is unknown or revoked")
            if entry.get("agent") != iss:
                raise self.refuse(link, "issuer-key", f"key {kid[:16]}… belongs to {entry.get('agent')}, not {iss}")
        created = entry.get("created")
        if isinstance(created, int) and grant["iat"] + CLOCK_SKEW < created:
            raise self.refuse(link, "issuer-key", "the grant claims to be issued before its key existed")
        try:
            return Ed25519PublicKey.from_public_bytes(base64.b64decode(str(entry.get("public_key")), validate=True))
        except ValueError:
            raise self.refuse(link, "issuer-key", f"the registry holds no usable public key for {kid[:16]}…") from None

    def check_audience_key(self, link: int, grant: dict[str, Any]) -> None:
        entry = _mapping(self.keys.get(grant["aud"]))
        if entry.get("agent") != grant["sub"]:
            raise self.refuse(link, "audience", f"key {grant['aud'][:16]}… is not a current key of {grant['sub']}")

    def check_allowlist(self, link: int, grant: dict[str, Any], person: bool) -> None:
        if person:  # the audience's rule names the people it may act on behalf of
            if not person_allowed(grant["iss"], _mapping(self.rules.get(grant["sub"])).get("may_act_for")):
                raise self.refuse(link, "allowlist", f"{grant['sub']} may not act for {grant['iss']} in the registry")
            return
        allowed = _mapping(self.rules.get(grant["iss"])).get("may_delegate_to")
        if not isinstance(allowed, list) or not (grant["sub"] in allowed or "*" in allowed):
            raise self.refuse(link, "allowlist", f"{grant['iss']} may not delegate to {grant['sub']} in the registry")

    def check_attenuation(self, link: int, grant: dict[str, Any], prev: dict[str, Any] | None) -> None:
        if prev is None:
            issuer = _mapping(self.agents.get(grant["iss"]))
            if grant["iss"].startswith(PERSON_PREFIX):
                return  # a person's grant is bounded by the audience's own registry scopes (in the policy)
            bound = set(issuer.get("scopes") or [])
            wider = sorted(set(grant["scopes"]) - bound)
            if wider:
                raise self.refuse(link, "attenuation", f"delegates scope(s) {', '.join(wider)} the issuer does not hold")
            return
        wider = sorted(set(grant["scopes"]) - set(prev["scopes"]))
        if wider:
            raise self.refuse(link, "attenuation", f"widens scopes: {', '.join(wider)} not in link {link - 1}")
        if "tools" in prev:
            if "tools" not in grant:
                raise self.refuse(link, "attenuation", f"drops link {link - 1}'s tool list (would allow every tool)")
            extra = sorted(set(grant["tools"]) - set(prev["tools"]))
            if extra:
                raise self.refuse(link, "attenuation", f"widens tools: {', '.join(extra)} not in link {link - 1}")
        mine, theirs = grant.get("constraints") or {}, prev.get("constraints") or {}
        for name, bound in theirs.items():
            if name not in mine:
                raise self.refuse(link, "attenuation", f"drops link {link - 1}'s {name} constraint")
            value = mine[name]
            narrower = (
                value.startswith(bound) if name == "path_prefix"
                else value <= bound if name == "max_amount"
                else value == bound or value.endswith("." + bound)
            )
            if not narrower:
                raise self.refuse(link, "attenuation", f"widens {name} from {bound!r} to {value!r}")
        if grant["nbf"] < prev["nbf"] or grant["exp"] > prev["exp"]:
            raise self.refuse(link, "attenuation", f"outlives link {link - 1} (nbf/exp outside its window)")

    def check_time(self, link: int, grant: dict[str, Any], person: bool) -> None:
        rule = {} if person else _mapping(self.rules.get(grant["iss"]))
        limit = _positive(rule.get("max_lifetime_seconds"), self.default_lifetime)
        if grant["exp"] - grant["nbf"] > limit:
            raise self.refuse(link, "lifetime", f"valid for {grant['exp'] - grant['nbf']} s; at most {limit} s")
        if grant["nbf"] > self.now + CLOCK_SKEW:
            raise self.refuse(link, "not-yet-valid", f"valid from {grant['nbf']}, it is now {int(self.now)}")
        if grant["exp"] <= self.now - CLOCK_SKEW:
            raise self.refuse(link, "expired", f"expired at {grant['exp']}, it is now {int(self.now)}")

    def result(self, principals: list[str], hashes: list[str]) -> VerifiedDelegation:
        leaf = self.chain[-1]
        scopes = set(self.chain[0]["scopes"])
        tools: set[str] | None = None
        constraints: dict[str, Any] = {}
        for grant in self.chain:
            scopes &= set(grant["scopes"])
            if "tools" in grant:
                tools = set(grant["tools"]) if tools is None else tools & set(grant["tools"])
            constraints.update(grant.get("constraints") or {})  # each link is narrower than the last
        return VerifiedDelegation(
            principals=tuple(principals),
            agents=tuple(p for p in principals if not p.startswith(PERSON_PREFIX)),
            grants=tuple(hashes),
            scopes=tuple(sorted(scopes)),
            tools=None if tools is None else tuple(sorted(tools)),
            constraints=constraints,
            session=leaf["session"],
            parent_session=leaf.get("parent_session"),
            not_before=max(g["nbf"] for g in self.chain),
            expires=min(g["exp"] for g in self.chain),
            # The session each principal acts in (the root's only if its grant names it).
            sessions=(self.chain[0].get("parent_session"), *(g["session"] for g in self.chain)),
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
