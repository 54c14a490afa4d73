"""OPA bundle archives: canonical JSON, per-file hashes as OPA computes them, the signed
.signatures.json, and a deterministic tar.gz. Pure functions, no Django.

The OPA documentation on bundles and bundle signing is the specification; see docs/opa.md.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
# OPA hashes these files as canonical JSON and every other file as raw bytes.
STRUCTURED_BASENAMES = frozenset({"data.json", "data.yaml", ".manifest"})
HASH_ALGORITHM = "SHA-256"  # spelled as OPA requires


def canonical_json(value) -> bytes:
    """Compact JSON with keys sorted and no HTML escaping: the form OPA hashes JSON files in.

    Writing data.json and .manifest in this form makes their raw bytes equal to what OPA
    hashes. U+2028 and U+2029 are escaped as Go's encoder escapes them.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def file_hash(name: str, content: bytes) -> str:
    """SHA-256 of a bundle file as OPA verifies it (canonical JSON for structured files)."""
    basename = name.rsplit("/", 1)[-1]
    if basename in STRUCTURED_BASENAMES:
        content = canonical_json(json.loads(content.decode("utf-8-sig")))
    return hashlib.sha256(content).hexdigest()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign_rs256(header: dict, payload: dict, private_key_pem: bytes) -> str:
    """A compact JWS (RS256). RSASSA-PKCS1-v1_5 is deterministic, so the same content
    signed with the same key gives the same bytes, and so the same ETag."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    signing_input = f"{_b64url(canonical_json(header))}.{_b64url(canonical_json(payload))}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


@dataclass(frozen=True)
class BuiltArchive:
    archive: bytes
    revision: str
    manifest: dict
    files: dict[str, str]  # path → sha256, every file but .signatures.json
    etag: str


def content_revision(files: dict[str, bytes]) -> str:
    """A revision that depends only on the bundle's content (not on when or where it was built)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + file_hash(name, files[name]).encode("ascii") + b"\n")
    return digest.hexdigest()


def roots_for(packages: list[str], data_roots: list[str]) -> list[str]:
    """The manifest roots covering every package and data path, none overlapping another."""
    candidates = sorted({p.replace(".", "/") for p in packages} | set(data_roots))
    roots: list[str] = []
    for root in candidates:
        if not any(root == kept or root.startswith(kept + "/") for kept in roots):
            roots.append(root)
    return roots


def build_archive(
    *,
    policy_files: dict[str, str],
    data: dict,
    roots: list[str],
    metadata: dict,
    signer: Callable[[dict, dict], str],
    key_id: str,
) -> BuiltArchive:
    """Assemble, sign and pack a bundle. `signer(header, payload)` returns the compact JWS."""
    files: dict[str, bytes] = {path: source.encode("utf-8") for path, source in policy_files.items()}
    files["data.json"] = canonical_json(data)
    revision = content_revision(files)
    manifest = {"revision": revision, "roots": roots, "rego_version": 1, "metadata": metadata}
    files[MANIFEST] = canonical_json(manifest)
    hashes_by_name = {name: file_hash(name, content) for name, content in files.items()}
    payload = {
        "files": [{"name": name, "hash": hashes_by_name[name], "algorithm": HASH_ALGORITHM} for name in sorted(files)],
        "iss": "warden",
    }
    jws = signer({"alg": "RS256", "kid": key_id, "typ": "JWT"}, payload)
    files[SIGNATURES] = canonical_json({"signatures": [jws]})
    archive = pack_tar_gz(files)
    return BuiltArchive(
        archive=archive,
        revision=revision,
        manifest=manifest,
        files=hashes_by_name,
        etag='"' + hashlib.sha256(archive).hexdigest()[:32] + '"',
    )


def pack_tar_gz(files: dict[str, bytes]) -> bytes:
    """A reproducible tar.gz: sorted entries, fixed times, owners and modes; names as OPA
    writes them (leading slash)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            content = files[name]
            info = tarfile.TarInfo(name="/" + name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def read_tar_gz(archive: bytes, *, max_bytes: int = 64 * 1024 * 1024) -> dict[str, bytes]:
    """The regular files of a bundle archive, names without the leading slash."""
    files: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar:
            if not member.isreg():
                continue
            total += member.size
            if total > max_bytes:
                raise ValueError("bundle archive is larger than allowed")
            files[member.name.lstrip("/")] = tar.extractfile(member).read()
    return files
