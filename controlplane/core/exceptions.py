"""Domain errors raised by services; the API maps them to 4xx in one place
(core/exception_handler.py for DRF, opa/views.py for OPA's plain views)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the control plane's domain errors (not the SDK's agents_sdk.errors.WardenError)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """Input that the domain refuses; `field` names what the caller must fix (400)."""

    def __init__(self, message: str, *, field: str = "non_field_errors", details: list | None = None) -> None:
        super().__init__(message)
        self.field = field
        # Structured detail for machines, e.g. Rego errors as {file, line, column, message}.
        self.details = details


class ConflictError(DomainError):
    """The request contradicts the current state of an object (409)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLarge(DomainError):
    """413: the body, or what it inflates to, is over the limit."""


class UnsupportedEncoding(DomainError):
    """415: a Content-Encoding other than gzip or identity."""


class NotDelivered(DomainError):
    """503: the change was committed but could not be made effective (e.g. a bundle rebuild
    failed); the caller must not assume engines enforce it. `revision` is what engines serve."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
