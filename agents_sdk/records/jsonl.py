"""Records as JSONL (one canonical JSON object per line) and the strict JSON parser every
reader of signed bytes uses: two parsers reading different values from the same bytes
would defeat the signature."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from agents_sdk.errors import RecordFormatError
from agents_sdk.records.canonical import canonical_json


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]], *, append: bool = False) -> int:
    """Write records to ``path``, one canonical JSON object per line; return how many.

    Raises CanonicalJSONError if a record holds a non-JSON value (nothing is written
    then), OSError if the file cannot be written.
    """
    lines = [canonical_json(record) + b"\n" for record in records]
    with open(path, "ab" if append else "wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def parse_jsonl_line(line: str | bytes) -> dict[str, Any]:
    """Parse one JSONL line into an object, strictly.

    Rejects NaN/Infinity and objects with duplicate keys: two parsers reading different
    values from the same bytes would defeat the signature. Raises RecordFormatError.
    """
    value = loads_strict(line)
    if not isinstance(value, dict):
        raise RecordFormatError(f"a record must be a JSON object, not {type(value).__name__}")
    return value


# Levels of nesting the parser always accepts, however deep the caller's own stack is:
# json's C parser counts each level against the interpreter's recursion limit from the
# calling frame, so without this the same body parsed in one process and not in another.
JSON_NESTING_HEADROOM = 1_100


def loads_strict(data: str | bytes) -> Any:
    """Parse JSON strictly: duplicate keys, NaN and Infinity refused; nesting too deep for the
    parser is an error, not a crash. Raises RecordFormatError naming the problem."""
    try:
        try:
            return _loads(data)
        except RecursionError:
            if not _make_headroom():
                raise
            return _loads(data)  # the same body, now with JSON_NESTING_HEADROOM levels free
    except RecordFormatError:
        raise
    except RecursionError as exc:
        raise RecordFormatError("not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise RecordFormatError(f"not valid JSON: {exc}") from exc


def _loads(data: str | bytes) -> Any:
    return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


def _make_headroom() -> bool:
    """Raise the recursion limit so JSON_NESTING_HEADROOM levels fit above this frame; False
    if they already did (the body really is nested too deeply)."""
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    needed = depth + JSON_NESTING_HEADROOM
    if sys.getrecursionlimit() >= needed:
        return False
    sys.setrecursionlimit(needed)
    return True


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | RecordFormatError]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSONL file.

    A line that is not a JSON object yields a RecordFormatError (with ``line`` set)
    in place of the record, so a verifier can report it in order. Raises OSError if
    the file cannot be read.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse_jsonl_line(line)
            except RecordFormatError as exc:
                yield number, RecordFormatError(f"line {number}: {exc}", line=number)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every record of a JSONL file, skipping blank lines.

    Raises RecordFormatError naming the first line that is not a JSON object,
    OSError if the file cannot be read.
    """
    records = []
    for _, item in iter_jsonl(path):
        if isinstance(item, RecordFormatError):
            raise item
        records.append(item)
    return records


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RecordFormatError(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise RecordFormatError(f"{name} is not valid JSON")


class JSONLSink:
    """Appends each signed record to a JSON Lines file, flushed per record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self._lock = threading.Lock()

    def __call__(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._file.write(canonical_json(record) + b"\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()
