"""The OPA side of the protocol, written from OPA's source (v1/bundle/{file,hash,verify}.go),
independently of Warden's bundle code: tests verify our bundles the way OPA would.

Nothing here imports controlplane.bundles. Signatures are checked with PyJWT, hashes with
hashlib over our own implementation of OPA's canonical JSON walk.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass

import jwt

# OPA's names for hash algorithms (v1/bundle/hash.go); anything else is refused.
HASHES = {
    "MD5": hashlib.md5, "SHA-1": hashlib.sha1, "SHA-224": hashlib.sha224, "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384, "SHA-512": hashlib.sha512,
    "SHA-512-224": lambda: hashlib.new("sha512_224"), "SHA-512-256": lambda: hashlib.new("sha512_256"),
}
# IsStructuredDoc: these basenames are hashed as canonical JSON, everything else as bytes.
STRUCTURED = {"data.json", "data.yaml", ".manifest"}


class BundleVerificationError(Exception):
    pass


class Number(str):
    """A JSON number kept as its literal text (Go's decoder.UseNumber)."""


def _loads_keeping_numbers(text: str):
    return json.loads(text, parse_int=Number, parse_float=Number, parse_constant=Number)


def _go_string(value: str) -> str:
    """encoding/json string encoding with SetEscapeHTML(false), as OPA's encodePrimitive."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or ch in ("\u2028", "\u2029"):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def opa_canonical(value) -> str:
    """OPA's walk(): objects with keys in byte order, arrays in order, no whitespace,
    numbers verbatim."""
    if isinstance(value, dict):
        # Go sorts strings by bytes; for valid UTF-8 that is code-point order, as Python's.
        return "{" + ",".join(_go_string(k) + ":" + opa_canonical(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(opa_canonical(item) for item in value) + "]"
    if isinstance(value, Number):
        return str.__str__(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return _go_string(value)
    raise TypeError(type(value))


def opa_file_digest(name: str, content: bytes, algorithm: str = "SHA-256") -> str:
    hasher = HASHES[algorithm]()
    if name.rsplit("/", 1)[-1] in STRUCTURED:
        text = content.decode("utf-8")
        text = text.removeprefix("\ufeff")
        hasher.update(opa_canonical(_loads_keeping_numbers(text)).encode("utf-8"))
    else:
        hasher.update(content)
    return hasher.hexdigest()


def read_tar_entries(archive: bytes) -> dict[str, bytes]:
    """Regular files of a gzip tar, by their exact entry names (OPA reads TypeReg only)."""
    entries: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        for member in tar:
            if member.isreg():
                entries[member.name] = tar.extractfile(member).read()
    return entries


@dataclass
class VerifiedBundle:
    files: dict[str, bytes]  # name without leading slash → bytes
    manifest: dict
    data: dict
    header: dict
    claims: dict


def _b64url_segments_unpadded(token: str) -> None:
    parts = token.split(".")
    if len(parts) != 3 or any("=" in part for part in parts):
        raise BundleVerificationError("the JWS must be three unpadded base64url segments")
    for part in parts[:2]:
        base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_bundle(archive: bytes, *, public_key_pem: str, keyid: str, scope: str = "") -> VerifiedBundle:
    """Verify a snapshot bundle as OPA does with `signing.keyid: <keyid>` configured,
    or raise BundleVerificationError with OPA's reason."""
    entries = read_tar_entries(archive)
    for name in entries:
        if name.startswith("./"):
            raise BundleVerificationError(f"{name}: './' names never match signature entries")
    # OPA keys signatures by the entry name minus one leading slash.
    files = {name.removeprefix("/"): content for name, content in entries.items()}
    signature_files = [name for name in files if name.endswith("signatures.json")]
    if not signature_files:
        raise BundleVerificationError("bundle missing .signatures.json file")
    signatures = json.loads(files.pop(signature_files[0]))
    tokens = signatures.get("signatures") or []
    if len(tokens) != 1:
        raise BundleVerificationError(f".signatures.json: expected exactly one JWT, got {len(tokens)}")
    token = tokens[0]
    _b64url_segments_unpadded(token)
    header = jwt.get_unverified_header(token)
    if header.get("alg") != "RS256":
        raise BundleVerificationError(f"unexpected alg {header.get('alg')!r}")
    # The configured signing.keyid wins over the header kid; ours must name the same key.
    if header.get("kid") not in (None, keyid):
        raise BundleVerificationError(f"verification key corresponding to ID {header.get('kid')} not found")
    try:
        claims = jwt.decode(token, public_key_pem, algorithms=["RS256"], options={"verify_aud": False})
    except jwt.PyJWTError as exc:
        raise BundleVerificationError(f"failed to verify JWT: {exc}") from exc
    if claims.get("scope", "") != scope:
        raise BundleVerificationError("scope mismatch")
    if "iat" in claims and not isinstance(claims["iat"], int):
        raise BundleVerificationError("iat must be an integer")
    listed: dict[str, dict] = {}
    for entry in claims.get("files") or []:
        if entry["name"].startswith("/"):
            raise BundleVerificationError(f"{entry['name']}: signed names have no leading slash")
        listed[entry["name"]] = entry
    for name, content in files.items():
        entry = listed.pop(name, None)
        if entry is None:
            raise BundleVerificationError(f"file {name} not included in bundle signature")
        algorithm = entry.get("algorithm")
        if not algorithm:
            raise BundleVerificationError(f"no hashing algorithm provided for file {name}")
        if algorithm not in HASHES:
            raise BundleVerificationError(f"unsupported hashing algorithm: {algorithm}")
        got = opa_file_digest(name, content, algorithm)
        if got != entry["hash"].lower():
            raise BundleVerificationError(f"{name}: digest mismatch (want: {entry['hash']}, got: {got})")
    if listed:
        raise BundleVerificationError(
            f"file(s) {sorted(listed)} specified in bundle signatures but not found in the target bundle"
        )
    manifest = json.loads(files[".manifest"]) if ".manifest" in files else {}
    if not isinstance(manifest.get("revision", ""), str):
        raise BundleVerificationError("bundle load failed on manifest decode")
    data = json.loads(files["data.json"]) if "data.json" in files else {}
    if not isinstance(data, dict):
        raise BundleVerificationError("root value must be object")
    return VerifiedBundle(files=files, manifest=manifest, data=data, header=header, claims=claims)


def repack(entries: dict[str, bytes]) -> bytes:
    """A tar.gz of `entries` (exact names), to build tampered bundles."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())
