"""Fixtures every framework's tests share (each runs in its own nox environment)."""

import pytest


@pytest.fixture
def entered() -> list[tuple[str, str]]:
    """Calls that reached a tool function: a refused call must never appear here."""
    return []
