"""Rows for PostgreSQL's `COPY … FROM STDIN` in its text format, built as bytes.

psycopg's `Copy.write_row` adapts each value with a dumper found by type, then escapes it:
about a third of the worker's cost of storing an event. The event columns are few and
their types known, so a row is one f-string here. The text format escapes exactly four
characters inside a value (backslash, tab, newline, carriage return: COPY's documentation,
"File Formats"); a value cannot hold U+0000, which is refused with psycopg's own error.
`tests/audit/test_copy_text.py` stores hostile values both ways and compares the rows.
"""

from __future__ import annotations

import re

from django.db import DataError

# What COPY's text format escapes in a value, and U+0000, which no text column can hold.
_SPECIAL = re.compile("[\\\\\t\n\r\x00]").search
NUL_MESSAGE = "PostgreSQL text fields cannot contain NUL (0x00) bytes"  # psycopg's wording


def plain(value: str) -> bool:
    """Whether `value` (or several values joined) needs no escaping and holds no U+0000."""
    return _SPECIAL(value) is None


def text(value: str) -> str:
    """`value` as a field of a COPY text row. Raises DataError for U+0000 (as psycopg does)."""
    if _SPECIAL(value) is None:
        return value
    if "\x00" in value:
        raise DataError(NUL_MESSAGE)
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def json_bytes(document: bytes) -> bytes:
    """JSON text (as `json` encodes it, UTF-8) as a field: JSON escapes every control
    character, so of COPY's four only the backslash can occur, and U+0000 only as `\\u0000`
    (which jsonb refuses, as it refuses it from psycopg)."""
    return document.replace(b"\\", b"\\\\")


def bytea(value: bytes) -> str:
    """A bytea field: the hex form `\\x…` with its backslash escaped for COPY."""
    return "\\\\x" + value.hex()


# The bytes a bytea field sent as is must not hold, as byte values (see literal_bytea).
_BACKSLASH, _TAB, _NEWLINE, _RETURN, _NUL = b"\\\t\n\r\x00"


def literal_bytea(value: bytes) -> bool:
    """Whether `value` may be a bytea field as it is: bytea's escape input format takes every
    byte but the backslash as itself, and COPY's text format every ASCII byte but U+0000,
    tab, newline and carriage return. A sealed record (a Fernet token: base64url text) always
    is, and is then sent as its own bytes instead of twice as many hex digits (`bytea`)."""
    # Byte values, not one-byte strings: `b"\\" in value` first tries the needle as an int and
    # raises and clears a TypeError each time (about 1,800 instructions).
    return value.isascii() and not (
        _BACKSLASH in value or _TAB in value or _NEWLINE in value or _RETURN in value or _NUL in value
    )
