"""Management API over what OPA reported: decisions (filters) and instances (roles)."""

from datetime import datetime

import pytest

from controlplane.bundles import services as bundle_services
from controlplane.opa.models import DecisionLog, OPAInstance



@pytest.fixture
def environments(admin_user):
    return (
        bundle_services.create_environment(name="dev", by=admin_user),
        bundle_services.create_environment(name="prod", by=admin_user, position=2),
    )


def make_decision(environment, decision_id, *, path="warden/decision", at="2025-03-01T12:00:00+00:00"):
    timestamp = datetime.fromisoformat(at)
    return DecisionLog.objects.create(
        decision_id=decision_id, environment=environment, instance_id="opa-1", path=path,
        input={"agent": {"id": "a"}}, result={"allow": True}, timestamp=timestamp, event={"decision_id": decision_id},
    )


def test_decisions_filter_by_environment_id_path_and_time(environments, auditor_client):
    dev, prod = environments
    make_decision(dev, "d1", at="2025-03-01T10:00:00+00:00")
    make_decision(dev, "d2", path="other/rule", at="2025-03-01T11:00:00+00:00")
    make_decision(prod, "p1", at="2025-03-01T12:00:00+00:00")

    def ids(**params):
        response = auditor_client.get("/api/v1/opa/decisions/", params)
        assert response.status_code == 200, response.json()
        return [d["decision_id"] for d in response.json()["results"]]

    assert ids() == ["p1", "d2", "d1"]  # newest first
    assert ids(environment="dev") == ["d2", "d1"]
    assert ids(decision_id="p1") == ["p1"]
    assert ids(path="/warden/decision") == ["p1", "d1"]
    assert ids(time_after="2025-03-01T10:30:00Z", time_before="2025-03-01T12:00:00Z") == ["d2"]


def test_decision_detail_by_decision_id(environments, auditor_client):
    make_decision(environments[0], "d1")
    response = auditor_client.get("/api/v1/opa/decisions/d1/")
    assert response.status_code == 200
    assert response.json()["environment"] == "dev" and response.json()["event"] == {"decision_id": "d1"}


def test_bad_time_filter_is_400(environments, auditor_client):
    response = auditor_client.get("/api/v1/opa/decisions/", {"time_after": "not a time"})
    assert response.status_code == 400 and "time_after" in response.json()


@pytest.mark.parametrize("path", ["/api/v1/opa/decisions/", "/api/v1/opa/instances/"])
def test_every_role_reads_and_nobody_writes(environments, any_role_client, anonymous_client, path):
    assert any_role_client.get(path).status_code == 200
    assert any_role_client.post(path, {}).status_code in (403, 405)
    assert anonymous_client.get(path).status_code in (401, 403)


def test_instance_without_active_bundle_is_neither_current_nor_behind(environments, auditor_client):
    OPAInstance.objects.create(environment=environments[1], instance_id="opa-9", active_revision="r1")
    (instance,) = auditor_client.get("/api/v1/opa/instances/").json()["results"]
    assert instance["is_current"] is None and instance["environment_revision"] is None
