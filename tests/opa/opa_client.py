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


@dataclass
class DeltaBundle:
    manifest: dict
    operations: list


def read_delta(archive: bytes, *, persist: bool = False) -> DeltaBundle | None:
    """A delta bundle as OPA's bundle Reader reads it (v1/bundle/bundle.go), or None for a
    snapshot: a non-empty `patch.json` makes the type delta; signatures are checked for
    snapshots only, so a delta's `.signatures.json` is skipped, not verified; a delta with
    data or policy files is refused, and so is any delta when the bundle has `persist: true`."""
    files = {name.removeprefix("/"): content for name, content in read_tar_entries(archive).items()}
    patch = json.loads(files["patch.json"]) if "patch.json" in files else {}
    operations = patch.get("data") or []
    if not operations:
        return None
    for name in files:
        if name.endswith(".rego"):
            raise BundleVerificationError("delta bundle expected to contain only patch file but policy files found")
        if name.rsplit("/", 1)[-1] in ("data.json", "data.yaml"):
            raise BundleVerificationError("delta bundle expected to contain only patch file but data files found")
    if persist:
        raise BundleVerificationError("'persist' property is true in config. persisting delta bundle to disk is not supported")
    manifest = json.loads(files[".manifest"]) if ".manifest" in files else {}
    return DeltaBundle(manifest=manifest, operations=operations)


def apply_delta(data: dict, delta: DeltaBundle, *, roots: list[str]) -> dict:
    """OPA's activation of a delta (v1/bundle/store.go activateDeltaBundles): the manifest's
    roots must equal the snapshot's, then each op is applied in order to a copy of `data`
    (upsert creates missing parents; replace and remove need the path to exist)."""
    if delta.manifest.get("roots") is not None and delta.manifest["roots"] != roots:
        raise BundleVerificationError("delta bundle activation failed: manifest roots differ from the snapshot's")
    result = json.loads(json.dumps(data))
    for operation in delta.operations:
        segments = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].lstrip("/").split("/")]
        if not any("/".join(segments) == root or "/".join(segments).startswith(root + "/") for root in roots):
            raise BundleVerificationError(f"path {operation['path']} is outside the bundle roots")
        node = result
        for segment in segments[:-1]:
            if segment not in node:
                if operation["op"] != "upsert":
                    raise BundleVerificationError(f"storage_not_found_error: {operation['path']}")
                node[segment] = {}
            node = node[segment]
        last = segments[-1]
        if operation["op"] == "upsert":
            node[last] = operation["value"]
        elif operation["op"] == "replace":
            if last not in node:
                raise BundleVerificationError(f"storage_not_found_error: {operation['path']}")
            node[last] = operation["value"]
        elif operation["op"] == "remove":
            if last not in node:
                raise BundleVerificationError(f"storage_not_found_error: {operation['path']}")
            del node[last]
        else:
            raise BundleVerificationError(f"unknown patch operation {operation['op']!r}")
    return result
