"""OPA bundle archives: canonical JSON, per-file hashes as OPA computes them, the signed
.signatures.json, and a deterministic tar.gz. Pure functions, no Django.

The OPA documentation on bundles and bundle signing is the specification; see docs/opa.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from agents_sdk.bundles.format import MANIFEST_FILE as MANIFEST
from agents_sdk.bundles.format import SIGNATURES_FILE as SIGNATURES
from agents_sdk.bundles.format import canonical_json, file_digest
from agents_sdk.engine.recorded_bundles import ENV as RECORD_BUNDLES
from agents_sdk.engine.recorded_bundles import record as record_bundle
from controlplane.bundles import packing

HASH_ALGORITHM = "SHA-256"  # spelled as OPA requires
# Level 9 took seconds on a 100,000-agent registry for a few percent fewer bytes.
GZIP_LEVEL = 6


def file_hash(name: str, content: bytes) -> str:
    """SHA-256 of a bundle file as OPA verifies it (canonical JSON for structured files):
    the SDK's agents_sdk.bundles.format.file_digest, which keeps number literals as OPA does."""
    return file_digest(name, content, HASH_ALGORITHM)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=8)
def _rsa_private_key(private_key_pem: bytes):
    # Loading validates the RSA key (about 100 ms, seconds under load): once per key, not per
    # signature, or every registry rebuild (a kill switch, a revocation) pays it twice.
    return serialization.load_pem_private_key(private_key_pem, password=None)


def signing_key(private_key_pem: bytes):
    """The loaded key sign_rs256 signs with (loaded once per process: bundles.warmup)."""
    return _rsa_private_key(bytes(private_key_pem))


def sign_rs256(header: dict, payload: dict, private_key_pem: bytes) -> str:
    """A compact JWS (RS256). RSASSA-PKCS1-v1_5 is deterministic, so the same content
    signed with the same key gives the same bytes, and so the same ETag."""
    key = signing_key(private_key_pem)
    signing_input = f"{_b64url(canonical_json(header))}.{_b64url(canonical_json(payload))}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


@dataclass(frozen=True)
class BuiltArchive:
    packed: packing.Packed  # the tar.gz as gzip members, never joined by a build
    revision: str
    manifest: dict
    files: dict[str, str]  # path → sha256, every file but .signatures.json
    etag: str

    @property
    def archive(self) -> bytes:
        """The whole tar.gz (a copy: builds store `packed` member by member instead)."""
        return self.packed.joined()

    @property
    def size(self) -> int:
        return self.packed.size

    @property
    def members(self) -> bytes:
        """The list of member digests a Bundle or BundlePart row stores (controlplane.bundles.storage)."""
        return b"".join(self.packed.digests)


def data_hash(content: bytes | packing.Pieces) -> str:
    """SHA-256 of canonical JSON bytes already encoded (incremental for `packing.Pieces`)."""
    return content.sha256() if isinstance(content, packing.Pieces) else hashlib.sha256(content).hexdigest()


def content_revision(files: dict[str, bytes]) -> str:
    """A revision that depends only on the bundle's content (not on when or where it was built)."""
    return revision_of_hashes({name: file_hash(name, content) for name, content in files.items()})


def revision_of_hashes(hashes_by_name: dict[str, str]) -> str:
    """content_revision from the files' OPA hashes, when they are already known."""
    digest = hashlib.sha256()
    for name in sorted(hashes_by_name):
        digest.update(name.encode("utf-8") + b"\0" + hashes_by_name[name].encode("ascii") + b"\n")
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
    data: dict | bytes | packing.Pieces | None,
    roots: list[str],
    metadata: dict,
    signer: Callable[[dict, dict], str],
    key_id: str,
    policy_hashes: dict[str, str] | None = None,
) -> BuiltArchive:
    """Assemble, sign and pack a bundle. `signer(header, payload)` returns the compact JWS.

    `data` is the data.json value, or its canonical JSON already encoded (bytes, or
    packing.Pieces from controlplane.bundles.registry, never joined here), or None for a
    bundle of policies only. Files this
    function encodes are canonical, so each is hashed once, over its raw bytes;
    `policy_hashes` may carry the policy files' hashes from an earlier build.
    """
    encoded = {path: source.encode("utf-8") for path, source in policy_files.items()}
    hashes_by_name = {
        name: (policy_hashes or {}).get(name) or hashlib.sha256(content).hexdigest() for name, content in encoded.items()
    }
    files: dict[str, bytes | packing.Pieces] = dict(encoded)
    if data is not None:
        files["data.json"] = data if isinstance(data, bytes | packing.Pieces) else canonical_json(data)
        hashes_by_name["data.json"] = data_hash(files["data.json"])
    if os.environ.get(RECORD_BUNDLES):  # real OPA compiles recorded bundles in nox -s opa-oracle
        record_bundle({name: bytes(content) for name, content in files.items()})
    revision = revision_of_hashes(hashes_by_name)
    manifest = {"revision": revision, "roots": roots, "rego_version": 1, "metadata": metadata}
    files[MANIFEST] = manifest_json = canonical_json(manifest)
    hashes_by_name[MANIFEST] = hashlib.sha256(manifest_json).hexdigest()
    payload = {
        "files": [{"name": name, "hash": hashes_by_name[name], "algorithm": HASH_ALGORITHM} for name in sorted(files)],
        "iss": "warden",
    }
    jws = signer({"alg": "RS256", "kid": key_id, "typ": "JWT"}, payload)
    files[SIGNATURES] = canonical_json({"signatures": [jws]})
    packed = packing.pack_members(files, level=GZIP_LEVEL)
    return BuiltArchive(
        packed=packed,
        revision=revision,
        manifest=manifest,
        files=hashes_by_name,
        etag='"' + packed.digest[:32] + '"',  # names the bytes (packing.Packed), without hashing megabytes again
    )


def pack_tar_gz(files: dict[str, bytes | packing.Pieces]) -> bytes:
    """A reproducible tar.gz: sorted entries, fixed times, owners and modes; names as OPA
    writes them (leading slash). Compressed in gzip members, each large run once per
    process (controlplane.bundles.packing), so a small change costs a small compression."""
    return packing.pack_tar_gz(files, level=GZIP_LEVEL)


def _pack_tar(files: dict[str, bytes | packing.Pieces]) -> bytes:
    """The uncompressed tar as `tarfile` writes it (what packing reproduces; for tests)."""
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
            tar.addfile(info, io.BytesIO(bytes(content)))
    return raw.getvalue()


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
