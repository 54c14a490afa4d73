"""Domain errors raised by services; the API maps them to 4xx in one place."""

from __future__ import annotations


class WardenError(Exception):
    """Base of the control plane's domain errors."""


class InvalidInput(WardenError):
    """Input that the domain refuses; `field` names what the caller must fix (400)."""

    def __init__(self, message: str, *, field: str = "non_field_errors", details: list | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        # Structured detail for machines, e.g. Rego errors as {file, line, column, message}.
        self.details = details


class ConflictError(WardenError):
    """The request contradicts the current state of an object (409)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
