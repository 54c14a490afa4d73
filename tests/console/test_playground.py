"""The decision playground evaluates an environment's active bundle and records nothing."""

import pytest

from controlplane.audit.models import AuditEvent
from controlplane.bundles import services as bundle_services
from controlplane.changelog.models import ObjectChange
from controlplane.console import playground
from controlplane.core.exceptions import InvalidInput
from controlplane.identity import services as identity_services
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog
from controlplane.policies import services as policy_services
from tests.identity.factories import AgentFactory

URL = "/api/v1/console/playground/"


@pytest.fixture
def prod(admin_user):
    environment = bundle_services.create_environment(name="prod", position=0, by=admin_user)
    AgentFactory(name="support-bot", scopes=["read:tickets"], environments=["prod"])
    policy_services.create_tool(name="ticket_read", scopes=["read:tickets"], category="other", by=admin_user)
    bundle_services.publish_policies(environment, by=admin_user)
    environment.refresh_from_db()
    return environment


def run(client, **body):
    return client.post(URL, {"environment": "prod", "agent": "support-bot", "tool": "ticket_read", "args": {}} | body,
                       format="json")


def counts():
    return AuditEvent.objects.count(), ObjectChange.objects.count(), DecisionLog.objects.count()


def test_decision_comes_from_the_active_bundle_with_reasons(prod, auditor_client):
    response = run(auditor_client, tool="shell", args={"command": "rm -rf /"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["revision"] == prod.active_bundle.revision
    assert body["input"]["agent"] == {"id": "support-bot", "name": "support-bot", "owner": body["input"]["agent"]["owner"],
                                      "scopes": ["read:tickets"]}
    assert body["input"]["context"]["environment"] == "prod"
    assert body["decision"]["effect"] == "deny"
    assert body["decision"]["reasons"] and all("rule" in reason for reason in body["decision"]["reasons"])


def test_suspended_agent_is_denied_by_the_rebuilt_bundle(
    prod, admin_client, admin_user, django_capture_on_commit_callbacks
):
    assert run(admin_client).json()["decision"]["effect"] == "allow"
    with django_capture_on_commit_callbacks(execute=True):
        identity_services.suspend_agent(Agent.objects.get(name="support-bot"), by=admin_user, reason="incident")
    body = run(admin_client).json()
    assert body["decision"]["effect"] == "deny"
    assert "agent-not-active" in {reason["rule"] for reason in body["decision"]["reasons"]}


def test_dry_run_records_nothing(prod, admin_client):
    before = counts()
    for tool in ["ticket_read", "shell", "file_delete"]:
        assert run(admin_client, tool=tool, args={"path": "/prod/x"}).status_code == 200
    assert counts() == before


def test_every_role_may_dry_run_and_anonymous_may_not(prod, any_role_client, anonymous_client):
    assert run(any_role_client).status_code == 200
    assert run(anonymous_client).status_code == 401


def test_environment_without_bundle_names_the_field(admin_client, admin_user):
    bundle_services.create_environment(name="empty", position=5, by=admin_user)
    AgentFactory(name="support-bot")
    response = run(admin_client, environment="empty")
    assert response.status_code == 400
    assert "publish policies" in response.json()["environment"][0]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"environment": "nope"}, "environment"),
        ({"agent": "other-agent"}, "agent"),
        ({"args": ["a", "list"]}, "args"),
        ({"args": "a string"}, "args"),
        ({"args": None}, "args"),
        ({"context": [1]}, "context"),
        ({"tool": ""}, "tool"),
        ({"tool": {"x": 1}}, "tool"),
        ({"environment": "p" * 65}, "environment"),
    ],
)
def test_hostile_bodies_name_the_field(prod, admin_client, body, field):
    response = run(admin_client, **body)
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("field", ["args", "context"])
def test_lone_surrogates_are_refused_with_the_field(prod, admin_client, field):
    raw = '{"environment": "prod", "agent": "support-bot", "tool": "t", "%s": {"path": "\\ud800"}}' % field
    response = admin_client.post(URL, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    named = {key: messages for key, messages in response.json().items() if key == field or key.startswith(f"{field}.")}
    assert named and "surrogate" in str(named)


def test_deeply_nested_args_are_refused(prod, admin_client):
    args: dict = {}
    cursor = args
    for _ in range(40):
        cursor["x"] = {}
        cursor = cursor["x"]
    response = run(admin_client, args=args)
    assert response.status_code == 400
    body = response.json()
    # The API's JSON parser may refuse the body first (no field then), else the service names args.
    assert "nested" in str(body.get("detail", "")) or any(
        key.startswith("args") and "deep" in str(messages) for key, messages in body.items()
    )


def test_unicode_arguments_are_decided(prod, admin_client):
    response = run(admin_client, tool="file_read", args={"path": "/tmp/é✓𝄞"})
    assert response.status_code == 200
    assert response.json()["input"]["action"]["args"]["path"] == "/tmp/é✓𝄞"


def test_nul_in_arguments_is_refused_with_the_field(prod, admin_client):
    response = run(admin_client, tool="file_read", args={"path": "/tmp/\x00x"})
    assert response.status_code == 400
    assert any(key.startswith("args") and "NUL" in str(messages) for key, messages in response.json().items())


def test_context_cannot_move_the_decision_to_another_environment(prod, admin_client):
    body = run(admin_client, context={"environment": "dev", "approval_token": "t"}).json()
    assert body["input"]["context"]["environment"] == "prod"
    assert body["input"]["context"]["approval_token"] == "t"


@pytest.mark.parametrize(
    "value, message",
    [({"p": "\ud800"}, "surrogate"), (["\x00"], "NUL"), ({"\udfff": 1}, "surrogate"), ({"a": [[[[]]]]}, None)],
)
def test_the_service_checks_values_itself_whatever_the_parser(value, message):
    if message is None:
        playground.check_json_value(value, field="args")
        return
    with pytest.raises(InvalidInput) as caught:
        playground.check_json_value(value, field="args")
    assert caught.value.field == "args" and message in caught.value.message


def test_the_service_refuses_nesting_past_its_limit():
    value: list = []
    for _ in range(playground.MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(InvalidInput, match="deeper"):
        playground.check_json_value(value, field="context")
