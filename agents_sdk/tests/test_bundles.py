"""The bundle client: OPA's signature rules, the download protocol, persistence."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from agents_sdk.bundles import (
    BundleClient,
    BundleError,
    BundleStore,
    BundleVerificationError,
    VerificationConfig,
    VerificationKey,
    backoff_delay,
    file_digest,
    parse_bundle,
)
from agents_sdk.tests.signed_bundles import (
    BundleServer,
    RSASigner,
    build_bundle,
    compact,
    opa_hash,
    pack,
    registry,
)

SMALL_MODULES = {"warden/decision.rego": "package warden\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n"}


@pytest.fixture(scope="module")
def signer() -> RSASigner:
    return RSASigner("test-key")


@pytest.fixture(scope="module")
def other_signer() -> RSASigner:
    return RSASigner("test-key")  # same kid, different key


@pytest.fixture
def verification(signer) -> VerificationConfig:
    return VerificationConfig(keys={"test-key": VerificationKey.from_pem("test-key", signer.public_pem)}, keyid="test-key")


def small_bundle(signer, **kwargs):
    return build_bundle(signer, modules=kwargs.pop("modules", SMALL_MODULES), **kwargs)


# -- hashing as OPA does ------------------------------------------------------------------


def test_json_files_are_hashed_in_canonical_form_and_other_files_raw():
    # Vectors worked out from OPA's hash.go (compact JSON, sorted keys, no HTML escaping).
    assert file_digest("data.json", b'{"b": 1, "a": [true, null, "x<y"]}') == (
        "70a6b5931400ed48bbcfe082d0a38b650334df5220d7d0c84bd2b22f53321f67"
    )
    assert file_digest(".manifest", b'{"roots": ["authz"], "revision": "v1"}') == (
        "30a9d5660f1a9c205827a107275650d0219caf0e2d5b5ff3b2169201c798c03b"
    )
    assert file_digest("data.json", b"{}") == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert file_digest("authz.rego", b"package authz\n\nallow := true\n") == (
        "6e1e454be82d6a0fb76a1c8ef9c34f528c349b7bd760db2a28ea85729e44fecd"
    )


def test_numbers_in_json_files_are_hashed_as_written():
    import hashlib

    # OPA decodes with UseNumber: 1.0 stays 1.0 and 1e3 stays 1e3 (Python would print 1000.0).
    assert file_digest("x/data.json", b'{"b": 1e3, "a": 1.0}') == hashlib.sha256(b'{"a":1.0,"b":1e3}').hexdigest()
    # Go escapes U+2028 but writes <, > and & raw.
    assert file_digest("data.json", '{"a": "<\u2028>"}'.encode()) == hashlib.sha256(b'{"a":"<\\u2028>"}').hexdigest()


# -- signature verification ---------------------------------------------------------------


def test_a_signed_bundle_verifies_and_yields_its_modules_and_data(signer, verification):
    built = build_bundle(signer, revision="rev-7")
    bundle = parse_bundle(built.archive, etag=built.etag, verification=verification)
    assert bundle.revision == "rev-7"
    assert bundle.signed_by == "test-key"
    assert "warden/decision.rego" in bundle.modules
    assert bundle.data["warden_registry"]["agents"]["support-bot"]["status"] == "active"
    assert bundle.roots == ("warden", "warden_registry")
    assert bundle.etag == built.etag


def test_one_changed_byte_of_a_rego_file_is_rejected_naming_the_file(signer, verification):
    built = small_bundle(signer)
    source = built.files["warden/decision.rego"]
    tampered = small_bundle(signer, tamper={"warden/decision.rego": source.replace(b"true", b"True", 1)})
    with pytest.raises(BundleVerificationError) as caught:
        parse_bundle(tampered.archive, verification=verification)
    assert caught.value.file == "warden/decision.rego"
    assert "warden/decision.rego: digest mismatch" in str(caught.value)


def test_changed_data_is_rejected_but_reformatted_data_is_not(signer, verification):
    data = registry()
    reformatted = small_bundle(signer, tamper={"data.json": compact(data)})  # same JSON, other bytes
    assert parse_bundle(reformatted.archive, verification=verification).data == data
    data["warden_registry"]["agents"]["support-bot"]["status"] = "suspended"
    changed = small_bundle(signer, tamper={"data.json": compact(data)})
    with pytest.raises(BundleVerificationError) as caught:
        parse_bundle(changed.archive, verification=verification)
    assert caught.value.file == "data.json"


def test_a_bundle_signed_with_another_key_is_rejected(other_signer, verification):
    built = small_bundle(other_signer)
    with pytest.raises(BundleVerificationError, match="signature does not verify with key test-key") as caught:
        parse_bundle(built.archive, verification=verification)
    assert caught.value.file == ".signatures.json"


def test_a_file_left_out_of_the_signature_is_rejected(signer, verification):
    built = small_bundle(signer, extra_files={"warden/extra.rego": b"package warden\n"}, unsigned_files=["warden/extra.rego"])
    with pytest.raises(BundleVerificationError, match="file warden/extra.rego not included in bundle signature") as caught:
        parse_bundle(built.archive, verification=verification)
    assert caught.value.file == "warden/extra.rego"


def test_an_extra_file_added_after_signing_is_rejected(signer, verification):
    built = small_bundle(signer, tamper={"README.md": b"hello"})
    with pytest.raises(BundleVerificationError, match="file README.md not included") as caught:
        parse_bundle(built.archive, verification=verification)
    assert caught.value.file == "README.md"


def test_a_signed_file_missing_from_the_archive_is_rejected(signer, verification):
    built = small_bundle(signer, extra_files={"warden/gone.rego": b"package warden\n"}, drop_files=["warden/gone.rego"])
    with pytest.raises(BundleVerificationError, match=r"\['warden/gone.rego'\] specified in bundle signatures") as caught:
        parse_bundle(built.archive, verification=verification)
    assert caught.value.file == "warden/gone.rego"


def test_the_manifest_is_covered_by_the_signature(signer, verification):
    forged = json.dumps({"revision": "forged", "roots": ["warden", "warden_registry"]}).encode()
    built = small_bundle(signer, tamper={".manifest": forged})
    with pytest.raises(BundleVerificationError) as caught:
        parse_bundle(built.archive, verification=verification)
    assert caught.value.file == ".manifest"


@pytest.mark.parametrize("count, message", [(0, "missing JWT"), (2, "multiple JWTs not supported")])
def test_exactly_one_jwt_is_accepted(signer, verification, count, message):
    good = small_bundle(signer)
    token = json.loads(good.files[".signatures.json"])["signatures"][0]
    built = small_bundle(None, jwts=[token] * count)
    with pytest.raises(BundleVerificationError, match=message):
        parse_bundle(built.archive, verification=verification)


def test_an_unsigned_bundle_is_rejected_when_a_signing_key_is_configured(verification):
    built = small_bundle(None)
    with pytest.raises(BundleVerificationError, match="bundle missing .signatures.json file"):
        parse_bundle(built.archive, verification=verification)


def test_an_unsigned_bundle_is_accepted_only_without_a_configured_keyid(signer):
    built = small_bundle(None)
    assert parse_bundle(built.archive, verification=None).signed_by is None
    keys_only = VerificationConfig(keys={"test-key": VerificationKey.from_pem("test-key", signer.public_pem)})
    assert parse_bundle(built.archive, verification=keys_only).revision == "rev-1"  # OPA's rule
    strict = VerificationConfig(keys=keys_only.keys, require_signature=True)
    with pytest.raises(BundleVerificationError):
        parse_bundle(built.archive, verification=strict)


def test_a_signed_bundle_without_verification_keys_is_rejected(signer):
    with pytest.raises(BundleVerificationError, match="verification key not provided"):
        parse_bundle(small_bundle(signer).archive, verification=None)


def test_the_header_algorithm_must_be_the_configured_one(signer, verification):
    good = small_bundle(signer)
    payload = json.loads(
        __import__("base64").urlsafe_b64decode(json.loads(good.files[".signatures.json"])["signatures"][0].split(".")[1] + "==")
    )
    token = signer.jwt(payload, header={"alg": "RS512", "kid": "test-key"})
    built = small_bundle(None, jwts=[token])
    with pytest.raises(BundleVerificationError, match="JWT algorithm 'RS512' is not the configured 'RS256'"):
        parse_bundle(built.archive, verification=verification)


def test_the_kid_selects_the_key_when_no_keyid_is_configured(signer, other_signer):
    keys = {
        "test-key": VerificationKey.from_pem("test-key", signer.public_pem),
        "other": VerificationKey.from_pem("other", other_signer.public_pem),
    }
    built = small_bundle(signer)
    assert parse_bundle(built.archive, verification=VerificationConfig(keys=keys)).signed_by == "test-key"
    unknown = small_bundle(RSASigner("nobody"))
    with pytest.raises(BundleVerificationError, match="key corresponding to ID nobody not found"):
        parse_bundle(unknown.archive, verification=VerificationConfig(keys=keys))


def test_a_scope_claim_must_match_the_configured_scope(signer):
    payload = {"files": [], "scope": "write"}
    files = {".manifest": b'{"revision":"r"}'}
    payload["files"] = [{"name": ".manifest", "hash": opa_hash(".manifest", files[".manifest"]), "algorithm": "SHA-256"}]
    files[".signatures.json"] = json.dumps({"signatures": [signer.jwt(payload)]}).encode()
    key = VerificationKey.from_pem("test-key", signer.public_pem)
    with pytest.raises(BundleVerificationError, match="scope mismatch"):
        parse_bundle(pack(files), verification=VerificationConfig(keys={"test-key": key}, keyid="test-key"))
    ok = VerificationConfig(keys={"test-key": key}, keyid="test-key", scope="write")
    assert parse_bundle(pack(files), verification=ok).revision == "r"


def test_unsafe_paths_and_packages_outside_the_roots_are_refused(signer, verification):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("../escape.rego")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleError, match="unsafe path"):
        parse_bundle(gzip.compress(raw.getvalue()), verification=verification)
    outside = small_bundle(signer, modules={"other/x.rego": "package other\n"})
    with pytest.raises(BundleError, match="do not permit 'package other'"):
        parse_bundle(outside.archive, verification=verification)
    with pytest.raises(BundleError, match="not a readable tar.gz"):
        parse_bundle(b"not a bundle", verification=verification)


# -- the download protocol ----------------------------------------------------------------


def make_client(server, verification, **kwargs) -> BundleClient:
    kwargs.setdefault("token", "env-token")
    return BundleClient(server.url + "/opa/", "/bundles/prod", verification=verification, **kwargs)


def test_the_client_sends_opas_headers_and_uses_the_etag(signer, verification):
    with BundleServer() as server:
        built = small_bundle(signer)
        server.state.publish(built)
        client = make_client(server, verification)
        assert client.poll_once() is True
        assert client.poll_once() is False  # 304
        first, second = server.state.requests
        assert first["path"] == "/opa/bundles/prod"
        assert first["headers"]["Authorization"] == "Bearer env-token"
        assert first["headers"]["Prefer"] == "modes=snapshot,delta"
        assert "If-None-Match" not in first["headers"]
        assert second["headers"]["If-None-Match"] == built.etag
        status = client.status()
        assert client.active.revision == status.active_revision == "rev-1"
        assert status.last_successful_activation != "0001-01-01T00:00:00Z"
        assert status.as_opa()["name"] == "prod" and status.as_opa()["type"] == "snapshot"


def test_a_refused_token_is_an_error_that_keeps_the_active_bundle(signer, verification):
    with BundleServer() as server:
        server.state.publish(small_bundle(signer))
        client = make_client(server, verification)
        client.poll_once()
        server.state.token = "rotated"
        with pytest.raises(BundleError) as caught:
            client.poll_once()
        assert caught.value.http_code == 401
        assert client.active.revision == "rev-1"


def test_long_polling_wakes_the_client_when_a_new_bundle_is_published(signer, verification):
    with BundleServer() as server:
        server.state.publish(small_bundle(signer, revision="rev-1"))
        client = make_client(server, verification, long_polling_timeout=5)
        client.start()
        try:
            assert client.wait_until_ready(5)
            time.sleep(0.3)  # the client is now held in a long poll
            published = time.monotonic()
            server.state.publish(small_bundle(signer, revision="rev-2"))
            while client.active.revision != "rev-2" and time.monotonic() - published < 3:
                time.sleep(0.01)
            assert client.active.revision == "rev-2"
            assert time.monotonic() - published < 1.0
            held = [r for r in server.state.requests if "wait=5" in r["headers"].get("Prefer", "")]
            assert held and all(r["headers"]["Prefer"] == "modes=snapshot,delta;wait=5" for r in held)
            assert len(server.state.requests) <= 3  # held, not busy-looping
        finally:
            client.stop()


def test_long_polling_falls_back_to_periodic_polling_without_opas_content_type(signer, verification):
    with BundleServer() as server:
        server.state.long_poll_content_type = "application/gzip"
        server.state.publish(small_bundle(signer))
        client = make_client(server, verification, long_polling_timeout=5, min_delay=0.05, max_delay=0.1)
        client.start()
        try:
            deadline = time.monotonic() + 3
            while len(server.state.requests) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            client.stop()
        prefers = [r["headers"]["Prefer"] for r in server.state.requests]
        assert prefers[0] == "modes=snapshot,delta;wait=5"
        assert prefers[1:] and all(p == "modes=snapshot,delta" for p in prefers[1:])


def test_a_tampered_update_is_refused_and_the_last_good_bundle_stays(signer, verification):
    with BundleServer() as server:
        server.state.publish(small_bundle(signer, revision="good"))
        client = make_client(server, verification, long_polling_timeout=5, min_delay=0.1, max_delay=0.2)
        client.start()
        try:
            assert client.wait_until_ready(5)
            source = small_bundle(signer).files["warden/decision.rego"]
            server.state.publish(small_bundle(signer, revision="bad", tamper={"warden/decision.rego": source + b"#"}))
            deadline = time.monotonic() + 3
            while not client.status().code and time.monotonic() < deadline:
                time.sleep(0.02)
            status = client.status()
            assert status.code == "bundle_error"
            assert "warden/decision.rego: digest mismatch" in status.message
            assert client.active.revision == status.active_revision == "good"
        finally:
            client.stop()


def test_a_bundle_the_activation_hook_refuses_does_not_replace_the_active_one(signer, verification):
    with BundleServer() as server:
        server.state.publish(small_bundle(signer, revision="good"))
        seen = []

        def activate(bundle):
            if bundle.revision == "broken":
                raise ValueError("warden/decision.rego:3:1: expecting expression")
            seen.append(bundle.revision)

        client = make_client(server, verification, activate=activate)
        client.poll_once()
        server.state.publish(small_bundle(signer, revision="broken"))
        with pytest.raises(BundleError, match="expecting expression"):
            client.poll_once()
        assert seen == ["good"] and client.active.revision == "good"


def test_the_token_file_is_read_again_for_every_request(signer, verification, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("env-token\n")
    with BundleServer() as server:
        server.state.publish(small_bundle(signer))
        client = make_client(server, verification, token=None, token_path=token_file)
        client.poll_once()
        server.state.token = "rotated"
        token_file.write_text("rotated")
        client.poll_once()
        assert server.state.requests[-1]["headers"]["Authorization"] == "Bearer rotated"


def test_backoff_is_immediate_first_then_grows_and_is_capped():
    assert backoff_delay(0, 10) == 0
    assert 0.1 < backoff_delay(1, 10) < 0.2
    assert backoff_delay(50, 3.0) == 3.0


# -- persistence ----------------------------------------------------------------------------


def test_the_last_good_bundle_is_persisted_and_used_when_the_control_plane_is_down(signer, verification, tmp_path):
    persist = tmp_path / "bundles" / "prod"
    with BundleServer() as server:
        built = small_bundle(signer, revision="persisted-rev")
        server.state.publish(built)
        make_client(server, verification, persist_dir=persist).poll_once()
        url = server.url
    assert sorted(p.name for p in persist.iterdir()) == ["bundle.json", "bundle.tar.gz"]  # no temporary files left
    assert (persist / "bundle.tar.gz").read_bytes() == built.archive
    assert json.loads((persist / "bundle.json").read_text())["etag"] == built.etag

    # The server is gone: a new client starts from the persisted bundle, verified again.
    offline = BundleClient(url, "bundles/prod", token="env-token", verification=verification, persist_dir=persist, min_delay=0.1,
                           max_delay=0.2)
    offline.start()
    try:
        assert offline.wait_until_ready(1)
        assert offline.active.revision == "persisted-rev"
        assert offline.status().source == "persisted"
        assert offline.etag == built.etag  # so the next request can be a conditional GET
        deadline = time.monotonic() + 3
        while not offline.status().code and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "cannot reach the bundle service" in offline.status().message
        assert offline.active.revision == "persisted-rev"
    finally:
        offline.stop()


def test_a_tampered_persisted_bundle_is_not_loaded(signer, verification, tmp_path):
    source = small_bundle(signer).files["warden/decision.rego"]
    bad = small_bundle(signer, tamper={"warden/decision.rego": source + b"#"})
    (tmp_path / "bundle.tar.gz").write_bytes(bad.archive)
    client = BundleClient("http://127.0.0.1:9", "bundles/prod", verification=verification, persist_dir=tmp_path)
    assert client.load_persisted() is None
    assert client.active is None
    assert "persisted bundle refused" in client.status().message
    assert "warden/decision.rego" in client.status().message


def test_the_store_drops_an_etag_that_does_not_describe_the_archive(signer, tmp_path):
    store = BundleStore(tmp_path)
    bundle = parse_bundle(small_bundle(None).archive, etag='"e1"')
    store.save(bundle)
    assert store.load() == (bundle.archive, '"e1"')
    (tmp_path / "bundle.tar.gz").write_bytes(small_bundle(None, revision="other").archive)
    assert store.load()[1] == ""


def test_verification_keys_refuse_bad_configuration():
    with pytest.raises(ValueError, match="not a PEM public key"):
        VerificationKey.from_pem("k", "not a key")
    with pytest.raises(ValueError, match="unsupported algorithm"):
        VerificationKey("k", algorithm="none", key="x")
    with pytest.raises(ValueError, match="not among the configured keys"):
        VerificationConfig(keys={}, keyid="missing")


def test_hs256_signed_bundles_verify_with_the_shared_secret():
    import base64
    import hashlib
    import hmac

    files = {".manifest": b'{"revision":"hs"}'}
    payload = {"files": [{"name": ".manifest", "hash": opa_hash(".manifest", files[".manifest"]), "algorithm": "SHA-256"}]}
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(compact({'alg': 'HS256'}))}.{b64(compact(payload))}"
    mac = hmac.new(b"secret", signing_input.encode(), hashlib.sha256).digest()
    files[".signatures.json"] = json.dumps({"signatures": [f"{signing_input}.{b64(mac)}"]}).encode()
    config = VerificationConfig(keys={"hs": VerificationKey("hs", "HS256", "secret")}, keyid="hs")
    assert parse_bundle(pack(files), verification=config).revision == "hs"
    wrong = VerificationConfig(keys={"hs": VerificationKey("hs", "HS256", "other")}, keyid="hs")
    with pytest.raises(BundleVerificationError):
        parse_bundle(pack(files), verification=wrong)


def test_persisted_files_are_written_through_a_rename(monkeypatch, tmp_path):
    import os

    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((Path(a).name, Path(b).name)), real_replace(a, b)))
    BundleStore(tmp_path).save(parse_bundle(small_bundle(None).archive, etag='"e"'))
    assert [target for _, target in renames] == ["bundle.tar.gz", "bundle.json"]
    assert all(source.startswith(".") and source.endswith(".tmp") for source, _ in renames)


def test_the_package_line_is_read_by_the_one_shared_parser(signer, verification):
    """`package warden  # comment` is inside the roots; a module whose package cannot be read
    is refused rather than let past the roots check."""
    commented = {"warden/decision.rego": "# the decision\npackage warden  # refunds team\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n"}
    bundle = parse_bundle(small_bundle(signer, modules=commented).archive, verification=verification)
    assert list(bundle.modules) == ["warden/decision.rego"]
    outside = {"x.rego": "package elsewhere  # not in the roots\n\nimport rego.v1\n\nx := 1\n"}
    with pytest.raises(BundleError, match="do not permit 'package elsewhere'"):
        parse_bundle(small_bundle(signer, modules=outside).archive, verification=verification)
    unreadable = {"x.rego": "import rego.v1\n\nx := 1\n"}
    with pytest.raises(BundleError, match="no package declaration"):
        parse_bundle(small_bundle(signer, modules=unreadable).archive, verification=verification)
