"""Reading the JSON bodies OPA uploads: bounded in size before and after gzip, and parsed
into values every database accepts (PostgreSQL's jsonb refuses NaN, \\u0000 and lone
surrogates, which Python's json module lets through)."""

from __future__ import annotations

import json
import math
import zlib

from controlplane.core.exceptions import InvalidInput, PayloadTooLarge, UnsupportedEncoding

__all__ = [
    "PayloadTooLarge", "UnsupportedEncoding", "decode_body", "inflate_gzip", "parse_json", "parse_json_values_later",
    "read_body",
]


def read_body(request, *, max_bytes: int) -> bytes:
    """The raw request body, refused beyond `max_bytes` before more than that is read."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    try:
        declared_length = int(declared)
    except ValueError:
        declared_length = 0
    if declared_length > max_bytes:
        raise PayloadTooLarge(f"the request body is {declared_length} bytes; the limit is {max_bytes} bytes")
    body = request.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes")
    return body


def decode_body(body: bytes, content_encoding: str, *, max_inflated_bytes: int) -> bytes:
    """Undo `Content-Encoding` (gzip, as OPA sends decision logs, or none)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > max_inflated_bytes:
            raise PayloadTooLarge(f"the request body is over the limit of {max_inflated_bytes} bytes")
        return body
    if encoding in ("gzip", "x-gzip"):
        return inflate_gzip(body, max_bytes=max_inflated_bytes)
    raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} is not supported; send gzip or none")


def inflate_gzip(data: bytes, *, max_bytes: int) -> bytes:
    """Gunzip with a ceiling on the output, so a gzip bomb costs at most `max_bytes`.
    Concatenated gzip members are read in turn, as Go's gzip reader does."""
    out = bytearray()
    remaining = data
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(remaining, max_bytes - len(out) + 1)
        except zlib.error as exc:
            raise InvalidInput(f"the body is not valid gzip ({exc})", field="body") from exc
        if len(out) > max_bytes:
            raise PayloadTooLarge(f"the body inflates to more than the limit of {max_bytes} bytes")
        if not inflater.eof:
            raise InvalidInput("the gzip stream is truncated", field="body")
        remaining = inflater.unused_data
        if not remaining:
            return bytes(out)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"number {literal[:40]} is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, *, field: str = "body"):
    """Parse UTF-8 JSON into values that store cleanly, or raise InvalidInput naming `field`."""
    text, value = _loads(raw, field, parse_float=_finite_float, parse_constant=_refuse_constant)
    if "\\u" in text:  # only escapes can produce NUL or lone surrogates
        _check_strings(value, field)
    return value


def parse_json_values_later(raw: bytes, *, field: str = "body"):
    """Parse UTF-8 JSON whose values are judged one by one afterwards (decision log events):
    NaN, 1e400, U+0000 and lone surrogates are let through here, so one bad event never
    costs the others their place. Only a body that is not JSON at all is refused."""
    return _loads(raw, field)[1]


def _loads(raw: bytes, field: str, **options) -> tuple[str, object]:
    """(text, value) of a UTF-8 JSON body; InvalidInput naming `field` when it is not one."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 (byte {exc.start})", field=field) from exc
    try:
        return text, json.loads(text, **options)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field=field
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"not acceptable JSON: {exc}"[:300], field=field) from exc


def _check_strings(value, field: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, field)
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            _check_string(item, field)


def _check_string(text: str, field: str) -> None:
    if "\x00" in text:
        raise InvalidInput("strings must not contain the NUL character (\\u0000)", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("strings must not contain unpaired UTF-16 surrogates", field=field) from exc
