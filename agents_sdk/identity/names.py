"""Agent names, owners, scopes and the identity files' naming: the rules an identity is checked
against before anything is signed or sent."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from agents_sdk.errors import IdentityError

METADATA_FORMAT = "warden-agent-identity/1"
RISK_TIERS = ("minimal", "limited", "high", "unacceptable")

# A slug that is safe in a URL path segment (/api/v1/agents/{name}/) and a file name.
NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
# verb:resource, e.g. read:tickets, write:files, call:payments.refund, read:*
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*:(?:\*|[a-z0-9][a-z0-9_.*/-]*)$")
# Deliberately loose: the control plane owns the full e-mail rules.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid agent slug; raise IdentityError otherwise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise IdentityError(
            f"agent name {name!r} must be a slug: 1-64 lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_owner(owner: str) -> str:
    """Return ``owner`` if it looks like an e-mail address; raise IdentityError otherwise."""
    if not isinstance(owner, str) or not EMAIL_PATTERN.fullmatch(owner):
        raise IdentityError(f"owner {owner!r} must be an e-mail address such as team@example.com")
    return owner


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Return the scopes as a tuple in their given order, without duplicates.

    Each scope is ``verb:resource`` (``read:tickets``, ``call:payments.refund``,
    ``read:*``). Raises IdentityError naming the first invalid scope.
    """
    if isinstance(scopes, str):
        raise IdentityError("scopes must be a list of 'verb:resource' strings, not a single string")
    result: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_PATTERN.fullmatch(scope):
            raise IdentityError(
                f"scope {scope!r} must be 'verb:resource' in lowercase, e.g. 'read:tickets' or 'read:*'"
            )
        if scope not in result:
            result.append(scope)
    return tuple(result)


def metadata_path_for(key_path: str | os.PathLike[str]) -> Path:
    """Return where the metadata of the identity whose private key is at ``key_path`` lives."""
    path = Path(key_path)
    return path.with_name(path.name + ".json")

