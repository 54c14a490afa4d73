"""The agent's sandbox profile: edited through the API, validated by the SDK's own rule,
carried in the signed bundle, and what the SDK builds the sandbox from."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from agents_sdk.bundles.archive import parse_bundle
from agents_sdk.bundles.keys import VerificationConfig, VerificationKey
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from agents_sdk.sandbox import Permissions
from agents_sdk.sandbox.governed import SandboxedAgent
from agents_sdk.sandbox.runner import UNPRIVILEGED_GID, UNPRIVILEGED_UID
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import SigningKey
from controlplane.changelog.models import ObjectChange
from controlplane.identity.models import Agent
from controlplane.policies.models import Tool
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db

PROFILE = {"file_read": ["/srv/data"], "file_write": ["/srv/out"], "limits": {"wall_seconds": 5, "memory_mb": 256}}


def test_an_admin_sets_the_profile_and_the_change_is_logged(admin_client):
    AgentFactory(name="coder")
    response = admin_client.patch("/api/v1/agents/coder/", {"sandbox_profile": PROFILE}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["sandbox_profile"] == PROFILE
    assert Agent.objects.get(name="coder").sandbox_profile == PROFILE
    change = ObjectChange.objects.filter(object_id=str(Agent.objects.get(name="coder").pk)).latest("time")
    assert change.prechange_data["sandbox_profile"] == {}
    assert change.postchange_data["sandbox_profile"] == PROFILE


def test_a_new_agent_has_no_profile_until_one_is_set(admin_client):
    response = admin_client.post(
        "/api/v1/agents/", {"name": "fresh", "owner_email": "o@example.com"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["sandbox_profile"] == {}


def test_only_admins_change_the_profile(token_client):
    AgentFactory(name="coder")
    for role in ("policy_author", "approver", "auditor"):
        response = token_client(role).patch("/api/v1/agents/coder/", {"sandbox_profile": PROFILE}, format="json")
        assert response.status_code == 403
    assert Agent.objects.get(name="coder").sandbox_profile == {}


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ([], "must be an object"),
        ("file_read=/", "must be an object"),
        ({"file_read": ["/"]}, "file_read[0]: '/' would expose the whole host"),
        ({"file_read": ["etc"]}, "must be absolute"),
        ({"file_write": ["/srv/../etc"]}, "must not contain '.', '..'"),
        ({"file_write": ["/srv/\u0000"]}, "NUL"),
        ({"file_read": ["/proc/self/root"]}, "kernel interface"),
        ({"limits": {"memory_mb": 10**12}}, "limits.memory_mb"),
        ({"limits": {"processes": "many"}}, "limits.processes: must be an integer"),
        ({"limits": {"unknown": 1}}, "limits.unknown: unknown limit"),
        ({"network": ["evil.example"]}, "network: unknown field"),
        ({"file_read": [{"nested": {"deep": ["x"]}}]}, "file_read[0]"),
    ],
)
def test_hostile_profiles_are_refused_with_the_field_named(admin_client, profile, message):
    AgentFactory(name="coder")
    response = admin_client.patch("/api/v1/agents/coder/", {"sandbox_profile": profile}, format="json")
    assert response.status_code == 400, response.content
    assert message in str(response.json())
    assert Agent.objects.get(name="coder").sandbox_profile == {}


def test_a_lone_surrogate_in_a_path_is_refused(admin_client):
    AgentFactory(name="coder")
    body = b'{"sandbox_profile": {"file_read": ["/srv/\\udc80"]}}'
    response = admin_client.patch("/api/v1/agents/coder/", body, content_type="application/json")
    assert response.status_code == 400
    assert Agent.objects.get(name="coder").sandbox_profile == {}


def test_the_profile_travels_in_the_bundle_next_to_the_policys_allowlists(admin_user):
    dev = bundle_services.create_environment(name="dev", by=admin_user)
    AgentFactory(
        name="coder", environments=["dev"], sandbox_profile=PROFILE,
        egress_allow_hosts=["pypi.org"], shell_allow_commands=["python3"],
    )
    AgentFactory(name="plain", environments=["dev"])
    bundle = bundle_services.publish_policies(dev, by=admin_user)
    agents = bundle_services.bundle_data(dev)["warden_registry"]["agents"]
    assert agents["coder"]["sandbox"] == PROFILE
    assert agents["plain"]["sandbox"] == {}
    permissions = Permissions.from_registry(_signed_registry(bundle)["agents"]["coder"])
    assert permissions == Permissions(
        file_read=["/srv/data"], file_write=["/srv/out"], network_access=["pypi.org"],
        shell_commands=["python3"], limits={"wall_seconds": 5, "memory_mb": 256},
    )


def _signed_registry(bundle) -> dict:
    key = SigningKey.objects.get(pk=bundle.signing_key_id)
    config = VerificationConfig(keys={key.kid: VerificationKey.from_pem(key.kid, key.public_key_pem)}, keyid=key.kid)
    return parse_bundle(bytes(bundle.archive), verification=config).data["warden_registry"]


def test_a_profile_change_reaches_the_sandbox_through_the_signed_bundle(admin_user):
    """End to end: registry → signed bundle → SDK verifies it → Guard decides → sandbox runs."""
    base = tempfile.mkdtemp(prefix="warden-sandbox-", dir="/tmp")
    os.chmod(base, 0o755)
    out = os.path.join(base, "out")
    os.mkdir(out)
    if os.geteuid() == 0:
        os.chown(out, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    try:
        dev = bundle_services.create_environment(name="dev", by=admin_user)
        Tool.objects.create(name="run_python", scopes=["exec:code"])
        agent = AgentFactory(
            name="coder", environments=["dev"], scopes=["exec:code"], shell_allow_commands=["python3"],
            sandbox_profile={"file_write": [out]},
        )
        bundle = bundle_services.publish_policies(dev, by=admin_user)
        identity = AgentIdentity.create("coder", agent.owner_email, ["exec:code"])
        signer = ActionSigner(identity)
        key = SigningKey.objects.get(pk=bundle.signing_key_id)
        config = VerificationConfig(
            keys={key.kid: VerificationKey.from_pem(key.kid, key.public_key_pem)}, keyid=key.kid
        )
        verified = parse_bundle(bytes(bundle.archive), verification=config)
        backend = EmbeddedBackend.from_modules(verified.modules, verified.data)
        guard = Guard(identity, backend, environment="dev", session_id="s-1", signer=signer)
        result = SandboxedAgent(guard).python(f"open('{out}/made', 'w').write('hi'); print('done')")
        assert result.stdout == b"done\n" and open(os.path.join(out, "made")).read() == "hi"
        run = signer.session_log("s-1")[-1]["payload"]["sandbox"]
        assert run["profile_hash"] == Permissions.from_registry(verified.data["warden_registry"]["agents"]["coder"]).profile_hash
    finally:
        shutil.rmtree(base, ignore_errors=True)
