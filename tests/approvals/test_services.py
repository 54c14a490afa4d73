"""The workflow through its services: filing, four eyes, quorum, expiry, grants, bundles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents_sdk.approvals import binding_failures, read_grant
from agents_sdk.bundles import VerificationConfig, VerificationKey
from controlplane.approvals import services
from controlplane.approvals.models import ApprovalRequest, ApprovalRule, ApprovalState
from controlplane.bundles import services as bundle_services
from controlplane.bundles.selectors import registry_data
from controlplane.bundles.signing import active_signing_key
from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.identity.models import Agent
from tests.approvals.conftest import payment_input, request_body

pytestmark = pytest.mark.django_db


def filed(identity, **overrides):
    body = {**request_body(identity, payment_input(**overrides.pop("input", {}))), **overrides}
    body.pop("idempotency_key_override", None)
    return services.file_request(Agent.objects.get(name=identity.name), **body)


def test_the_same_held_action_files_one_request(identity):
    first, created = filed(identity)
    again, created_again = filed(identity)
    assert created and not created_again and again.pk == first.pk
    assert ApprovalRequest.objects.count() == 1
    assert first.masked_args["card_number"] != "4242424242424242"  # people see it masked
    assert first.args["card_number"] == "4242424242424242"  # the grant binds the real one
    assert first.controls == ["eu_ai_act.art14(1)"]
    assert ObjectChange.objects.filter(object_id=str(first.pk), action="create").count() == 1


def test_a_suspended_agent_or_a_forged_hash_stores_nothing(identity):
    body = request_body(identity)
    agent = Agent.objects.get(name=identity.name)
    with pytest.raises(InvalidInput, match="args_sha256"):
        services.file_request(agent, **{**body, "args": {**body["args"], "amount": 1}})
    with pytest.raises(InvalidInput, match="does not run in"):
        services.file_request(agent, **{**body, "environment": "dev"})
    agent.status = "suspended"
    agent.save()
    with pytest.raises(services.NotEligible, match="suspended"):
        services.file_request(agent, **body)
    assert ApprovalRequest.objects.count() == 0


def test_four_eyes_refuses_the_owner_the_principal_and_non_approvers(identity, people):
    request, _ = filed(identity, on_behalf_of=["dave@example.com"])
    for person, reason in [(people.owner, "owner"), (people.customer, "acts for"), (people.auditor, "only approvers"),
                           (people.author, "only approvers")]:
        with pytest.raises(services.NotEligible, match=reason):
            services.approve(request, by=person, comment="ok")
    request.refresh_from_db()
    assert request.state == ApprovalState.PENDING and request.votes.count() == 0


def test_quorum_needs_distinct_approvers_then_issues_a_bound_signed_grant(identity, people):
    ApprovalRule.objects.create(environment="prod", tool_category="payment", quorum=2, grant_ttl_seconds=120)
    request, _ = filed(identity)
    assert request.quorum == 2
    services.approve(request, by=people.approver, comment="looks right")
    with pytest.raises(ConflictError, match="already decided"):
        services.approve(request, by=people.approver, comment="again")
    request.refresh_from_db()
    assert request.state == ApprovalState.PENDING and not request.grant_token
    services.approve(request, by=people.second, comment="agreed")
    request.refresh_from_db()
    assert request.state == ApprovalState.APPROVED

    key = active_signing_key()
    claims = read_grant(request.grant_token, VerificationConfig(keys={key.kid: VerificationKey.from_pem(key.kid, key.public_key_pem)}))
    assert claims["jti"] == request.grant_id and claims["agent"] == "pay-bot" and claims["environment"] == "prod"
    args = payment_input()["action"]["args"]
    assert binding_failures(claims, agent="pay-bot", environment="prod", tool="payment_create", args=args) == []
    assert binding_failures(claims, agent="other", environment="dev", tool="payment_create",
                            args={**args, "amount": 1}) == ["agent", "env", "args"]
    assert 110 <= claims["exp"] - claims["iat"] <= 120
    changes = ObjectChange.objects.filter(object_id=str(request.pk)).order_by("time")
    assert [c.user_name for c in changes] == ["system", "bob", "carol"]
    assert "agreed" in changes.last().message


def test_a_forged_grant_does_not_verify(identity, people):
    request, _ = filed(identity)
    services.approve(request, by=people.approver)
    request.refresh_from_db()
    key = active_signing_key()
    config = VerificationConfig(keys={key.kid: VerificationKey.from_pem(key.kid, key.public_key_pem)})
    header, payload, signature = request.grant_token.split(".")
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["agent"] = "evil-bot"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ValueError, match="does not verify"):
        read_grant(f"{header}.{forged}.{signature}", config)


def test_one_denial_ends_the_request(identity, people):
    request, _ = filed(identity)
    services.deny(request, by=people.approver, comment="wrong supplier")
    request.refresh_from_db()
    assert request.state == ApprovalState.DENIED and request.comment == "wrong supplier"
    with pytest.raises(ConflictError, match="denied, not pending"):
        services.approve(request, by=people.second)


def test_an_expired_request_cannot_be_approved_and_a_new_one_is_filed(identity, people):
    request, _ = filed(identity)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ConflictError, match="expired"):
        services.approve(request, by=people.approver)
    assert services.expire_due_requests() == 1
    request.refresh_from_db()
    assert request.state == ApprovalState.EXPIRED
    again, created = filed(identity)
    assert created and again.pk != request.pk


def test_the_bundle_carries_the_grant_until_its_consumption_arrives(identity, people):
    environment = bundle_services.create_environment(name="prod", by=people.admin)
    request, _ = filed(identity)
    assert registry_data(environment)["approvals"] == {}
    services.approve(request, by=people.approver)
    request.refresh_from_db()
    data = registry_data(environment)
    grant = data["approvals"][request.grant_id]
    assert grant["agent_id"] == "pay-bot" and grant["args"] == payment_input()["action"]["args"]
    assert grant["environment"] == "prod" and grant["expires_at_ns"] > 0
    assert data["approvals_consumed"] == []

    # Only the agent the grant binds can consume it.
    other = Agent.objects.create(name="other-bot", owner_email="x@example.com", environments=["prod"])
    assert not services.mark_consumed(request.grant_id, agent_id=other.pk, record_id="r-0")
    assert services.mark_consumed(request.grant_id, agent_id=request.agent_id, record_id="r-1")
    assert not services.mark_consumed(request.grant_id, agent_id=request.agent_id, record_id="r-2")
    data = registry_data(environment)
    assert data["approvals"] == {} and data["approvals_consumed"] == [request.grant_id]
    # A new grant for the same action needs a new request.
    again, created = filed(identity)
    assert created and again.pk != request.pk


def test_compliance_reads_decisions_with_requester_and_decider(identity, people):
    from types import SimpleNamespace

    from controlplane.approvals.selectors import compliance_records
    from controlplane.compliance.collectors.policy import APPROVAL_SOURCES

    assert compliance_records in APPROVAL_SOURCES  # registered by the app: evidence reads real records
    environment = SimpleNamespace(name="prod")
    start = timezone.now() - timedelta(hours=1)
    context = SimpleNamespace(environment=environment, period_start=start, period_end=timezone.now() + timedelta(hours=1))
    assert compliance_records(context) == []  # nothing decided: the collector stays at most partial
    request, _ = filed(identity)
    services.approve(request, by=people.approver, comment="ok")
    (record,) = compliance_records(context)
    assert (record.requested_by, record.decided_by, record.outcome) == ("alice@example.com", "bob@example.com", "granted")



def authored(name: str, params: dict, source: str):
    """An authored rule and its module as authoring.services stores them (without compiling
    and running its examples, which the authoring tests cover)."""
    import hashlib

    from controlplane.authoring.models import AuthoredRule
    from controlplane.policies.models import PolicyModule, PolicyRevision

    module = PolicyModule.objects.create(path=f"authoring/{name}.rego", package=f"warden.org.{name}")
    module.current_revision = PolicyRevision.objects.create(module=module, number=1, source=source,
                                                            sha256=hashlib.sha256(source.encode()).hexdigest())
    module.save()
    return AuthoredRule.objects.create(name=name, template="require_approval", params=params, sentence="…",
                                       module=module)


def test_an_authored_rule_asking_for_two_approvers_sets_the_requests_quorum(identity, people):
    from controlplane.authoring.samples import SAMPLES
    from controlplane.authoring.templates import module_source

    params = SAMPLES["require_approval"]["params"]  # "… wait for two approvers" (quorum 2)
    authored(params["name"], params, module_source("require_approval", params))
    held = [{"rule": "large-payments", "message": "Calls to pay_invoice … wait for two approvers", "controls": []}]
    request, _ = filed(identity, reasons=held)
    assert request.quorum == 2  # the approval rules alone ask for one
    services.approve(request, by=people.approver)
    request.refresh_from_db()
    assert request.state == ApprovalState.PENDING
    services.approve(request, by=people.second)
    request.refresh_from_db()
    assert request.state == ApprovalState.APPROVED

    # The module is the source of truth: an engineer's edit as Rego counts.
    edited = {**params, "name": "huge_payments"}
    authored("huge_payments", edited, module_source("require_approval", edited).replace("quorum := 2", "quorum := 3"))
    again, _ = filed(identity, input={"amount": 50}, reasons=[*held, {**held[0], "rule": "huge-payments"}])
    assert again.quorum == 3
    # A reason of no authored rule leaves the quorum to the approval rules.
    other, _ = filed(identity, input={"amount": 99})
    assert other.quorum == 1
