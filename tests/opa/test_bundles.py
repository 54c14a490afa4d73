"""Bundle Service API as OPA uses it: download with a bearer token, verify signature and
every file hash independently of the signer, 304 on the same ETag, and refusals."""

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.bundles import archive
from controlplane.bundles import services as bundle_services
from tests.opa.opa_client import BundleVerificationError, read_tar_entries, repack, verify_bundle
from tests.opa.sidecar import DJANGO_ONLY, FAST_PATH, EmulatedOPA, asgi_client, run



@pytest.fixture(params=[FAST_PATH, DJANGO_ONLY], ids=["fast-path", "django-view"])
def app(request):
    """Both ways a bundle request is answered: the ASGI fast path and the Django view."""
    return request.param


async def _download(token, resource, *, etag="", wait=None, times=1, app=FAST_PATH):
    async with asgi_client(app) as client:
        opa = EmulatedOPA(client, token=token, resource=resource)
        opa.etag = etag
        return [await opa.download(wait=wait) for _ in range(times)]


def test_opa_downloads_and_verifies_the_signed_bundle(dev, dev_token, signing_key, app):
    (response,) = run(_download(dev_token, "bundles/dev", app=app))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in response.headers  # the body is the tar.gz itself
    assert response.headers["ETag"] == dev.active_bundle.etag

    verified = verify_bundle(response.content, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)

    entries = read_tar_entries(response.content)
    signed = {entry["name"] for entry in verified.claims["files"]}
    # Every regular tar entry but .signatures.json is signed, under its name minus the slash.
    assert signed == {name.removeprefix("/") for name in entries} - {".signatures.json"}
    assert ".manifest" in signed and "data.json" in signed
    assert any(name.endswith(".rego") for name in signed)
    assert all(not name.startswith(("/", "./")) for name in signed)
    assert all(entry["algorithm"] == "SHA-256" for entry in verified.claims["files"])
    assert verified.header["kid"] == signing_key.kid
    assert verified.manifest["revision"] == dev.active_bundle.revision
    assert verified.data["warden_registry"]["agents"]["billing-bot"]["status"] == "active"


def test_same_etag_is_answered_304_without_a_body(dev, dev_token, app):
    first, second = run(_download(dev_token, "bundles/dev", times=2, app=app))
    assert first.status_code == 200
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["ETag"] == first.headers["ETag"]


def test_other_etag_gets_the_bundle(dev, dev_token):
    (response,) = run(_download(dev_token, "bundles/dev", etag='"not-the-current-one"'))
    assert response.status_code == 200
    assert response.headers["ETag"] == dev.active_bundle.etag


def test_token_of_another_environment_is_forbidden(dev, staging, staging_token, app):
    (response,) = run(_download(staging_token, "bundles/dev", app=app))
    assert response.status_code == 403
    assert "staging" not in response.json()["detail"] and "dev" in response.json()["detail"]


def test_revoked_and_unknown_tokens_get_401_with_one_message(dev, dev_token, admin, app):
    token = dev.tokens.get()
    bundle_services.revoke_environment_token(token, by=admin)
    (revoked,) = run(_download(dev_token, "bundles/dev", app=app))
    (unknown,) = run(_download("wdn_made-up", "bundles/dev", app=app))
    assert revoked.status_code == unknown.status_code == 401
    assert revoked.json() == unknown.json() == {"detail": "invalid or revoked environment token"}
    assert revoked.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_bearer_token_is_401(dev, app):
    async def scenario():
        async with asgi_client(app) as client:
            return await client.get("/opa/bundles/dev", headers={"Authorization": "Token abc"})

    response = run(scenario())
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_environment_without_bundle_is_404(staging, staging_token, app):
    (response,) = run(_download(staging_token, "bundles/staging", app=app))
    assert response.status_code == 404
    assert "no active bundle" in response.json()["detail"]


def test_post_to_bundle_is_405(dev, dev_token):
    async def scenario():
        async with asgi_client() as client:
            return await client.post("/opa/bundles/dev", headers={"Authorization": f"Bearer {dev_token}"})

    assert run(scenario()).status_code == 405


def test_tampered_rego_file_fails_verification(dev, dev_token, signing_key):
    (response,) = run(_download(dev_token, "bundles/dev"))
    entries = read_tar_entries(response.content)
    rego = next(name for name in entries if name.endswith(".rego"))
    content = bytearray(entries[rego])
    content[len(content) // 2] ^= 0x01  # one byte
    entries[rego] = bytes(content)
    with pytest.raises(BundleVerificationError, match="digest mismatch"):
        verify_bundle(repack(entries), public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)


def test_tampered_data_json_fails_verification(dev, dev_token, signing_key):
    (response,) = run(_download(dev_token, "bundles/dev"))
    entries = read_tar_entries(response.content)
    data = json.loads(entries["/data.json"])
    data["warden_registry"]["agents"]["billing-bot"]["status"] = "active "
    entries["/data.json"] = json.dumps(data).encode()
    with pytest.raises(BundleVerificationError, match="digest mismatch"):
        verify_bundle(repack(entries), public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)


def test_extra_unsigned_file_fails_verification(dev, dev_token, signing_key):
    (response,) = run(_download(dev_token, "bundles/dev"))
    entries = read_tar_entries(response.content)
    entries["/README.md"] = b"hello"
    with pytest.raises(BundleVerificationError, match="not included in bundle signature"):
        verify_bundle(repack(entries), public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)


def test_bundle_signed_with_another_key_fails_verification(dev, dev_token, signing_key):
    (response,) = run(_download(dev_token, "bundles/dev"))
    entries = {name.removeprefix("/"): content for name, content in read_tar_entries(response.content).items()}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = archive.build_archive(
        policy_files={n: c.decode() for n, c in entries.items() if n.endswith(".rego")},
        data=json.loads(entries["data.json"]),
        roots=json.loads(entries[".manifest"])["roots"],
        metadata={"environment": "dev"},
        signer=lambda header, payload: archive.sign_rs256(header, payload, other),
        key_id=signing_key.kid,  # claims to be Warden's key
    )
    with pytest.raises(BundleVerificationError, match="failed to verify JWT"):
        verify_bundle(forged.archive, public_key_pem=signing_key.public_key_pem, keyid=signing_key.kid)
