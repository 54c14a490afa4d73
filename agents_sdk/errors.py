"""Exceptions raised by the Warden agents SDK.

Every exception the SDK raises on purpose derives from ``WardenError``, so an agent
can catch the SDK's failures in one place without swallowing its own bugs.

    WardenError
    ├── IdentityError            creating, saving or loading an agent identity
    │   ├── IdentityExistsError  refusing to overwrite an identity file
    │   └── PassphraseError      missing, unexpected or wrong passphrase
    ├── RegistrationError        the control plane refused or could not be reached
    ├── SigningError             a record could not be built or signed
    │   └── CanonicalJSONError   a value has no canonical JSON form
    ├── RecordFormatError        a JSONL log line is not a JSON object
    └── VerificationError        a signed log failed verification

Enforcement errors (``PolicyViolationError``, ``ApprovalRequired``) join this module
with the Guard; they derive from ``WardenError`` too.
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
