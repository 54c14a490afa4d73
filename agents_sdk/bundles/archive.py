"""Reading a bundle archive: signature verification as OPA does it, then loading."""


from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
import io
import json
import re
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents_sdk.bundles.format import (
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_FILE_BYTES,
    HASH_ALGORITHMS,
    MANIFEST_FILE,
    SIGNATURES_FILE,
    BundleError,
    BundleVerificationError,
    _reject_constant,
    file_digest,
    package_of,
)
from agents_sdk.bundles.keys import VerificationConfig

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
    delta: bool = False  # the data came from a delta bundle (``archive`` holds the delta's bytes)

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


def verify_signatures(
    files: Mapping[str, bytes], config: VerificationConfig, *, parsed: dict[str, dict[str, Any]] | None = None
) -> str | None:
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
        # A file whose raw bytes hash to the signed digest is the canonical form OPA hashed
        # (every file Warden writes is): no need to decode and re-encode tens of MB of JSON.
        raw_digest = HASH_ALGORITHMS[algorithm]()
        raw_digest.update(files[name])
        if hmac.compare_digest(raw_digest.hexdigest(), want):
            continue
        try:
            decoded: dict[str, Any] = {}
            got = file_digest(name, files[name], algorithm, parsed=decoded)
            if parsed is not None and "value" in decoded:
                parsed[name] = decoded  # the file's JSON value, decoded once for hashing and loading
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
    files: Mapping[str, bytes] | None = None,
) -> Bundle:
    """Read and verify a bundle archive; return it ready to activate (`files`: the
    archive already read with read_archive).

    Raises BundleVerificationError if its signature does not verify (see
    ``verify_signatures``), BundleError if it is unreadable, its manifest or data is not
    valid, or a module or data path lies outside the manifest's roots.
    """
    if files is None:
        files = read_archive(archive, max_file_bytes=max_file_bytes)
    signed_by = None
    decoded: dict[str, dict[str, Any]] = {}
    if verification is not None:
        signed_by = verify_signatures(files, verification, parsed=decoded)
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
            package = package_of(source)  # the one parser of `package` lines (agents_sdk.bundles.format)
            if package is None:
                # Without its package the roots cannot be checked: refuse rather than skip the check.
                raise BundleError(f"{name}: the module has no package declaration Warden can read")
            if not _path_in_roots(package.replace(".", "/"), roots):
                raise BundleError(
                    f"manifest roots {list(roots)} do not permit 'package {package}' in module '{name}'"
                )
            modules[name] = source
        elif base == "data.json":
            try:
                value = decoded[name]["value"] if name in decoded else json.loads(
                    content.decode("utf-8-sig"), parse_constant=_reject_constant)
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


