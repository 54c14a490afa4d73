"""The approval API: agents file signed requests; hostile requests are refused with a 4xx
and leave nothing behind; people decide; four-eyes releases; signed webhooks."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import canonical_json
from controlplane.accounts import services as account_services
from controlplane.approvals.models import ApprovalRequest
from controlplane.bundles import services as bundle_services
from controlplane.bundles.models import Environment
from controlplane.changelog.models import ObjectChange
from controlplane.identity.models import Agent
from tests.approvals.conftest import file_signed, request_body

pytestmark = pytest.mark.django_db


def client_of(user) -> APIClient:
    _, token = account_services.create_token(user=user, name="t", by=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_an_agent_files_once_and_a_person_approves(identity, people):
    body = request_body(identity)
    first = file_signed(identity, body)
    assert first.status_code == 201, first.content
    answer = first.json()
    assert answer["state"] == "pending" and answer["url"].endswith(f"/approvals/{answer['id']}")
    assert answer["masked_args"]["card_number"] != "4242424242424242" and "args" not in answer

    queue = client_of(people.auditor).get("/api/v1/approvals/?state=pending").json()
    assert [r["id"] for r in queue["results"]] == [answer["id"]]
    assert client_of(people.auditor).post(f"/api/v1/approvals/{answer['id']}/approve/", {}).status_code == 403
    refused = client_of(people.owner).post(f"/api/v1/approvals/{answer['id']}/approve/", {"comment": "mine"})
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    approved = client_of(people.approver).post(f"/api/v1/approvals/{answer['id']}/approve/", {"comment": "ok"})
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    assert approved.json()["grant"] is None  # people never see the grant token


def test_the_same_action_filed_again_finds_its_request(identity):
    body = request_body(identity)
    first = file_signed(identity, body).json()
    import time

    time.sleep(1.05)  # a new timestamp: a new signature, as the SDK's retry makes
    second = file_signed(identity, body)
    assert second.status_code == 200 and second.json()["id"] == first["id"]
    assert ApprovalRequest.objects.count() == 1


@pytest.mark.parametrize("case", ["forged", "replayed", "unknown-agent", "suspended", "revoked-key", "oversized",
                                  "bad-hash", "not-json", "no-headers", "deep-args", "unknown-tool"])
def test_hostile_requests_are_refused_and_nothing_is_stored(identity, case, people):
    body = request_body(identity)
    raw = canonical_json(body)
    if case == "forged":
        impostor = AgentIdentity.create("pay-bot", "mallory@example.com", [])
        answer = file_signed(impostor, raw, HTTP_X_WARDEN_KEY_ID=identity.key_id)
        expected = 401
    elif case == "replayed":
        from agents_sdk.shipper import request_headers

        headers = request_headers(identity, raw)
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        assert APIClient().generic("POST", "/api/v1/approvals/requests/", raw, content_type="application/json",
                                   **meta).status_code == 201
        logged = ObjectChange.objects.count()
        ApprovalRequest.objects.all().delete()  # what must not come back is a second store
        answer = APIClient().generic("POST", "/api/v1/approvals/requests/", raw, content_type="application/json", **meta)
        assert answer.status_code == 409 and ApprovalRequest.objects.count() == 0
        assert ObjectChange.objects.count() == logged
        return
    elif case == "unknown-agent":
        stranger = AgentIdentity.create("ghost-bot", "x@example.com", [])
        answer = file_signed(stranger, raw)
        expected = 401
    elif case == "suspended":
        Agent.objects.filter(name="pay-bot").update(status="suspended")
        answer = file_signed(identity, raw)
        expected = 403
    elif case == "revoked-key":
        from django.utils import timezone

        Agent.objects.get(name="pay-bot").keys.update(revoked_at=timezone.now())
        answer = file_signed(identity, raw)
        expected = 401
    elif case == "oversized":
        huge = {**body, "args": {"blob": "x" * 300_000}}
        answer = file_signed(identity, canonical_json(huge))
        expected = 413
    elif case == "bad-hash":
        answer = file_signed(identity, {**body, "args": {**body["args"], "amount": 1}})
        expected = 400
    elif case == "not-json":
        answer = file_signed(identity, b"{not json")
        expected = 400
    elif case == "no-headers":
        answer = APIClient().generic("POST", "/api/v1/approvals/requests/", raw, content_type="application/json")
        expected = 401
    elif case == "deep-args":
        deep: dict = {}
        node = deep
        for _ in range(200):
            node["a"] = {}
            node = node["a"]
        answer = file_signed(identity, json.dumps({**body, "args": deep}).encode())
        expected = 400
    else:
        answer = file_signed(identity, {**body, "tool": "rm_rf"})
        expected = 400
    assert answer.status_code == expected, answer.content
    assert ApprovalRequest.objects.count() == 0
    assert not ObjectChange.objects.filter(object_type__model="approvalrequest").exists()


def test_the_wait_answers_only_the_agent_that_filed(identity, people, payment_tool):
    filed = file_signed(identity, request_body(identity)).json()
    other = AgentIdentity.create("other-bot", "o@example.com", [])
    from tests.approvals.conftest import register_agent

    register_agent(other)
    from agents_sdk.shipper import request_headers

    def wait(who):
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request_headers(who, b"").items()}
        return APIClient().get(f"/api/v1/approvals/requests/{filed['id']}/wait/?timeout=0", **meta)

    assert wait(other).status_code == 404
    assert wait(identity).json()["state"] == "pending"


def test_four_eyes_release_is_refused_for_the_author_and_made_by_a_second_person(people):
    prod = bundle_services.create_environment(name="prod", by=people.admin)
    dev = bundle_services.create_environment(name="dev", by=people.admin)
    author = client_of(people.author)
    assert author.post("/api/v1/environments/dev/publish/", {"message": "v1", "override_reason": "first release"},
                       format="json").status_code == 200
    held = author.post("/api/v1/environments/dev/promote/", {"to": "prod", "message": "ship v1"}, format="json")
    assert held.status_code == 202, held.content
    request_id = held.json()["id"]
    prod.refresh_from_db()
    assert prod.active_bundle is None  # nothing released yet

    people.author.groups.add(*people.approver.groups.all())  # even an author who is also an approver
    refused = client_of(people.author).post(f"/api/v1/approvals/{request_id}/approve/", {"comment": "self"})
    assert refused.status_code == 403 and "author" in refused.json()["detail"]
    prod.refresh_from_db()
    assert prod.active_bundle is None

    accepted = client_of(people.approver).post(f"/api/v1/approvals/{request_id}/approve/", {"comment": "reviewed"})
    assert accepted.status_code == 200 and accepted.json()["state"] == "approved"
    prod.refresh_from_db()
    dev.refresh_from_db()
    assert prod.active_bundle is not None
    activation = prod.activations.get()
    assert activation.activated_by == people.author and "approved by bob" in activation.reason


def test_dev_publishes_without_a_second_person(people):
    bundle_services.create_environment(name="dev", by=people.admin)
    assert client_of(people.author).post("/api/v1/environments/dev/publish/", {"override_reason": "first release"},
                                  format="json").status_code == 200
    assert ApprovalRequest.objects.count() == 0


def test_approvers_get_an_email_for_a_new_request(identity, people, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file_signed(identity, request_body(identity))
    (mail,) = mailoutbox
    assert "payment_create" in mail.subject and "bob@example.com" in mail.to and "/approvals/" in mail.body
    assert "4242424242424242" not in mail.body


def test_a_rule_outside_the_bounds_is_refused_naming_the_field(people):
    admin = client_of(people.admin)
    for body, field in [({"quorum": 0}, "quorum"), ({"quorum": 11}, "quorum"), ({"grant_ttl_seconds": 0}, "grant_ttl_seconds")]:
        answer = admin.post("/api/v1/approval-rules/", {"environment": "prod", **body}, format="json")
        assert answer.status_code == 400 and field in answer.json()
    assert admin.post("/api/v1/approval-rules/", {"environment": "prod", "quorum": 2}, format="json").status_code == 201
    assert admin.post("/api/v1/approval-rules/", {"environment": "prod", "quorum": 3}, format="json").status_code == 400


def test_release_gates_and_waiting_releases_through_the_api(people):
    bundle_services.create_environment(name="prod", by=people.admin)
    bundle_services.create_environment(name="staging", by=people.admin)
    admin, author = client_of(people.admin), client_of(people.author)
    gates = {g["environment"]: g for g in admin.get("/api/v1/release-gates/").json()["results"]}
    assert (gates["prod"]["four_eyes"], gates["prod"]["configured"]) == (True, False)  # the default
    assert gates["staging"]["four_eyes"] is False

    # Only admins change a gate; the change is in the change log.
    assert author.put("/api/v1/release-gates/staging/", {"four_eyes": True}, format="json").status_code == 403
    turned = admin.put("/api/v1/release-gates/staging/", {"four_eyes": True}, format="json")
    assert turned.status_code == 200 and turned.json()["four_eyes"] is True and turned.json()["configured"] is True
    assert admin.put("/api/v1/release-gates/staging/", {"four_eyes": "maybe"}, format="json").status_code == 400
    assert ObjectChange.objects.filter(message__contains="four-eyes releases on for staging by grace").exists()

    held = author.post("/api/v1/environments/staging/publish/", {"message": "v2", "override_reason": "first release"},
                       format="json")
    assert held.status_code == 202, held.content
    assert admin.get("/api/v1/release-gates/staging/").json()["pending_releases"] == 1
    queue = client_of(people.approver).get("/api/v1/approvals/?kind=release&state=pending").json()["results"]
    assert [(r["id"], r["tool"], r["requested_by"]) for r in queue] == [(held.json()["id"], "bundle.publish", "frank")]

    # The author cannot deny it either; a second person can, with a reason.
    people.author.groups.add(*people.approver.groups.all())
    assert client_of(people.author).post(f"/api/v1/approvals/{queue[0]['id']}/deny/", {}).status_code == 403
    denied = client_of(people.approver).post(f"/api/v1/approvals/{queue[0]['id']}/deny/", {"comment": "not today"})
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    assert Environment.objects.get(name="staging").active_bundle is None
