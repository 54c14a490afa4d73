"""Input hygiene: what may reach the Rego engine, checked before it does.

Tool arguments come from a model's output, parsed by frameworks we do not control:
``json.loads('"\\ud800"')`` gives a lone surrogate, which the engine's native code cannot
take (it crashed the process). So every enforcement point (the Guard, ``warden sidecar``,
``warden mcp-proxy``) walks the input first and turns anything the engine, the signed
records or the audit store cannot take into a fail-closed ``malformed-input`` deny that
names the field (a JSON Pointer) and says what to do:

- strings (and object keys) must be valid Unicode: no lone surrogates;
- no U+0000 (NUL): PostgreSQL, where the audit log is kept, cannot store it in JSON;
- object keys must be strings (``json.dumps`` would silently turn ``1`` into ``"1"``);
- numbers: integers within a signed 64-bit range (the engine clamps larger ones, so
  ``2**64`` would silently compare as ``2**64 - 1``), finite floats (``1e400`` parses as
  ``inf``, which JSON cannot carry); ``bool`` is fine;
- only JSON types (dict, list, tuple, str, int, float, bool, None);
- at most ``max_depth`` nested objects/arrays and about ``max_bytes`` of JSON.

The walk is iterative, so a hostile depth cannot exhaust Python's stack either.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any

from agents_sdk.engine.decision_cache import encode_input
from agents_sdk.pointers import escape

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "encoded_input", "input_problem", "printable"]

DEFAULT_MAX_DEPTH = 64
"""Nested objects/arrays allowed in one decision input (the args start at depth 3)."""
DEFAULT_MAX_BYTES = 1024 * 1024
"""About how much JSON one decision input may be (strings are counted in UTF-8 bytes)."""

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_INF = float("inf")
# The walk counts at most this many bytes per byte of the input's JSON text (a 0 in a list: 21).
_SIZE_PER_TEXT_BYTE = 25


def _int_in_range(text: str) -> int:
    """The decoder's reading of an integer: refuses one outside the signed 64-bit range."""
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"{text} is outside the signed 64-bit range")  # the walk then names it
    return value


# Integers only (rare in arguments) go through Python: everything else is the C scanner's.
_DECODER = json.JSONDecoder(parse_int=_int_in_range)
_SCAN: Any = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # the C scanner where there is one


def printable(text: object, limit: int = 200) -> str:
    """``text`` safe to put in an error message or a signed record: invalid Unicode and NUL
    escaped (``\\ud800``, ``\\x00``), cut to ``limit`` characters."""
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    if len(text) <= limit and text.isprintable():
        return text  # the common case: nothing to escape
    shown = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return shown + ("…" if len(text) > limit else "")


def _string_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(text[exc.start]):04X}), which is not valid Unicode; send UTF-8 text"
    if "\x00" in text:
        return "contains U+0000 (NUL), which the audit log cannot store; remove or encode it"
    return None


def encoded_input(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES) -> str | None:
    """The input's JSON text as the engine takes it (``decision_cache.encode_input``) when the
    text shows ``input_problem`` would find nothing, else None (then walk it for the problem).

    The encoder (in C) refuses what is not JSON, NaN and infinities; the rest is read off the
    text: no lone surrogate (it has no UTF-8 form), no escaped U+0000, fewer brackets than the
    depth limit, few enough bytes, and its decoding (which refuses an integer outside the
    signed 64-bit range) equals the value (a non-string key the encoder turned into a string,
    or a tuple, makes them differ). Every test is conservative: what it passes, the walk passes.
    """
    try:
        text = encode_input(value)
        size = len(text.encode("utf-8"))
        if (
            size * _SIZE_PER_TEXT_BYTE <= max_bytes
            and text.count("[") + text.count("{") <= max_depth
            and "\\u0000" not in text
            and _SCAN(text, 0)[0] == value
        ):
            return text
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        pass
    return None


def input_problem(
    value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES, root: str = ""
) -> str | None:
    """None if ``value`` may be given to the engine, else what is wrong, starting with the
    JSON Pointer of the field (``/action/args/path contains a lone surrogate …``)."""
    size = 0
    # Each entry's location is (parent location, token), turned into a pointer only on a problem.
    stack: list[tuple[Any, Any, int]] = [(value, root, 0)]
    while stack:
        node, at, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if depth >= max_depth:
                return f"{_shown(at)} is nested more than {max_depth} levels deep; flatten the arguments"
            size += 2
            for key, item in node.items():
                if type(key) is not str or not key.isascii() or "\x00" in key:
                    problem = _key_problem(key)
                    if problem is not None:
                        return f"{_shown(at)} {problem}"
                size += len(key) + 4
                # Plain ASCII strings, the usual member, are judged here rather than pushed.
                if type(item) is str and item.isascii() and "\x00" not in item:
                    size += len(item) + 2
                else:
                    stack.append((item, (at, key), depth + 1))
        elif kind is str:
            if not node.isascii():
                problem = _string_problem(node)
                if problem is not None:
                    return f"{_shown(at)} {problem}"
                size += len(node.encode("utf-8", "surrogatepass")) + 2
            elif "\x00" in node:
                return f"{_shown(at)} {_string_problem(node)}"
            else:
                size += len(node) + 2
        elif node is None or kind is bool:
            size += 5
        elif isinstance(node, int) and not isinstance(node, bool):
            if not _INT_MIN <= node <= _INT_MAX:
                return f"{_shown(at)} is an integer outside the signed 64-bit range; send it as a string"
            size += 20
        elif isinstance(node, float):
            if node != node or node in (_INF, -_INF):
                return f"{_shown(at)} is {node!r}, which is not a JSON number (1e400 parses as inf); send a finite number"
            size += 24
        elif isinstance(node, dict):  # a dict subclass: the same checks, on the slower path
            if depth >= max_depth:
                return f"{_shown(at)} is nested more than {max_depth} levels deep; flatten the arguments"
            size += 2
            for key, item in node.items():
                problem = _key_problem(key)
                if problem is not None:
                    return f"{_shown(at)} {problem}"
                size += len(key) + 4
                stack.append((item, (at, key), depth + 1))
        elif isinstance(node, list | tuple):
            if depth >= max_depth:
                return f"{_shown(at)} is nested more than {max_depth} levels deep; flatten the arguments"
            size += 2 + len(node)
            for index, item in enumerate(node):
                if type(item) is str and item.isascii() and "\x00" not in item:
                    size += len(item) + 2
                else:
                    stack.append((item, (at, index), depth + 1))
        elif isinstance(node, str):  # a str subclass
            problem = _string_problem(node)
            if problem is not None:
                return f"{_shown(at)} {problem}"
            size += len(node) + 2
        else:
            return f"{_shown(at)} is a {type(node).__name__}, not a JSON value; pass strings, numbers, lists or objects"
        if size > max_bytes:
            return f"the input is larger than {max_bytes} bytes of JSON; send less (or a reference to it)"
    return None


def _key_problem(key: Any) -> str | None:
    """Why ``key`` cannot be an object key, or None."""
    if not isinstance(key, str):
        return f"has a key of type {type(key).__name__}; object keys must be strings"
    if not key.isascii() or "\x00" in key:
        problem = _string_problem(key)
        if problem is not None:
            return f"has a key that {problem}"
    return None


def _pointer(at: Any) -> str:
    tokens: list[str] = []
    while isinstance(at, tuple):
        at, token = at
        tokens.append(escape(token) if isinstance(token, str) else str(token))
    return str(at) + "".join(f"/{token}" for token in reversed(tokens))


def _shown(at: Any) -> str:
    where = _pointer(at)
    return printable(where) if where else "the input"
