"""Errors of the sandbox. A refused action raises ``SandboxViolation``, a ``PolicyViolationError``."""

from __future__ import annotations

from typing import Any

from agents_sdk.errors import PolicyViolationError, WardenError


class SandboxError(WardenError):
    """Base class of the sandbox's own errors."""


class SandboxProfileError(SandboxError, ValueError):
    """A sandbox profile is malformed; the message starts with the field, e.g. ``file_read[0]: ...``."""


class SandboxUnavailable(SandboxError):
    """The sandbox cannot be built on this host (bubblewrap missing, user namespaces off,
    libseccomp missing). Warden then refuses to run the tool: it never runs it unsandboxed."""


class SandboxViolation(PolicyViolationError):
    """The sandbox refused something: a command outside the profile (nothing ran) or a
    connection to a host outside the allowlist (the run ended; ``result`` is its
    SandboxResult). ``violations`` lists each refusal as ``{"kind", "target", "reason"}``."""

    def __init__(self, message: str, *, tool: str | None, violations: Any, result: Any = None):
        super().__init__(message, tool=tool)
        self.violations = tuple(violations)
        self.result = result
