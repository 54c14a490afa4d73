"""The change log API: read-only for every role, filterable."""

import pytest

from controlplane.identity import services
from tests.identity.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_every_role_reads_the_change_log_and_nobody_writes_it(any_role_client, admin_user):
    agent = AgentFactory(name="logged")
    services.suspend_agent(agent, by=admin_user, reason="test")
    listed = any_role_client.get("/api/v1/changes/?object_type=identity.agent")
    assert listed.status_code == 200
    [entry] = listed.json()["results"]
    assert entry["object_type"] == "identity.agent"
    assert entry["object_repr"] == "logged"
    assert any_role_client.post("/api/v1/changes/", {}, format="json").status_code in (403, 405)
    assert any_role_client.delete(f"/api/v1/changes/{entry['id']}/").status_code in (403, 405)


def test_change_log_filters_by_action_user_and_time(admin_client, admin_user):
    first = AgentFactory(name="one")
    services.suspend_agent(first, by=admin_user)
    services.resume_agent(first, by=admin_user)

    def actions(query):
        response = admin_client.get(f"/api/v1/changes/?object_type=identity.agent&{query}")
        assert response.status_code == 200, response.content
        return [c["action"] for c in response.json()["results"]]

    assert actions("action=suspend") == ["suspend"]
    assert actions("ordering=time") == ["suspend", "resume"]
    assert actions(f"user={admin_user.username}&ordering=-time") == ["resume", "suspend"]
    assert actions("user=nobody") == []
    assert actions("time_after=2999-01-01T00:00:00Z") == []
    assert admin_client.get("/api/v1/changes/?time_after=yesterday").status_code == 400
