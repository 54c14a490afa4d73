"""Delegation in the control plane: registry rules (admin API), person-issued grants,
revocations travelling in the bundle data, and sessions linked through their chains."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agents_sdk.delegation import DelegationRefused, decode_chain, encode_chain, grant_hash, verify_chain
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.records import ActionSigner
from agents_sdk.tests.delegation_fixtures import Team
from agents_sdk.tests.signed_bundles import library_modules
from controlplane.bundles import services as bundle_services
from controlplane.bundles.selectors import registry_data
from controlplane.changelog.models import ObjectChange
from controlplane.identity.models import Agent, AgentKey
from tests.audit.conftest import route_verifications, upload
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db
PAGE = (Path(__file__).resolve().parents[2] / "docs" / "delegation.md").read_text("utf-8")
RULES = "/api/v1/delegation/rules/"


@pytest.fixture
def team(db) -> Team:
    team = Team()
    for name, identity in team.ids.items():
        agent = AgentFactory(name=name, scopes=list(identity.scopes), environments=["prod"])
        AgentKey.objects.create(key_id=identity.key_id, agent=agent, public_key=identity.public_key_b64)
    return team


@pytest.fixture
def prod(admin_user):
    return bundle_services.create_environment(name="prod", by=admin_user)


def bundle_registry(prod) -> dict:
    return registry_data(prod)


def test_the_rule_on_the_page_is_accepted_and_reaches_the_bundle(admin_client, team, prod):
    body = json.loads(re.search(r"<!-- example: rule -->\n```http\nPUT \S+\n(.*?)```", PAGE, re.DOTALL).group(1))
    answer = admin_client.put(f"{RULES}orchestrator/", body, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["may_delegate_to"] == ["researcher"]
    data = bundle_registry(prod)["delegation"]
    assert data["rules"]["orchestrator"] == {"may_delegate_to": ["researcher"], "max_depth": 2, "max_lifetime_seconds": 900}
    assert {entry["agent"] for entry in data["keys"].values()} == {"orchestrator", "researcher", "executor"}
    assert ObjectChange.objects.filter(object_repr__contains="delegation rule of orchestrator").exists()
    assert admin_client.get(f"{RULES}orchestrator/").json()["max_depth"] == 2


@pytest.mark.parametrize("body, field", [
    ({"may_delegate_to": ["Not A Name"]}, "may_delegate_to"),
    ({"may_delegate_to": ["researcher"], "max_depth": 0}, "max_depth"),
    ({"may_delegate_to": ["researcher"], "max_lifetime_seconds": -1}, "max_lifetime_seconds"),
    ({"may_delegate_to": "researcher"}, "may_delegate_to"),
    ({"may_delegate_to": ["orchestrator"]}, "may_delegate_to"),
])
def test_bad_rules_are_refused_naming_the_field(admin_client, team, body, field):
    answer = admin_client.put(f"{RULES}orchestrator/", body, format="json")
    assert answer.status_code == 400 and field in json.dumps(answer.json()), answer.content


def test_only_admins_edit_rules(token_client, team):
    answer = token_client("auditor").put(f"{RULES}orchestrator/", {"may_delegate_to": ["researcher"]}, format="json")
    assert answer.status_code == 403


def test_unknown_agent_rule_is_a_404(admin_client, team):
    assert admin_client.put(f"{RULES}ghost/", {"may_delegate_to": []}, format="json").status_code == 404


def test_person_issued_grant_verifies_against_the_bundle_and_starts_a_chain(admin_client, team, prod):
    admin_client.put(f"{RULES}orchestrator/", {"may_delegate_to": ["researcher"], "may_act_for": ["@example.com"]},
                     format="json")
    answer = admin_client.post("/api/v1/delegation/grants/", {
        "audience": "orchestrator", "scopes": ["read:docs", "write:files"], "session": "s-orch",
        "constraints": {"path_prefix": "/data/"}, "lifetime_seconds": 600, "task": "quarterly report"}, format="json")
    assert answer.status_code == 201, answer.content
    token = answer.json()["token"]
    (root,) = decode_chain(token)
    assert root["iss"].startswith("person:") and root["sub"] == "orchestrator"
    registry = bundle_registry(prod)
    assert root["kid"] in registry["delegation"]["authorities"]
    facts = verify_chain(token, registry, agent="orchestrator", session_id="s-orch").facts()
    assert facts["chain"][0] == root["iss"] and facts["agents"] == ["orchestrator"]
    # The orchestrator extends it; the person's constraint holds below.
    second = team.grant("orchestrator", "researcher", ["read:docs"], "s-res", parent=root,
                        constraints={"path_prefix": "/data/reports/"})
    extended = verify_chain(encode_chain([root, second]), registry, agent="researcher", session_id="s-res").facts()
    assert extended["chain"] == [root["iss"], "orchestrator", "researcher"]


def test_person_grants_only_from_the_people_the_agent_may_act_for(admin_client, team, prod):
    grant = {"audience": "orchestrator", "scopes": ["read:docs"], "session": "s-orch"}
    refused = admin_client.post("/api/v1/delegation/grants/", grant, format="json")  # no rule: nobody
    assert refused.status_code == 409 and "may_act_for" in json.dumps(refused.json()), refused.content
    answer = admin_client.put(f"{RULES}orchestrator/", {"may_delegate_to": [], "may_act_for": ["Admin-User@Example.com"]},
                              format="json")
    assert answer.status_code == 200 and answer.json()["may_act_for"] == ["admin-user@example.com"]
    token = admin_client.post("/api/v1/delegation/grants/", grant, format="json").json()["token"]
    registry = bundle_registry(prod)
    assert registry["delegation"]["rules"]["orchestrator"]["may_act_for"] == ["admin-user@example.com"]
    verify_chain(token, registry, agent="orchestrator", session_id="s-orch")
    # Narrowing the list afterwards refuses the grant already issued, in the engines too.
    admin_client.put(f"{RULES}orchestrator/", {"may_delegate_to": [], "may_act_for": ["@example.org"]}, format="json")
    with pytest.raises(DelegationRefused, match="link 1 .*: allowlist: orchestrator may not act for person:admin-user"):
        verify_chain(token, bundle_registry(prod), agent="orchestrator", session_id="s-orch")
    assert admin_client.post("/api/v1/delegation/grants/", grant, format="json").status_code == 409


@pytest.mark.parametrize("entry", ["not an address", "a@b@c", "@", 7])
def test_bad_may_act_for_entries_are_refused(admin_client, team, entry):
    answer = admin_client.put(f"{RULES}orchestrator/", {"may_delegate_to": [], "may_act_for": [entry]}, format="json")
    assert answer.status_code == 400 and "may_act_for" in json.dumps(answer.json()), answer.content


def test_person_grant_beyond_the_agents_scopes_is_refused(admin_client, team):
    admin_client.put(f"{RULES}orchestrator/", {"may_delegate_to": [], "may_act_for": ["*"]}, format="json")
    answer = admin_client.post("/api/v1/delegation/grants/", {
        "audience": "orchestrator", "scopes": ["admin:everything"], "session": "s-1"}, format="json")
    assert answer.status_code == 400 and "scopes" in answer.json()


def test_revocation_travels_in_the_bundle_and_refuses_the_chain(admin_client, team, prod):
    registry = bundle_registry(prod)
    registry["delegation"]["rules"] = team.registry["delegation"]["rules"]
    chain = team.chain()
    verify_chain(chain, registry, agent="executor", session_id="s-exe")
    answer = admin_client.post("/api/v1/delegation/revocations/",
                               {"grant_hash": grant_hash(chain[0]), "reason": "compromised"}, format="json")
    assert answer.status_code == 201, answer.content
    registry = bundle_registry(prod)
    assert grant_hash(chain[0]) in registry["delegation"]["revoked"]
    registry["delegation"]["rules"] = team.registry["delegation"]["rules"]
    with pytest.raises(DelegationRefused, match="link 1 .*: revoked"):
        verify_chain(chain, registry, agent="executor", session_id="s-exe")
    again = admin_client.post("/api/v1/delegation/revocations/", {"grant_hash": grant_hash(chain[0])}, format="json")
    assert again.status_code == 409
    assert admin_client.post("/api/v1/delegation/revocations/", {"grant_hash": "xyz"}, format="json").status_code == 400


def test_sessions_are_linked_through_the_chains_records_carry(admin_client, team, monkeypatch,
                                                              django_capture_on_commit_callbacks, client):
    from controlplane.audit import verification

    route_verifications(monkeypatch, verification.verify_batch)
    chain = team.chain()
    backend = EmbeddedBackend.from_modules(library_modules(), team.data())
    for name, session, token in (("researcher", "s-res", encode_chain(chain[:1])),
                                 ("executor", "s-exe", encode_chain(chain))):
        identity = team.ids[name]
        guard = Guard(identity, backend, environment="prod", session_id=session, signer=ActionSigner(identity))
        assert guard.check("doc_search", {"query": "q"}, delegation=token).effect == "allow"
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(client, identity, guard.signer.session_log()).status_code == 202
    answer = admin_client.get("/api/v1/delegation/sessions/", {"session_id": "s-res"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["agent"] == "researcher"
    assert body["parents"] == [{"principal": "orchestrator", "session_id": "s-orch"}]
    assert [(c["agent"], c["session_id"]) for c in body["children"]] == [("executor", "s-exe")]
    below = admin_client.get("/api/v1/delegation/sessions/", {"session_id": "s-exe"}).json()
    assert below["parents"] == [{"principal": "orchestrator", "session_id": "s-orch"},
                                {"principal": "researcher", "session_id": "s-res"}]
    assert admin_client.get("/api/v1/delegation/sessions/").status_code == 400

