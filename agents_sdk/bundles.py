"""OPA bundles: download, verify, activate and persist them as a real OPA does.

    keys = {"warden": VerificationKey.from_pem("warden", pem)}
    client = BundleClient(
        "http://127.0.0.1:8000/opa", "bundles/prod", token=token,
        keys=keys, signing_keyid="warden", persist_dir="var/bundles/prod",
        long_polling_timeout=30, activate=compile_it,
    )
    client.start()                 # persisted bundle first, then the control plane, then refreshes
    client.wait_until_ready(5.0)   # True once a verified bundle is active

The wire protocol and the verification rules are OPA's (docs: management-bundles):
`GET <service url>/<resource>` with `Authorization: Bearer`, `If-None-Match: <etag>`
and `Prefer: modes=snapshot,delta[;wait=N]`; a `.signatures.json` with exactly one JWT
whose payload lists every other file of the tar with its SHA-256 (canonical JSON for
`data.json` and `.manifest`, raw bytes otherwise). This verifier is written from that
specification, independently of the control plane's signer.

A bundle that fails to download, verify or activate never replaces the active one.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import io
import json
import logging
import os
import random
import re
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agents_sdk import __version__
from agents_sdk.errors import WardenError

logger = logging.getLogger(__name__)

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


# -- keys and verification -------------------------------------------------------------


@dataclass(frozen=True)
class VerificationKey:
    """One entry of OPA's `keys`: a public key (PKIX PEM) or, for HS*, a shared secret."""

    key_id: str
    algorithm: str = "RS256"
    key: str = field(default="", repr=False)
    scope: str = ""

    def __post_init__(self) -> None:
        if self.algorithm not in SIGNING_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {self.algorithm!r} for key {self.key_id!r}")
        if not self.key:
            raise ValueError(f"key {self.key_id!r} has no key material")
        if not self.algorithm.startswith("HS"):
            self._public_key()  # refuse a bad PEM at configuration time, not at the first bundle

    @classmethod
    def from_pem(cls, key_id: str, pem: str | bytes, algorithm: str = "RS256", scope: str = "") -> VerificationKey:
        """A key from a PEM public key (``-----BEGIN PUBLIC KEY-----``). Raises ValueError if it isn't one."""
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        return cls(key_id=key_id, algorithm=algorithm, key=text, scope=scope)

    def _public_key(self):
        try:
            return serialization.load_pem_public_key(self.key.encode("utf-8"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"key {self.key_id!r} is not a PEM public key: {exc}") from exc

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's JWS signature (RFC 7518) of ``signing_input``."""
        digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[self.algorithm[2:]]
        family = self.algorithm[:2]
        if family == "HS":
            expected = hmac.new(self.key.encode("utf-8"), signing_input, digest.name).digest()
            return hmac.compare_digest(expected, signature)
        public_key = self._public_key()
        try:
            if family in ("RS", "PS"):
                if not isinstance(public_key, rsa.RSAPublicKey):
                    return False
                pad = (
                    padding.PKCS1v15()
                    if family == "RS"
                    else padding.PSS(mgf=padding.MGF1(digest()), salt_length=padding.PSS.AUTO)
                )
                public_key.verify(signature, signing_input, pad, digest())
            else:
                if not isinstance(public_key, ec.EllipticCurvePublicKey):
                    return False
                # JWS carries ES* signatures as fixed-width R || S, not DER.
                size = (public_key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest()))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class VerificationConfig:
    """OPA's `bundles[x].signing` with the top-level `keys`.

    ``keyid`` set makes a signature mandatory and selects the key (it wins over the JWT's
    ``kid``, as in OPA). Without it, a signed bundle is verified with the key its ``kid``
    names, and an unsigned one is accepted (OPA's rule) unless ``require_signature``.
    """

    keys: Mapping[str, VerificationKey]
    keyid: str = ""
    scope: str = ""
    exclude_files: Sequence[str] = ()
    require_signature: bool = False

    def __post_init__(self) -> None:
        if self.keyid and self.keyid not in self.keys:
            raise ValueError(f"signing key id {self.keyid!r} is not among the configured keys {sorted(self.keys)}")


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


def canonical_file_bytes(content: bytes) -> bytes:
    """The bytes OPA hashes for a structured (JSON) bundle file: compact, keys sorted,
    no HTML escaping, numbers exactly as written. Raises ValueError if it isn't JSON."""
    text = content.decode("utf-8", errors="replace").removeprefix("\ufeff")
    value = json.loads(text, parse_int=_NumberLiteral, parse_float=_NumberLiteral, parse_constant=_reject_constant)
    out: list[str] = []
    _canonical(value, out)
    return "".join(out).encode("utf-8")


def file_digest(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    """Hex digest of a bundle file as OPA verifies it. Raises ValueError for an unknown
    algorithm or a structured file that isn't JSON."""
    try:
        hasher = HASH_ALGORITHMS[algorithm]()
    except KeyError:
        raise ValueError(f"unsupported hashing algorithm: {algorithm}") from None
    if name.rsplit("/", 1)[-1] in STRUCTURED_BASENAMES:
        content = canonical_file_bytes(content)
    hasher.update(content)
    return hasher.hexdigest()


# -- reading a bundle -------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest, Rego modules ({path: source}) and merged data.

    ``archive`` holds the exact bytes received (what is persisted), ``etag`` the ETag
    they came with.
    """

    revision: str
    roots: tuple[str, ...]
    manifest: dict[str, Any]
    modules: dict[str, str]
    data: dict[str, Any]
    files: tuple[str, ...]
    archive: bytes = field(repr=False)
    etag: str = ""
    signed_by: str | None = None

    @property
    def size(self) -> int:
        return len(self.archive)


def read_archive(
    archive: bytes,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
) -> dict[str, bytes]:
    """The regular files of a bundle tar.gz, names without their leading ``/``.

    Raises BundleError for an archive that is not a tar.gz, is too large, or holds a path
    that is unsafe (``..``) or repeated.
    """
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                if not member.isreg():
                    continue  # OPA reads regular files only
                name = member.name.removeprefix("/")
                if not name or ".." in name.split("/") or name.startswith("/"):
                    raise BundleError(f"bundle file {member.name!r} has an unsafe path")
                if name in files:
                    raise BundleError(f"bundle file {name!r} appears twice in the archive")
                if member.size > max_file_bytes:
                    raise BundleError(f"bundle file {name!r} size ({member.size} bytes) exceeds {max_file_bytes}")
                total += member.size
                if total > max_archive_bytes:
                    raise BundleError(f"bundle is larger than {max_archive_bytes} bytes unpacked")
                handle = tar.extractfile(member)
                files[name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"bundle archive is not a readable tar.gz: {exc}") from exc
    if not files:
        raise BundleError("bundle archive holds no files")
    return files


def _b64url_decode(part: str, what: str) -> bytes:
    # OPA decodes with base64.RawURLEncoding: unpadded URL-safe base64 only.
    if "=" in part or not re.fullmatch(r"[A-Za-z0-9_-]*", part):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: the JWT {what} is not unpadded base64url", file=SIGNATURES_FILE)
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: the JWT {what} is not base64url: {exc}", file=SIGNATURES_FILE) from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: {what} is not JSON: {exc}", file=SIGNATURES_FILE) from exc
    if not isinstance(value, dict):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: {what} is not a JSON object", file=SIGNATURES_FILE)
    return value


def verify_signatures(files: Mapping[str, bytes], config: VerificationConfig) -> str | None:
    """Check ``.signatures.json`` against the bundle's files; return the key id used
    (``None`` for an unsigned bundle OPA would accept).

    Raises BundleVerificationError naming the file at fault: no or several JWTs, a bad
    signature, a header ``alg`` other than the key's, an unknown key, a scope mismatch,
    a file missing from the signature, a listed file missing from the archive, or a hash
    that does not match.
    """
    raw = files.get(SIGNATURES_FILE)
    if raw is None:
        if config.keyid or config.require_signature:
            raise BundleVerificationError(f"bundle missing {SIGNATURES_FILE} file", file=SIGNATURES_FILE)
        return None
    document = _json_object(raw, "the file")
    tokens = document.get("signatures")
    if not isinstance(tokens, list) or not tokens:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: missing JWT (expected exactly one)", file=SIGNATURES_FILE)
    if len(tokens) > 1:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: multiple JWTs not supported (expected exactly one)", file=SIGNATURES_FILE
        )
    if document.get("plugin"):
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: custom verification plugin {document['plugin']!r} is not supported", file=SIGNATURES_FILE
        )
    token = tokens[0]
    if not isinstance(token, str) or token.count(".") != 2:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: the JWT is not a compact JWS", file=SIGNATURES_FILE)
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = _json_object(_b64url_decode(header_b64, "header"), "the JWT header")
    payload = _json_object(_b64url_decode(payload_b64, "payload"), "the JWT payload")
    signature = _b64url_decode(signature_b64, "signature")

    # Key selection as OPA does it: configured keyid, else the header's kid, else the payload's.
    key_id = config.keyid or header.get("kid") or payload.get("keyid") or ""
    if not isinstance(key_id, str) or not key_id:
        raise BundleVerificationError(f"{SIGNATURES_FILE}: verification key ID is empty", file=SIGNATURES_FILE)
    key = config.keys.get(key_id)
    if key is None:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: verification key corresponding to ID {key_id} not found", file=SIGNATURES_FILE
        )
    if header.get("alg") != key.algorithm:
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: JWT algorithm {header.get('alg')!r} is not the configured {key.algorithm!r} "
            f"of key {key_id}",
            file=SIGNATURES_FILE,
        )
    if not key.verify(f"{header_b64}.{payload_b64}".encode("ascii"), signature):
        raise BundleVerificationError(
            f"{SIGNATURES_FILE}: the JWT signature does not verify with key {key_id}", file=SIGNATURES_FILE
        )
    for claim in ("keyid", "scope", "iss"):
        if claim in payload and not isinstance(payload[claim], str):
            raise BundleVerificationError(f"{SIGNATURES_FILE}: JWT claim {claim!r} must be a string", file=SIGNATURES_FILE)
    if "iat" in payload and (not isinstance(payload["iat"], int) or isinstance(payload["iat"], bool)):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: JWT claim 'iat' must be an integer", file=SIGNATURES_FILE)
    if payload.get("scope", "") != (config.scope or key.scope):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: scope mismatch", file=SIGNATURES_FILE)

    listed = payload.get("files")
    if not isinstance(listed, list):
        raise BundleVerificationError(f"{SIGNATURES_FILE}: the JWT payload has no files list", file=SIGNATURES_FILE)
    expected: dict[str, tuple[str, str]] = {}
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("hash"), str):
            raise BundleVerificationError(f"{SIGNATURES_FILE}: a files entry lacks name or hash", file=SIGNATURES_FILE)
        name = entry["name"]
        if name in expected:
            raise BundleVerificationError(f"{name}: listed twice in the bundle signature", file=name)
        algorithm = entry.get("algorithm")
        if not algorithm:
            raise BundleVerificationError(f"no hashing algorithm provided for file {name}", file=name)
        if algorithm not in HASH_ALGORITHMS:
            raise BundleVerificationError(f"{name}: unsupported hashing algorithm: {algorithm}", file=name)
        expected[name] = (entry["hash"].lower(), algorithm)

    for name in sorted(files):
        if name == SIGNATURES_FILE or _excluded(name, config.exclude_files):
            expected.pop(name, None)
            continue
        if name not in expected:
            raise BundleVerificationError(f"file {name} not included in bundle signature", file=name)
        want, algorithm = expected.pop(name)
        try:
            got = file_digest(name, files[name], algorithm)
        except ValueError as exc:
            raise BundleVerificationError(f"{name}: cannot hash: {exc}", file=name) from exc
        if not hmac.compare_digest(got, want):
            raise BundleVerificationError(f"{name}: digest mismatch (want: {want}, got: {got})", file=name)
    if expected:
        missing = sorted(expected)
        raise BundleVerificationError(
            f"file(s) {missing} specified in bundle signatures but not found in the target bundle", file=missing[0]
        )
    return key_id


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _roots_overlap(a: str, b: str) -> bool:
    return a == "" or b == "" or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _path_in_roots(path: str, roots: Sequence[str]) -> bool:
    return any(root == "" or path == root or path.startswith(root + "/") for root in roots)


def _check_data_roots(value: Any, path: str, roots: Sequence[str]) -> None:
    if _path_in_roots(path, roots):
        return
    if isinstance(value, dict) and any(root.startswith(path + "/") or path == "" for root in roots):
        for key, child in value.items():
            _check_data_roots(child, f"{path}/{key}" if path else key, roots)
        return
    raise BundleError(f"manifest roots {list(roots)} do not permit data at path '/{path}'")


def parse_bundle(
    archive: bytes,
    *,
    etag: str = "",
    verification: VerificationConfig | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Bundle:
    """Read and verify a bundle archive; return it ready to activate.

    Raises BundleVerificationError if its signature does not verify (see
    ``verify_signatures``), BundleError if it is unreadable, its manifest or data is not
    valid, or a module or data path lies outside the manifest's roots.
    """
    files = read_archive(archive, max_file_bytes=max_file_bytes)
    signed_by = None
    if verification is not None:
        signed_by = verify_signatures(files, verification)
    elif SIGNATURES_FILE in files:
        # OPA: a signed bundle with no verification configured is refused.
        raise BundleVerificationError("verification key not provided", file=SIGNATURES_FILE)

    manifest: dict[str, Any] = {}
    if MANIFEST_FILE in files:
        try:
            manifest = json.loads(files[MANIFEST_FILE].decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleError(f"bundle load failed on manifest decode: {exc}") from exc
        if not isinstance(manifest, dict):
            raise BundleError("bundle load failed on manifest decode: not a JSON object")
    revision = manifest.get("revision", "")
    if not isinstance(revision, str):
        raise BundleError("bundle load failed on manifest decode: revision must be a string")
    raw_roots = manifest.get("roots", [""])
    if not isinstance(raw_roots, list) or not all(isinstance(r, str) for r in raw_roots):
        raise BundleError("bundle load failed on manifest decode: roots must be a list of strings")
    roots = tuple(r.strip("/") for r in raw_roots)
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            if _roots_overlap(a, b):
                raise BundleError(f"manifest has overlapped roots: '{a}' and '{b}'")
    if manifest.get("rego_version", 1) not in (1,):
        raise BundleError("only Rego v1 bundles (rego_version 1) are supported")

    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in sorted(files.items()):
        base = name.rsplit("/", 1)[-1]
        if name == SIGNATURES_FILE or name == MANIFEST_FILE:
            continue
        if name.endswith(".rego"):
            try:
                source = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BundleError(f"{name}: not UTF-8 text") from exc
            match = _PACKAGE.search(source)
            if match and not _path_in_roots(match.group(1).replace(".", "/"), roots):
                raise BundleError(
                    f"manifest roots {list(roots)} do not permit 'package {match.group(1)}' in module '{name}'"
                )
            modules[name] = source
        elif base == "data.json":
            try:
                value = json.loads(content.decode("utf-8-sig"), parse_constant=_reject_constant)
            except (UnicodeDecodeError, ValueError) as exc:
                raise BundleError(f"{name}: not valid JSON: {exc}") from exc
            directory = [part for part in name.rsplit("/", 1)[0].split("/") if part] if "/" in name else []
            if not directory and not isinstance(value, dict):
                raise BundleError(f"{name}: root value must be object")
            _insert(data, directory, value, name)
        elif base in ("data.yaml", "data.yml", "policy.wasm", "plan.json", "patch.json"):
            raise BundleError(f"{name}: this kind of bundle file is not supported by the Warden SDK (use data.json and .rego)")
    _check_data_roots(data, "", roots)
    return Bundle(
        revision=revision,
        roots=roots,
        manifest=manifest,
        modules=modules,
        data=data,
        files=tuple(sorted(files)),
        archive=archive,
        etag=etag,
        signed_by=signed_by,
    )


def _insert(data: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BundleError(f"failed to insert data file from path {name}")
    if not path:
        _merge(data, value, name)
        return
    last = path[-1]
    if last in node and isinstance(node[last], dict) and isinstance(value, dict):
        _merge(node[last], value, name)
    elif last in node:
        raise BundleError(f"failed to insert data file from path {name}")
    else:
        node[last] = value


def _merge(target: dict[str, Any], value: dict[str, Any], name: str) -> None:
    for key, item in value.items():
        if key in target:
            if isinstance(target[key], dict) and isinstance(item, dict):
                _merge(target[key], item, name)
            else:
                raise BundleError(f"failed to insert data file from path {name}")
        else:
            target[key] = item


# -- persistence ------------------------------------------------------------------------


class BundleStore:
    """The last good bundle on disk: ``bundle.tar.gz`` and ``bundle.json`` (its ETag and
    SHA-256), each written to a temporary file and renamed, so a crash leaves the old or
    the new file, never half of one."""

    ARCHIVE = "bundle.tar.gz"
    METADATA = "bundle.json"

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def save(self, bundle: Bundle) -> None:
        """Write ``bundle``'s archive and ETag. Raises OSError if the directory is not writable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "etag": bundle.etag,
            "revision": bundle.revision,
            "sha256": hashlib.sha256(bundle.archive).hexdigest(),
            "saved_at": _now(),
        }
        _write_atomically(self.directory / self.ARCHIVE, bundle.archive)
        _write_atomically(self.directory / self.METADATA, json.dumps(metadata, sort_keys=True).encode("utf-8"))

    def load(self) -> tuple[bytes, str] | None:
        """The persisted archive and its ETag, or None when nothing was saved. The ETag is
        dropped ("") if the metadata does not describe this archive."""
        try:
            archive = (self.directory / self.ARCHIVE).read_bytes()
        except FileNotFoundError:
            return None
        etag = ""
        try:
            metadata = json.loads((self.directory / self.METADATA).read_text("utf-8"))
            if metadata.get("sha256") == hashlib.sha256(archive).hexdigest():
                etag = str(metadata.get("etag") or "")
        except (OSError, ValueError, AttributeError):
            pass
        return archive, etag


def _write_atomically(path: Path, content: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


# -- the client -------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def backoff_delay(retry: int, max_delay: float, *, base: float = 0.1, factor: float = 1.6) -> float:
    """OPA's DefaultBackoff: 0 for the first retry, then base·factor^n ±20 %, capped."""
    if retry <= 0:
        return 0.0
    delay = base * factor**retry
    delay *= 1 + random.uniform(-0.2, 0.2)
    return min(delay, max_delay)


@dataclass
class BundleStatus:
    """One bundle's state, in the shape of OPA's status API (``bundles.<name>``)."""

    name: str
    active_revision: str = ""
    last_request: str = ZERO_TIME
    last_successful_request: str = ZERO_TIME
    last_successful_download: str = ZERO_TIME
    last_successful_activation: str = ZERO_TIME
    size: int = 0
    code: str = ""
    message: str = ""
    http_code: int | None = None
    source: str = ""  # "control plane" or "persisted": where the active bundle came from

    def as_opa(self) -> dict[str, Any]:
        """The status as OPA reports it (omitempty fields left out)."""
        status: dict[str, Any] = {
            "name": self.name,
            "last_request": self.last_request,
            "last_successful_request": self.last_successful_request,
            "last_successful_download": self.last_successful_download,
            "last_successful_activation": self.last_successful_activation,
        }
        if self.active_revision:
            status["active_revision"] = self.active_revision
            status["type"] = "snapshot"
        if self.size:
            status["size"] = self.size
        if self.code:
            status["code"] = self.code
            status["message"] = self.message
        if self.http_code:
            status["http_code"] = self.http_code
        return status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Never carry the bearer token to another host on a redirect.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class BundleClient:
    """Keeps one OPA bundle active: downloaded, verified, activated, persisted, refreshed.

    ``activate(bundle)`` is called before a new bundle becomes active (for example to
    compile it); if it raises, the bundle is refused and the previous one stays. Once
    ``start`` is called, a daemon thread long-polls (``long_polling_timeout`` seconds,
    OPA's ``polling.long_polling_timeout_seconds``) or polls every
    ``min_delay..max_delay`` seconds, backing off after errors. The active bundle is
    never replaced by one that fails.
    """

    def __init__(
        self,
        service_url: str,
        resource: str,
        *,
        name: str | None = None,
        token: str | None = None,
        token_path: str | os.PathLike[str] | None = None,
        scheme: str = "Bearer",
        headers: Mapping[str, str] | None = None,
        verification: VerificationConfig | None = None,
        persist_dir: str | os.PathLike[str] | None = None,
        long_polling_timeout: int | None = None,
        min_delay: float = 60.0,
        max_delay: float = 120.0,
        response_header_timeout: float = 10.0,
        activate: Callable[[Bundle], None] | None = None,
        on_status: Callable[[BundleStatus], None] | None = None,
    ):
        if not service_url.startswith(("http://", "https://")):
            raise ValueError(f"bundle service URL {service_url!r} must start with http:// or https://")
        if token and token_path:
            raise ValueError("give a token or a token_path, not both")
        if long_polling_timeout is not None and long_polling_timeout < 1:
            raise ValueError("long_polling_timeout must be at least 1 second")
        if max_delay < min_delay:
            raise ValueError("max polling delay must be >= min polling delay")
        # OPA joins with exactly one slash, trimming slashes around the resource.
        self.url = service_url.rstrip("/") + "/" + resource.strip("/")
        self.name = name or resource.strip("/").rsplit("/", 1)[-1]
        self._token = token
        self._token_path = token_path
        self._scheme = scheme
        self._headers = dict(headers or {})
        self.verification = verification
        self.store = BundleStore(persist_dir) if persist_dir is not None else None
        self.long_polling_timeout = long_polling_timeout
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.response_header_timeout = response_header_timeout
        self._activate = activate
        self._on_status = on_status
        self._lock = threading.Lock()
        self._active: Bundle | None = None
        self._etag = ""
        self._long_polling = long_polling_timeout is not None
        self._status = BundleStatus(name=self.name)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Bundle], None]] = []

    # -- state ----------------------------------------------------------------------

    @property
    def active(self) -> Bundle | None:
        """The active bundle, or None before the first activation."""
        return self._active

    @property
    def etag(self) -> str:
        return self._etag

    def status(self) -> BundleStatus:
        """A copy of the bundle's status (active revision, last download/activation, last error)."""
        with self._lock:
            return BundleStatus(**self._status.__dict__)

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until a bundle is active; True if one is, False on timeout."""
        return self._ready.wait(timeout)

    def set_activator(self, activate: Callable[[Bundle], None] | None) -> None:
        """Set the hook that must accept a bundle before it becomes active (it raises to refuse)."""
        self._activate = activate

    def add_listener(self, listener: Callable[[Bundle], None]) -> None:
        """Call ``listener(bundle)`` after each activation (errors are logged, not raised)."""
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> BundleClient:
        """Load the persisted bundle (if any), then refresh from the control plane in a
        background thread. Returns self. Raises nothing: errors land in ``status()``."""
        if self._thread is not None:
            return self
        self.load_persisted()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"warden-bundle-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop refreshing. A long poll in flight is abandoned (the thread is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def load_persisted(self) -> Bundle | None:
        """Activate the bundle persisted by an earlier run, verifying it again; return it,
        or None if there is none or it fails (the failure is in ``status()``)."""
        if self.store is None or self._active is not None:
            return None
        try:
            saved = self.store.load()
        except OSError as exc:
            self._record_error(f"cannot read persisted bundle: {exc}")
            return None
        if saved is None:
            return None
        archive, etag = saved
        try:
            bundle = parse_bundle(archive, etag=etag, verification=self.verification)
            self._install(bundle, source="persisted", persist=False)
        except BundleError as exc:
            self._record_error(f"persisted bundle refused: {exc.message}")
            return None
        logger.info("activated persisted bundle %s revision %s", self.name, bundle.revision)
        return bundle

    def poll_once(self, *, wait: int | None = None) -> bool:
        """One request to the bundle service; True if a new bundle was activated.

        ``wait`` asks the server to hold the request (long polling). Raises BundleError
        (BundleVerificationError for a bad signature) when the download, verification or
        activation fails; the previous bundle stays active.
        """
        request = urllib.request.Request(self.url, method="GET")
        for key, value in self._headers.items():
            request.add_header(key, value)
        token = self._bearer_token()
        if token:
            request.add_header("Authorization", f"{self._scheme} {token}")
        if self._etag:
            request.add_header("If-None-Match", self._etag)
        request.add_header("Prefer", "modes=snapshot,delta" + (f";wait={wait}" if wait else ""))
        request.add_header("User-Agent", f"warden-agents-sdk/{__version__}")
        timeout = (wait + self.response_header_timeout) if wait else self.response_header_timeout
        with self._lock:
            self._status.last_request = _now()
        try:
            with _opener.open(request, timeout=timeout) as response:
                status = response.status
                body = response.read()
                etag = response.headers.get("ETag", "") or ""
                content_type = response.headers.get("Content-Type", "") or ""
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                etag = exc.headers.get("ETag", "") or ""
                self._not_modified(etag)
                return False
            reason = exc.reason if isinstance(exc.reason, str) else str(exc.reason)
            raise BundleError(f"server replied with {reason} ({exc.code}) for GET {self.url}", http_code=exc.code) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BundleError(f"cannot reach the bundle service at {self.url}: {reason}") from exc
        if status == 304:
            self._not_modified(etag)
            return False
        if self._stop.is_set():
            return False  # stopped while the request was held: activate nothing more
        if status != 200:
            raise BundleError(f"server replied with HTTP {status} for GET {self.url}", http_code=status)
        with self._lock:
            self._status.last_successful_request = self._status.last_successful_download = _now()
        # OPA keeps long polling only while 200s carry exactly this Content-Type.
        if self.long_polling_timeout is not None:
            self._long_polling = content_type == LONG_POLL_CONTENT_TYPE
        bundle = parse_bundle(body, etag=etag, verification=self.verification)
        self._install(bundle, source="control plane", persist=True)
        return True

    # -- internals ------------------------------------------------------------------

    def _bearer_token(self) -> str | None:
        if self._token_path is not None:
            # Re-read on every request, as OPA does, so a rotated token is picked up.
            try:
                return Path(self._token_path).read_text("utf-8").strip()
            except OSError as exc:
                raise BundleError(f"cannot read bearer token file {self._token_path}: {exc}") from exc
        return self._token

    def _not_modified(self, etag: str) -> None:
        with self._lock:
            if etag:
                self._etag = etag
            self._status.last_successful_request = _now()
            self._status.code = self._status.message = ""
            self._status.http_code = None
        self._notify_status()

    def _install(self, bundle: Bundle, *, source: str, persist: bool) -> None:
        if self._activate is not None:
            try:
                self._activate(bundle)
            except BundleError:
                raise
            except Exception as exc:  # the activation hook (e.g. the Rego compiler) refused it
                raise BundleError(f"bundle revision {bundle.revision!r} could not be activated: {exc}") from exc
        with self._lock:
            self._active = bundle
            self._etag = bundle.etag
            self._status.active_revision = bundle.revision
            self._status.last_successful_activation = _now()
            self._status.size = bundle.size
            self._status.code = self._status.message = ""
            self._status.http_code = None
            self._status.source = source
        self._ready.set()
        if persist and self.store is not None:
            try:
                self.store.save(bundle)
            except OSError as exc:
                logger.warning("could not persist bundle %s to %s: %s", self.name, self.store.directory, exc)
        for listener in list(self._listeners):
            try:
                listener(bundle)
            except Exception:
                logger.exception("bundle listener failed")
        self._notify_status()

    def _record_error(self, message: str, http_code: int | None = None) -> None:
        with self._lock:
            self._status.code = "bundle_error"
            self._status.message = message
            self._status.http_code = http_code
        self._notify_status()

    def _notify_status(self) -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status())
            except Exception:
                logger.exception("bundle status callback failed")

    def _run(self) -> None:
        retry = 0
        while not self._stop.is_set():
            wait = self.long_polling_timeout if self._long_polling else None
            try:
                self.poll_once(wait=wait)
            except BundleError as exc:
                self._record_error(exc.message, exc.http_code)
                logger.warning("bundle %s: %s", self.name, exc.message)
                delay = backoff_delay(retry, self.max_delay)
                retry += 1
            except Exception as exc:  # never let the refresher die
                self._record_error(f"unexpected error: {exc}")
                logger.exception("bundle %s refresh failed", self.name)
                delay = backoff_delay(retry, self.max_delay)
                retry += 1
            else:
                retry = 0
                # A long poll answers when something changed or the wait ended: ask again at once.
                delay = 0.0 if self._long_polling else random.uniform(self.min_delay, self.max_delay)
            if delay:
                self._stop.wait(delay)
