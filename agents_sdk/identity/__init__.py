"""Agent identities: an Ed25519 key pair with the agent's name, owner and scopes.

An identity lives in two files: the private key (PEM, PKCS#8, mode 0600, optionally
encrypted with a passphrase) and, next to it, a JSON metadata file named after the key
file plus ``.json`` (``billing-bot.pem`` → ``billing-bot.pem.json``). The metadata holds
nothing secret: name, owner, scopes, the key id and the public key, so it can be handed
to whoever verifies the agent's signed logs.

Only the public key ever leaves the machine: ``register`` sends it to the control
plane, which computes the same key id (``agents_sdk.keys.key_fingerprint``).

The package follows the ideas: ``names`` (what a valid name, owner and scope is),
``keyfiles`` (the private key on disk), ``registration`` (the control plane) and ``agent``
(``AgentIdentity`` itself).
"""

from __future__ import annotations

from agents_sdk.identity.agent import AgentIdentity
from agents_sdk.identity.names import (
    EMAIL_PATTERN,
    METADATA_FORMAT,
    NAME_PATTERN,
    RISK_TIERS,
    SCOPE_PATTERN,
    metadata_path_for,
    validate_name,
    validate_owner,
    validate_scopes,
)
from agents_sdk.identity.registration import PublicRegistration, Registration, register_public_identity

__all__ = [
    "EMAIL_PATTERN",
    "METADATA_FORMAT",
    "NAME_PATTERN",
    "RISK_TIERS",
    "SCOPE_PATTERN",
    "AgentIdentity",
    "PublicRegistration",
    "Registration",
    "metadata_path_for",
    "register_public_identity",
    "validate_name",
    "validate_owner",
    "validate_scopes",
]
