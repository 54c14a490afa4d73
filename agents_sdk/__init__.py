"""Warden agents SDK: agent identity, signed action records and policy enforcement.

    import agents_sdk as warden

    identity = warden.AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets"])
    guard = warden.Guard(identity, warden.EmbeddedBackend.from_modules(modules), environment="dev")
    decision = guard.check("ticket_read", {"id": 7})

Everything listed in ``__all__`` is the public API; the submodules stay importable
(``from agents_sdk.guard import Guard``) and name the same objects. Names are loaded on
first use, so ``import agents_sdk.records`` (as the control plane does) does not load
the Rego engine.

This package must import and work without Django: the control plane imports it,
never the reverse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agents_sdk.version import __version__

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # enforcement
    "Guard": "agents_sdk.guard",
    "Decision": "agents_sdk.guard",
    "Reason": "agents_sdk.guard",
    "DecisionBackend": "agents_sdk.guard",
    "EmbeddedBackend": "agents_sdk.guard",
    "OPAHTTPBackend": "agents_sdk.guard",
    "fail_closed": "agents_sdk.guard",
    # identity and records
    "AgentIdentity": "agents_sdk.identity",
    "Registration": "agents_sdk.identity",
    "ActionSigner": "agents_sdk.records",
    "SignedSession": "agents_sdk.records",
    "verify_records": "agents_sdk.verify",
    "VerificationResult": "agents_sdk.verify",
    "Shipper": "agents_sdk.shipper",
    # policy bundles and the engine
    "Bundle": "agents_sdk.bundles",
    "BundleClient": "agents_sdk.bundles",
    "BundleStatus": "agents_sdk.bundles",
    "VerificationKey": "agents_sdk.bundles",
    "VerificationConfig": "agents_sdk.bundles",
    "RegoEngine": "agents_sdk.engine",
    # errors
    "WardenError": "agents_sdk.errors",
    "IdentityError": "agents_sdk.errors",
    "IdentityExistsError": "agents_sdk.errors",
    "PassphraseError": "agents_sdk.errors",
    "RegistrationError": "agents_sdk.errors",
    "SigningError": "agents_sdk.errors",
    "CanonicalJSONError": "agents_sdk.errors",
    "RecordFormatError": "agents_sdk.errors",
    "VerificationError": "agents_sdk.errors",
    "PolicyViolationError": "agents_sdk.errors",
    "ApprovalRequired": "agents_sdk.errors",
    "ApprovalDenied": "agents_sdk.errors",
    "ApprovalExpired": "agents_sdk.errors",
    "ApprovalUnreachable": "agents_sdk.approvals",
    "ApprovalClient": "agents_sdk.approvals",
    "InvalidPublicKey": "agents_sdk.keys",
    "RegoEngineError": "agents_sdk.engine",
    "RegoCompileError": "agents_sdk.engine",
    "RegoEvaluationError": "agents_sdk.engine",
    "ShipperFull": "agents_sdk.shipper",
    "BundleError": "agents_sdk.bundles",
    "BundleVerificationError": "agents_sdk.bundles",
    "StaleBundleError": "agents_sdk.bundles",
    "ConfigError": "agents_sdk.sidecar.config",
}

__all__ = [
    "__version__",
    "ActionSigner",
    "AgentIdentity",
    "ApprovalClient",
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalRequired",
    "ApprovalUnreachable",
    "Bundle",
    "BundleClient",
    "BundleError",
    "BundleStatus",
    "BundleVerificationError",
    "CanonicalJSONError",
    "ConfigError",
    "Decision",
    "DecisionBackend",
    "EmbeddedBackend",
    "Guard",
    "IdentityError",
    "IdentityExistsError",
    "InvalidPublicKey",
    "OPAHTTPBackend",
    "PassphraseError",
    "PolicyViolationError",
    "Reason",
    "RecordFormatError",
    "Registration",
    "RegistrationError",
    "RegoCompileError",
    "RegoEngine",
    "RegoEngineError",
    "RegoEvaluationError",
    "Shipper",
    "ShipperFull",
    "SignedSession",
    "SigningError",
    "StaleBundleError",
    "VerificationConfig",
    "VerificationError",
    "VerificationKey",
    "VerificationResult",
    "WardenError",
    "fail_closed",
    "verify_records",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agents_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from agents_sdk.approvals import ApprovalClient, ApprovalUnreachable
    from agents_sdk.bundles import (
        Bundle,
        BundleClient,
        BundleError,
        BundleStatus,
        BundleVerificationError,
        StaleBundleError,
        VerificationConfig,
        VerificationKey,
    )
    from agents_sdk.engine import RegoCompileError, RegoEngine, RegoEngineError, RegoEvaluationError
    from agents_sdk.errors import (
        ApprovalDenied,
        ApprovalExpired,
        ApprovalRequired,
        CanonicalJSONError,
        IdentityError,
        IdentityExistsError,
        PassphraseError,
        PolicyViolationError,
        RecordFormatError,
        RegistrationError,
        SigningError,
        VerificationError,
        WardenError,
    )
    from agents_sdk.guard import (
        Decision,
        DecisionBackend,
        EmbeddedBackend,
        Guard,
        OPAHTTPBackend,
        Reason,
        fail_closed,
    )
    from agents_sdk.identity import AgentIdentity, Registration
    from agents_sdk.keys import InvalidPublicKey
    from agents_sdk.records import ActionSigner, SignedSession
    from agents_sdk.shipper import Shipper, ShipperFull
    from agents_sdk.sidecar.config import ConfigError
    from agents_sdk.verify import VerificationResult, verify_records
