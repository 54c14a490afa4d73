"""The bundle archive format, checked against OPA's rules independently of the builder."""

import gzip
import hashlib
import io
import json
import tarfile

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.bundles import archive


def go_canonical(value) -> str:
    """OPA's hash walk written out separately: sorted keys, compact, no HTML escaping."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + go_canonical(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_canonical(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def build(private, **overrides):
    arguments = {
        "policy_files": {"warden/a.rego": "package warden\n\nimport rego.v1\n\nx := 1\n"},
        "data": {"warden_registry": {"agents": {"b": {"status": "active"}}, "note": "x<y & \u00e9"}},
        "roots": ["warden", "warden_registry"],
        "metadata": {"environment": "dev"},
        "signer": lambda h, p: archive.sign_rs256(h, p, private),
        "key_id": "k1",
    } | overrides
    return archive.build_archive(**arguments)


def test_known_vectors_match_opa_hashing():
    assert archive.file_hash("data.json", b'{"b": 1, "a": [true, null, "x<y"]}') == (
        "70a6b5931400ed48bbcfe082d0a38b650334df5220d7d0c84bd2b22f53321f67"
    )
    assert archive.file_hash(".manifest", b'{"roots": ["authz"], "revision": "v1"}') == (
        "30a9d5660f1a9c205827a107275650d0219caf0e2d5b5ff3b2169201c798c03b"
    )
    assert archive.file_hash("authz.rego", b"package authz\n\nallow := true\n") == (
        "6e1e454be82d6a0fb76a1c8ef9c34f528c349b7bd760db2a28ea85729e44fecd"
    )


def test_same_content_gives_same_bytes_and_etag():
    private, _ = rsa_pair()
    first, second = build(private), build(private)
    assert first.archive == second.archive
    assert first.etag == second.etag
    changed = build(private, data={"warden_registry": {"agents": {}}})
    assert changed.revision != first.revision
    assert changed.etag != first.etag


def test_archive_is_what_opa_expects_and_every_file_is_signed():
    private, public = rsa_pair()
    built = build(private)
    with tarfile.open(fileobj=io.BytesIO(built.archive), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}
    assert all(name.startswith("/") and not name.startswith("/./") for name in members)
    files = {name[1:]: content for name, content in members.items()}
    assert set(files) == {".manifest", ".signatures.json", "data.json", "warden/a.rego"}
    manifest = json.loads(files[".manifest"])
    assert manifest["revision"] == built.revision
    assert manifest["roots"] == ["warden", "warden_registry"]
    assert manifest["rego_version"] == 1

    [token] = json.loads(files[".signatures.json"])["signatures"]
    assert "=" not in token
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    claims = jwt.decode(token, public, algorithms=["RS256"])
    signed = {entry["name"]: entry for entry in claims["files"]}
    assert set(signed) == set(files) - {".signatures.json"}
    for name, entry in signed.items():
        assert entry["algorithm"] == "SHA-256"
        content = files[name]
        if name.rsplit("/", 1)[-1] in ("data.json", ".manifest"):
            content = go_canonical(json.loads(content)).encode("utf-8")
        assert entry["hash"] == hashlib.sha256(content).hexdigest(), name


def test_gzip_stream_is_reproducible():
    private, _ = rsa_pair()
    raw = gzip.decompress(build(private).archive)
    assert raw[:1] != b""  # a tar stream, not empty
    assert build(private).archive[4:8] == b"\x00\x00\x00\x00"  # gzip mtime fixed at 0


def test_roots_never_overlap():
    assert archive.roots_for(["warden", "warden.sub", "acme.finance"], ["warden_registry"]) == [
        "acme/finance", "warden", "warden_registry",
    ]
