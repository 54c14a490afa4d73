"""Constants, errors and OPA's canonical JSON and file digests for bundles."""


from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents_sdk.errors import WardenError

SIGNATURES_FILE = ".signatures.json"
MANIFEST_FILE = ".manifest"
# Only this exact Content-Type on a 200 means the server supports long polling (OPA's rule).
LONG_POLL_CONTENT_TYPE = "application/vnd.openpolicyagent.bundles"
# OPA hashes these files (by base name) as canonical JSON; every other file as raw bytes.
STRUCTURED_BASENAMES = frozenset({"data.json", "data.yaml", ".manifest"})
# Hash names exactly as OPA spells them in the signature payload.
HASH_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "MD5": hashlib.md5,
    "SHA-1": hashlib.sha1,
    "SHA-224": hashlib.sha224,
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
    "SHA-512-224": lambda: hashlib.new("sha512_224"),
    "SHA-512-256": lambda: hashlib.new("sha512_256"),
}
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"}
)
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
ZERO_TIME = "0001-01-01T00:00:00Z"  # how OPA's status shows a time that never happened

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_PACKAGE_STATEMENT = re.compile(r"package\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\s*(?:#.*)?)$")


def package_of(source: str) -> str | None:
    """The package a Rego module declares, e.g. "warden.org.finance", or None.

    Rego requires the package to be the module's first statement, so only comments and
    blank lines may come before it: a "package" line later in the text (inside a raw
    string, say) is not the module's package.
    """
    for line in source.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        found = _PACKAGE_STATEMENT.fullmatch(text)
        return found.group(1) if found else None
    return None


# -- errors ----------------------------------------------------------------------------


class BundleError(WardenError):
    """A bundle could not be downloaded, read or activated. ``code`` and ``http_code``
    follow OPA's bundle status (``bundle_error``)."""

    def __init__(self, message: str, *, http_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.http_code = http_code


class BundleVerificationError(BundleError):
    """A bundle's signature or a file's hash did not verify; ``file`` names the file at fault
    (``.signatures.json`` for problems with the JWT itself)."""

    def __init__(self, message: str, *, file: str | None = None):
        super().__init__(message)
        self.file = file


# -- canonical JSON, as OPA hashes it ---------------------------------------------------


class _NumberLiteral(str):
    """A JSON number kept as its literal text: OPA hashes numbers verbatim (json.Number)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _encode_string(value: str) -> str:
    # Go's encoder (SetEscapeHTML(false)) escapes U+2028/U+2029; Python's doesn't.
    return json.dumps(value, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _canonical(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if index:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _canonical(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _canonical(item, out)
        out.append("]")
    elif isinstance(value, _NumberLiteral):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:  # pragma: no cover - json.loads gives nothing else
        raise TypeError(f"unexpected JSON value {value!r}")


def canonical_json(value: Any) -> bytes:
    """A JSON value (as json.loads gives it: no NaN or infinity) in the form OPA hashes
    structured files in: compact, keys sorted, no HTML escaping, U+2028/U+2029 escaped as
    Go's encoder escapes them. Writing data.json and .manifest in this form makes their
    raw bytes what OPA hashes, so `file_digest` need not re-encode them."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def canonical_file_bytes(content: bytes, *, parsed: dict[str, Any] | None = None) -> bytes:
    """The bytes OPA hashes for a structured (JSON) bundle file: compact, keys sorted,
    no HTML escaping, numbers exactly as written. Raises ValueError if it isn't JSON.

    When the file is already canonical and `parsed` is given, its decoded value is left in
    parsed["value"], so a caller loading the file need not decode it again (tens of MB for a
    large registry)."""
    text = content.decode("utf-8", errors="replace").removeprefix("\ufeff")
    # Fast path, in C: a file already in canonical form (every bundle Warden writes) is
    # re-encoded to the same bytes by json; then no number literal was rewritten either, so
    # the literal-keeping walk below would give these bytes too. Anything else takes the walk.
    try:
        value = json.loads(text, parse_constant=_reject_constant)
        fast = canonical_json(value)
    except (ValueError, RecursionError):
        fast = b""
    if fast and fast == content.removeprefix(b"\xef\xbb\xbf"):
        if parsed is not None:
            parsed["value"] = value
        return fast
    value = json.loads(text, parse_int=_NumberLiteral, parse_float=_NumberLiteral, parse_constant=_reject_constant)
    out: list[str] = []
    _canonical(value, out)
    return "".join(out).encode("utf-8")


def file_digest(name: str, content: bytes, algorithm: str = "SHA-256", *, parsed: dict[str, Any] | None = None) -> str:
    """Hex digest of a bundle file as OPA verifies it. Raises ValueError for an unknown
    algorithm or a structured file that isn't JSON. `parsed`: see canonical_file_bytes."""
    try:
        hasher = HASH_ALGORITHMS[algorithm]()
    except KeyError:
        raise ValueError(f"unsupported hashing algorithm: {algorithm}") from None
    if name.rsplit("/", 1)[-1] in STRUCTURED_BASENAMES:
        content = canonical_file_bytes(content, parsed=parsed)
    hasher.update(content)
    return hasher.hexdigest()



def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
