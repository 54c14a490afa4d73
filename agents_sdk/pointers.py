"""JSON Pointers (RFC 6901) and masking the values they point at.

A policy's ``obligations.mask`` lists JSON Pointers into the decision input
(``/action/args/card_number``); the Guard, the sidecar's decision log and the control
plane's audit store all replace those values before anything is signed or stored. This
module is the one implementation they share, so they cannot disagree on what a pointer
addresses.

- ``~1`` is ``/`` and ``~0`` is ``~`` inside a reference token (decoded in that order).
- An array index is ``0`` or a decimal number without leading zeros, ASCII digits only
  (``"01"``, ``"-"`` and ``"²"`` address nothing).
- A pointer that is not a string, does not start with ``/`` or addresses nothing is
  skipped: masking is best effort over what exists, it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["escape", "mask", "masked", "parse", "unescape"]

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def escape(key: str) -> str:
    """``key`` as one reference token (``a/b`` → ``a~1b``)."""
    return key.replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    """One reference token as the key it names (``a~1b`` → ``a/b``)."""
    return token.replace("~1", "/").replace("~0", "~")


def parse(pointer: object) -> list[str] | None:
    """The reference tokens of ``pointer``, or None when it is not a pointer to a member
    (not a string, or not starting with ``/``; the whole-document pointer ``""`` is
    refused too: masking the whole input would hide what was decided)."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return None
    return [unescape(token) for token in pointer[1:].split("/")]


def _index(node: Any, token: str) -> str | int | None:
    if isinstance(node, dict):
        return token if token in node else None
    if isinstance(node, list) and _ARRAY_INDEX.fullmatch(token) and int(token) < len(node):
        return int(token)
    return None


def _mask_at(node: Any, tokens: list[str], depth: int, replacement: Any) -> tuple[Any, bool]:
    """(``node`` with the value at ``tokens[depth:]`` replaced, whether it existed).
    Copy on write: only the containers on the path are copied."""
    index = _index(node, tokens[depth])
    if index is None:
        return node, False
    if depth == len(tokens) - 1:
        child: Any = replacement
    else:
        child, hit = _mask_at(node[index], tokens, depth + 1, replacement)
        if not hit:
            return node, False
    copied: Any = dict(node) if isinstance(node, dict) else list(node)
    copied[index] = child
    return copied, True


def mask(document: Any, pointers: Iterable[object] | None, replacement: Any = "****") -> tuple[Any, list[str]]:
    """``document`` with the value at each pointer replaced, and the pointers that hit.

    ``document`` itself is never changed; containers on a masked path are copied, the rest
    is shared (the same object comes back when nothing was masked).
    """
    result = document
    hits: list[str] = []
    if pointers is None or isinstance(pointers, str | bytes) or not isinstance(pointers, Iterable):
        return result, hits
    for pointer in pointers:
        tokens = parse(pointer)
        if tokens is None:
            continue
        result, hit = _mask_at(result, tokens, 0, replacement)
        if hit:
            hits.append(str(pointer))
    return result, hits


def masked(document: Any, pointers: Iterable[object] | None, replacement: Any = "****") -> Any:
    """``document`` with the value at each of ``pointers`` replaced (see ``mask``)."""
    return mask(document, pointers, replacement)[0]
