"""Signed, attenuating delegation between agents (docs/delegation.md).

    grant = issue_grant(orchestrator, issuer="orchestrator", audience="researcher",
                        audience_key_id=researcher.key_id, scopes=["read:docs"], session="s-2")
    token = encode_chain([grant])
    guard.check("search", {...}, session_id="s-2", delegation=token)

Enforcement points call ``delegation_input`` before evaluating; the policy sees only
``input.delegation`` (verified facts), never the raw chain.
"""

from agents_sdk.delegation.audit import chain_problems
from agents_sdk.delegation.chain import (
    CHECKS,
    CLOCK_SKEW,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_LIFETIME,
    DelegationRefused,
    VerifiedDelegation,
    verify_chain,
)
from agents_sdk.delegation.context import REFUSAL_RULE, ChainCache, delegation_input, registry_of
from agents_sdk.delegation.grants import (
    CHAIN_PREFIX,
    CONSTRAINT_NAMES,
    MAX_CHAIN_BYTES,
    MAX_LINKS,
    DelegationError,
    decode_chain,
    encode_chain,
    grant_hash,
    grant_signing_bytes,
    issue_grant,
    person_allowed,
    person_issuer,
)
from agents_sdk.delegation.interop import act_claims, authzen_subject

__all__ = [
    "CHAIN_PREFIX",
    "CHECKS",
    "CLOCK_SKEW",
    "CONSTRAINT_NAMES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_LIFETIME",
    "MAX_CHAIN_BYTES",
    "MAX_LINKS",
    "REFUSAL_RULE",
    "ChainCache",
    "DelegationError",
    "DelegationRefused",
    "VerifiedDelegation",
    "act_claims",
    "authzen_subject",
    "chain_problems",
    "decode_chain",
    "delegation_input",
    "encode_chain",
    "grant_hash",
    "grant_signing_bytes",
    "issue_grant",
    "person_allowed",
    "person_issuer",
    "registry_of",
    "verify_chain",
]
