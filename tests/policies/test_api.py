import pytest

from controlplane.policies.models import PolicyModule, Tool
from tests.policies.test_services import DENY_REFUNDS

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role, expected", [("admin", 201), ("policy_author", 201), ("approver", 403), ("auditor", 403)])
def test_policy_authors_and_admins_write_policies(token_client, role, expected):
    response = token_client(role).post(
        "/api/v1/policies/", {"path": "refunds.rego", "source": DENY_REFUNDS, "message": "m"}, format="json"
    )
    assert response.status_code == expected
    assert PolicyModule.objects.filter(path="refunds.rego").exists() == (expected == 201)


def test_rego_error_is_a_400_with_file_line_column(token_client):
    client = token_client("policy_author")
    response = client.post("/api/v1/policies/", {"path": "bad.rego", "source": "package x\n\nallow if {\n"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["source"][0].startswith("org/bad.rego:")
    assert {"file", "line", "column", "message"} <= set(body["errors"][0])


def test_a_module_with_brackets_nested_past_the_engines_limit_is_a_400_not_a_hung_worker(token_client):
    # regorus parses `[[[...` in exponential time: 40 levels would hold the request for hours.
    deep = "[" * 40 + "1" + "]" * 40
    response = token_client("policy_author").post(
        "/api/v1/policies/", {"path": "deep.rego", "source": f"package deep\n\nx := {deep}\n"}, format="json"
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["file"], error["line"]) == ("org/deep.rego", 3)
    assert "json.unmarshal" in error["message"]
    assert not PolicyModule.objects.filter(path="deep.rego").exists()


def test_revisions_and_update_through_the_api(token_client):
    client = token_client("policy_author")
    created = client.post("/api/v1/policies/", {"path": "refunds.rego", "source": DENY_REFUNDS}, format="json").json()
    assert created["revision"] == 1
    assert created["bundle_path"] == "org/refunds.rego"
    updated = client.patch(
        f"/api/v1/policies/{created['id']}/", {"source": DENY_REFUNDS.replace("1000", "10"), "message": "lower"},
        format="json",
    )
    assert updated.status_code == 200
    assert updated.json()["revision"] == 2
    revisions = client.get(f"/api/v1/policies/{created['id']}/revisions/").json()["results"]
    assert [r["number"] for r in revisions] == [2, 1]
    assert revisions[0]["message"] == "lower"
    assert client.post("/api/v1/policies/", {"path": "refunds.rego", "source": DENY_REFUNDS}, format="json").status_code == 409
    assert client.delete(f"/api/v1/policies/{created['id']}/").status_code == 204


def test_policy_test_endpoint_reports_counts(token_client):
    response = token_client("policy_author").post("/api/v1/policies/test/")
    assert response.status_code == 200
    body = response.json()
    assert body["failed"] == 0
    assert body["passed"] >= 40
    assert token_client("auditor").post("/api/v1/policies/test/").status_code == 403


def test_tool_catalog_crud_and_validation(token_client):
    client = token_client("policy_author")
    created = client.post(
        "/api/v1/tools/", {"name": "payment_create", "scopes": ["write:payments"], "category": "payment",
                           "irreversible": True, "calls_per_hour": 10}, format="json",
    )
    assert created.status_code == 201
    assert client.patch("/api/v1/tools/payment_create/", {"calls_per_hour": 0}, format="json").status_code == 400
    assert client.post("/api/v1/tools/", {"name": "Bad Name"}, format="json").status_code == 400
    assert client.post("/api/v1/tools/", {"name": "x", "scopes": ["nope"]}, format="json").status_code == 400
    assert client.post("/api/v1/tools/", {"name": "x", "category": "teleport"}, format="json").status_code == 400
    assert client.delete("/api/v1/tools/payment_create/").status_code == 204
    assert not Tool.objects.exists()


def test_a_catalog_sandbox_flag_travels_in_the_bundle_and_the_policy_denies_unsandboxed_calls(token_client, admin_user):
    from agents_sdk.engine import RegoEngine
    from controlplane.bundles.selectors import registry_data
    from controlplane.policies.library import library_modules
    from tests.bundles.factories import environment
    from tests.identity.factories import AgentFactory

    client = token_client("policy_author")
    bad = client.post("/api/v1/tools/", {"name": "run_python", "sandbox_required": True,
                                         "sandbox_profile": {"file_read": ["relative"]}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["sandbox_profile"][0].startswith("file_read[0]: 'relative' must be absolute")
    created = client.post("/api/v1/tools/", {"name": "run_python", "scopes": ["exec:code"], "sandbox_required": True,
                                             "sandbox_profile": {"file_read": ["/srv/data"]}}, format="json")
    assert created.status_code == 201
    assert created.json()["sandbox_required"] is True
    client.post("/api/v1/tools/", {"name": "ticket_read", "scopes": ["exec:code"]}, format="json")
    AgentFactory(name="coder-bot", environments=["dev"], scopes=["exec:code"])

    data = registry_data(environment("dev", by=admin_user))
    assert data["tools"]["run_python"]["sandbox"] == {"required": True, "profile": {"file_read": ["/srv/data"]}}
    assert "sandbox" not in data["tools"]["ticket_read"]
    policy = RegoEngine().compile(library_modules(include_tests=False), {"warden_registry": data})

    def call(tool, **context):
        return policy.decide({"agent": {"id": "coder-bot", "scopes": ["exec:code"]},
                              "action": {"type": "tool_call", "tool": tool, "args": {"code": "1"}},
                              "context": {"environment": "dev", **context}})

    denied = call("run_python")
    assert denied["effect"] == "deny"
    assert [r["rule"] for r in denied["reasons"]] == ["sandbox-required"]
    assert call("run_python", sandboxed=True)["effect"] == "allow"
    assert call("ticket_read")["effect"] == "allow"
