"""AgentIdentity: creation, key id, files, passphrases, rotation and registration."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from agents_sdk import keys
from agents_sdk.errors import IdentityError, IdentityExistsError, PassphraseError, RegistrationError, WardenError
from agents_sdk.identity import AgentIdentity, metadata_path_for

# -- creation and validation -------------------------------------------------------------


def test_create_keeps_name_owner_and_scopes_in_order_without_duplicates():
    identity = AgentIdentity.create("billing-bot", "team@example.com", ["write:refunds", "read:*", "write:refunds"])
    assert identity.name == "billing-bot"
    assert identity.owner == "team@example.com"
    assert identity.scopes == ("write:refunds", "read:*")


@pytest.mark.parametrize("name", ["", "Billing", "billing bot", "-bot", "bot-", "a" * 65, "bot/../x", None])
def test_invalid_name_is_refused(name):
    with pytest.raises(IdentityError, match="agent name"):
        AgentIdentity.create(name, "team@example.com")


@pytest.mark.parametrize("owner", ["", "team", "team@", "@example.com", "team@example", "a b@example.com"])
def test_invalid_owner_is_refused(owner):
    with pytest.raises(IdentityError, match="owner"):
        AgentIdentity.create("bot", owner)


@pytest.mark.parametrize("scope", ["read", "read:", ":tickets", "Read:tickets", "read tickets", "read:ti ckets", 42])
def test_invalid_scope_is_refused_by_name(scope):
    with pytest.raises(IdentityError, match="scope"):
        AgentIdentity.create("bot", "team@example.com", ["read:tickets", scope])


def test_scopes_given_as_one_string_are_refused():
    with pytest.raises(IdentityError, match="list"):
        AgentIdentity.create("bot", "team@example.com", "read:tickets")


def test_identity_errors_are_warden_errors():
    assert issubclass(IdentityError, WardenError)
    assert issubclass(RegistrationError, WardenError)


# -- key id and public key ---------------------------------------------------------------


def test_key_id_is_the_control_planes_fingerprint(identity):
    raw = identity.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert identity.key_id == keys.key_fingerprint(raw)
    assert identity.key_id == hashlib.sha256(raw).hexdigest()


def test_public_key_b64_is_base64_of_the_raw_key_and_parses_back(identity):
    raw = identity.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(identity.public_key_b64) == raw
    parsed = keys.parse_public_key(identity.public_key_b64)
    assert keys.key_fingerprint(keys.raw_public_key(parsed)) == identity.key_id
    assert keys.key_fingerprint(keys.raw_public_key(keys.parse_public_key(identity.public_key_pem))) == identity.key_id


def test_two_identities_have_different_keys(identity, other_identity):
    assert identity.key_id != other_identity.key_id


def test_repr_does_not_show_the_private_key(identity):
    assert "private_key" not in repr(identity)


# -- save and load -----------------------------------------------------------------------


def test_saved_key_is_mode_0600_pkcs8_and_loads_back(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = AgentIdentity.load(path)
    assert loaded.key_id == identity.key_id
    assert (loaded.name, loaded.owner, loaded.scopes) == (identity.name, identity.owner, identity.scopes)
    identity.public_key.verify(loaded.sign(b"hello"), b"hello")


def test_key_is_0600_even_with_a_permissive_umask(identity, tmp_path):
    old = os.umask(0)
    try:
        path = identity.save(tmp_path / "bot.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_metadata_beside_the_key_holds_public_facts_only(identity, tmp_path):
    path = identity.save(tmp_path / "keys" / "bot.pem")
    metadata_path = metadata_path_for(path)
    assert metadata_path == tmp_path / "keys" / "bot.pem.json"
    metadata = json.loads(metadata_path.read_text())
    assert metadata["name"] == "billing-bot"
    assert metadata["owner"] == "payments-team@example.com"
    assert metadata["scopes"] == ["read:tickets", "write:refunds"]
    assert metadata["key_id"] == identity.key_id
    assert metadata["public_key"] == identity.public_key_b64
    assert "PRIVATE" not in metadata_path.read_text()


def test_passphrase_encrypts_the_key(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem", passphrase="correct horse battery staple")
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    loaded = AgentIdentity.load(path, passphrase="correct horse battery staple")
    assert loaded.key_id == identity.key_id


def test_wrong_passphrase_raises_a_clear_error(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem", passphrase="correct horse battery staple")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        AgentIdentity.load(path, passphrase="Tr0ub4dor&3")


def test_missing_passphrase_for_an_encrypted_key_is_explained(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem", passphrase="secret")
    with pytest.raises(PassphraseError, match="encrypted; a passphrase is required"):
        AgentIdentity.load(path)


def test_passphrase_for_an_unencrypted_key_is_refused(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    with pytest.raises(PassphraseError, match="not encrypted"):
        AgentIdentity.load(path, passphrase="secret")


def test_save_refuses_to_overwrite_and_leaves_the_old_key_alone(identity, other_identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    before = path.read_bytes()
    with pytest.raises(IdentityExistsError, match="overwrite=True"):
        other_identity.save(path)
    assert path.read_bytes() == before
    assert AgentIdentity.load(path).key_id == identity.key_id


def test_save_refuses_when_only_the_metadata_exists(identity, tmp_path):
    path = tmp_path / "bot.pem"
    metadata_path_for(path).write_text("{}")
    with pytest.raises(IdentityExistsError):
        identity.save(path)
    assert not path.exists()


def test_save_with_overwrite_replaces_key_and_metadata(identity, other_identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    other_identity.save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert AgentIdentity.load(path).key_id == other_identity.key_id


def test_load_refuses_metadata_of_another_key(identity, other_identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    other = other_identity.save(tmp_path / "other.pem")
    metadata_path_for(path).write_text(metadata_path_for(other).read_text())
    with pytest.raises(IdentityError, match="do not belong together"):
        AgentIdentity.load(path)


def test_load_without_metadata_says_which_file_is_missing(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    metadata_path_for(path).unlink()
    with pytest.raises(IdentityError, match=r"bot\.pem\.json is missing"):
        AgentIdentity.load(path)


def test_load_refuses_a_key_that_is_not_ed25519(tmp_path, identity):
    from cryptography.hazmat.primitives.asymmetric import ec

    path = identity.save(tmp_path / "bot.pem")
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(IdentityError, match="not an Ed25519"):
        AgentIdentity.load(path)


def test_load_warns_when_the_key_is_readable_by_others(identity, tmp_path):
    path = identity.save(tmp_path / "bot.pem")
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        AgentIdentity.load(path)
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AgentIdentity.load(path)


# -- rotation ----------------------------------------------------------------------------


def test_rotate_gives_a_new_key_and_remembers_the_old_one(identity, tmp_path):
    rotated = identity.rotate()
    assert rotated.key_id != identity.key_id
    assert (rotated.name, rotated.owner, rotated.scopes) == (identity.name, identity.owner, identity.scopes)
    assert rotated.rotated_from == identity.key_id
    assert identity.rotated_from is None
    twice = rotated.rotate()
    assert twice.previous_key_ids == (rotated.key_id, identity.key_id)

    path = twice.save(tmp_path / "bot.pem")
    assert AgentIdentity.load(path).previous_key_ids == (rotated.key_id, identity.key_id)


# -- registration (client side, against a local stub server) -----------------------------


class StubControlPlane:
    """Answers POSTs from a table of ``path -> (status, json body)`` and records requests."""

    def __init__(self, routes: dict[str, tuple[int, Any]]):
        self.routes = routes
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                stub.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"null")}
                )
                status, answer = stub.routes.get(self.path, (404, {"detail": "Not found."}))
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "http://elsewhere.example/")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def control_plane() -> Iterator[StubControlPlane]:
    stub = StubControlPlane({})
    yield stub
    stub.close()


def test_register_posts_the_agent_then_its_public_key(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (201, {"name": "billing-bot", "status": "active"})
    control_plane.routes["/api/v1/agents/billing-bot/keys/"] = (201, {"key_id": identity.key_id, "status": "active"})

    registration = identity.register(
        control_plane.url + "/", "tok-123", display_name="Billing bot", risk_tier="limited", environments=["prod"]
    )

    assert registration.key_id == identity.key_id
    assert registration.agent == {"name": "billing-bot", "status": "active"}
    agent_request, key_request = control_plane.requests
    assert agent_request["path"] == "/api/v1/agents/"
    assert agent_request["json"] == {
        "name": "billing-bot",
        "display_name": "Billing bot",
        "owner_email": "payments-team@example.com",
        "scopes": ["read:tickets", "write:refunds"],
        "risk_tier": "limited",
        "environments": ["prod"],
    }
    assert key_request["path"] == "/api/v1/agents/billing-bot/keys/"
    assert key_request["json"] == {"public_key": identity.public_key_b64}
    for request in control_plane.requests:
        assert request["headers"]["Authorization"] == "Token tok-123"
        assert request["headers"]["Content-Type"] == "application/json"


def test_registration_never_sends_the_private_key(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (201, {})
    control_plane.routes["/api/v1/agents/billing-bot/keys/"] = (201, {"key_id": identity.key_id})
    identity.register(control_plane.url, "tok")
    private_raw = identity.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    sent = json.dumps([r["json"] for r in control_plane.requests])
    assert base64.b64encode(private_raw).decode() not in sent
    assert private_raw.hex() not in sent


def test_refusal_carries_the_servers_field_message(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (400, {"name": ["agent with this name already exists."]})
    with pytest.raises(RegistrationError) as caught:
        identity.register(control_plane.url, "tok")
    assert caught.value.status == 400
    assert "name: agent with this name already exists." in str(caught.value)
    assert caught.value.body == {"name": ["agent with this name already exists."]}
    assert len(control_plane.requests) == 1  # the key is not posted for a refused agent


def test_bad_token_carries_the_servers_detail(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (401, {"detail": "Invalid token."})
    with pytest.raises(RegistrationError, match="401: Invalid token.") as caught:
        identity.register(control_plane.url, "wrong")
    assert caught.value.status == 401


def test_non_json_error_body_is_shown(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (503, b"upstream unavailable")
    with pytest.raises(RegistrationError, match="503: upstream unavailable"):
        identity.register(control_plane.url, "tok")


def test_redirect_is_refused_rather_than_followed(identity, control_plane):
    control_plane.routes["/api/v1/agents/"] = (301, {})
    with pytest.raises(RegistrationError, match="redirected") as caught:
        identity.register(control_plane.url, "tok")
    assert caught.value.status == 301
    assert len(control_plane.requests) == 1


def test_key_id_disagreement_with_the_control_plane_is_an_error(identity, control_plane):
    control_plane.routes["/api/v1/agents/billing-bot/keys/"] = (201, {"key_id": "0" * 64})
    with pytest.raises(RegistrationError, match="stored key id 0000"):
        identity.register_key(control_plane.url, "tok")


def test_register_key_after_rotation_sends_the_new_key(identity, control_plane):
    rotated = identity.rotate()
    control_plane.routes["/api/v1/agents/billing-bot/keys/"] = (201, {"key_id": rotated.key_id})
    registration = rotated.register_key(control_plane.url, "tok")
    assert registration.key_id == rotated.key_id
    assert control_plane.requests[0]["json"] == {"public_key": rotated.public_key_b64}


def test_unreachable_control_plane_is_a_registration_error(identity, control_plane):
    url = control_plane.url
    control_plane.close()
    with pytest.raises(RegistrationError, match="cannot reach the control plane") as caught:
        identity.register(url, "tok", timeout=2)
    assert caught.value.status is None


@pytest.mark.parametrize("base_url", ["ftp://cp.example", "cp.example", ""])
def test_base_url_must_be_http(identity, base_url):
    with pytest.raises(RegistrationError, match="http"):
        identity.register(base_url, "tok")


def test_invalid_risk_tier_is_refused_before_any_request(identity, control_plane):
    with pytest.raises(IdentityError, match="risk_tier"):
        identity.register(control_plane.url, "tok", risk_tier="extreme")
    assert control_plane.requests == []


def test_a_saved_and_loaded_identity_registers_the_same_key(identity, control_plane, tmp_path):
    loaded = AgentIdentity.load(identity.save(Path(tmp_path) / "bot.pem"))
    control_plane.routes["/api/v1/agents/billing-bot/keys/"] = (201, {"key_id": identity.key_id})
    assert loaded.register_key(control_plane.url, "tok").key_id == identity.key_id
