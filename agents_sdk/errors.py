"""Exceptions raised by the Warden agents SDK.

Every exception the SDK raises on purpose derives from ``WardenError``, so an agent
can catch the SDK's failures in one place without swallowing its own bugs. Classes
defined in other modules say where they live; all are also importable from
``agents_sdk`` itself.

    WardenError
    ├── IdentityError               creating, saving or loading an agent identity
    │   ├── IdentityExistsError     refusing to overwrite an identity file
    │   └── PassphraseError         missing, unexpected or wrong passphrase
    ├── RegistrationError           the control plane refused or could not be reached
    ├── SigningError                a record could not be built or signed
    │   └── CanonicalJSONError      a value has no canonical JSON form (also a ValueError)
    ├── RecordFormatError           a JSONL log line is not a JSON object (also a ValueError)
    ├── VerificationError           a signed log failed verification
    ├── PolicyViolationError        the policy denied an action (it did not run)
    ├── ApprovalRequired            the policy holds an action for a person's approval
    │   └── ApprovalUnreachable     (agents_sdk.approvals) the request could not reach the control plane
    ├── ApprovalDenied              a person denied the held action
    ├── ApprovalExpired             the request (or its wait) ended without a usable grant
    ├── InvalidPublicKey            (agents_sdk.keys) not an Ed25519 public key (also a ValueError)
    ├── RegoEngineError             (agents_sdk.engine) a module did not compile or evaluate
    │   ├── RegoCompileError
    │   └── RegoEvaluationError
    ├── ShipperFull                 (agents_sdk.shipper) the record spool is full
    ├── BundleError                 (agents_sdk.bundles) a policy bundle could not be used
    │   ├── BundleVerificationError its signature or a file's hash did not verify
    │   └── StaleBundleError        older than the active one, or older than the maximum age
    ├── ConfigError                 (agents_sdk.sidecar) a sidecar config is invalid
    ├── ProxyConfigError            (agents_sdk.integrations.mcp_proxy) an MCP proxy config is invalid
    └── UsageError                  (agents_sdk.cli) a command line is invalid
"""

from __future__ import annotations

from typing import Any


class WardenError(Exception):
    """Base class of every error the Warden SDK raises on purpose."""


class IdentityError(WardenError):
    """An agent identity is invalid, or its files cannot be written or read."""


class IdentityExistsError(IdentityError):
    """An identity file already exists and ``overwrite=True`` was not given; ``path`` names it."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class PassphraseError(IdentityError):
    """The private key's passphrase is missing, not needed, or wrong."""


class RegistrationError(WardenError):
    """The control plane refused a registration, or could not be reached.

    ``status`` is the HTTP status (``None`` when no answer came back) and ``body`` the
    decoded JSON answer when there was one, so callers can branch on, for example,
    ``status == 409`` without parsing the message.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, url: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.url = url


class SigningError(WardenError):
    """An action record could not be built or signed (bad kind, missing field, closed session)."""


class CanonicalJSONError(SigningError, ValueError):
    """A value cannot be written as canonical JSON (NaN, a non-string key, bytes, ...)."""


class RecordFormatError(WardenError, ValueError):
    """A line of a JSONL log is not a JSON object. ``line`` is 1-based."""

    def __init__(self, message: str, *, line: int | None = None):
        super().__init__(message)
        self.line = line


class VerificationError(WardenError):
    """A signed log failed verification; ``failure`` names the first bad record."""

    def __init__(self, message: str, *, failure: Any = None):
        super().__init__(message)
        self.failure = failure


class PolicyViolationError(WardenError):
    """The policy denied an action; the call did not run.

    The message is ``"<rule>: <message>"`` of the first reason, as the policy wrote it;
    ``decision`` is the whole ``Decision`` (every reason, the obligations).
    """

    def __init__(self, message: str, *, decision: Any = None, tool: str | None = None):
        super().__init__(message)
        self.decision = decision
        self.tool = tool

    @property
    def rule(self) -> str | None:
        reasons = getattr(self.decision, "reasons", ()) or ()
        return reasons[0].rule if reasons else None


class ApprovalRequired(WardenError):
    """The policy holds an action until a person approves it; the call did not run.

    ``tool``, ``tool_args`` and ``reasons`` say exactly what must be approved (an approval
    grants one agent, one tool and these exact arguments; ``args`` is taken by
    ``Exception``); ``decision`` is the whole ``Decision``. Retry with
    ``approval_token=...`` once the approval is granted.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str,
        args: dict[str, Any],
        reasons: Any = (),
        decision: Any = None,
        request_id: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message)
        self.tool = tool
        self.tool_args = args
        self.reasons = tuple(reasons)
        self.decision = decision
        # Set when the request was filed with the control plane (agents_sdk.approvals).
        self.request_id = request_id
        self.url = url

    def approval_request(self) -> dict[str, Any]:
        """What a person must approve, as JSON: the tool, its exact arguments and the reasons."""
        return {
            "tool": self.tool,
            "args": self.tool_args,
            "reasons": [r.as_dict() if hasattr(r, "as_dict") else r for r in self.reasons],
        }


class ApprovalDenied(WardenError):
    """A person denied the held action; the call did not run. ``request_id`` names the
    request, ``comment`` is what the approver wrote."""

    def __init__(self, message: str, *, request_id: str, comment: str = "", decided_by: tuple[str, ...] = ()):
        super().__init__(message)
        self.request_id = request_id
        self.comment = comment
        self.decided_by = decided_by


class ApprovalExpired(WardenError):
    """No usable grant came in time: the request expired or was cancelled, the wait
    (``approval_timeout``) ended, or the grant expired before the call; it did not run."""

    def __init__(self, message: str, *, request_id: str | None = None, state: str = "expired"):
        super().__init__(message)
        self.request_id = request_id
        self.state = state
