"""AuthZEN 1.0 on the control plane, per environment: the environment's active bundle decides
(the same mapping as `warden sidecar`), decisions are stored as that environment's decision
logs, and only the environment's own token may ask."""

import json

from controlplane.opa.models import DecisionLog
from tests.opa.sidecar import asgi_client, run

EVALUATION = {"subject": {"type": "agent", "id": "billing-bot"},
              "action": {"name": "no_such_tool", "properties": {"arguments": {"x": 1}}},
              "resource": {"type": "mcp_server", "id": "billing"}}


async def _call(method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with asgi_client() as client:
        return await client.request(method, path, headers=headers,
                                    content=json.dumps(body).encode() if body is not None else None)


def test_the_environments_pdp_decides_logs_and_refuses_other_tokens(dev, dev_token, staging_token):
    # One test, one environment fixture: building dev's bundle is most of the cost.
    response = run(_call("GET", "/authzen/dev/.well-known/authzen-configuration", dev_token))
    assert response.status_code == 200
    document = response.json()
    assert document["policy_decision_point"] == "http://testserver/authzen/dev"
    assert document["access_evaluations_endpoint"] == "http://testserver/authzen/dev/access/v1/evaluations"

    assert run(_call("POST", "/authzen/dev/access/v1/evaluation", None, EVALUATION)).status_code == 401
    assert run(_call("POST", "/authzen/dev/access/v1/evaluation", "nope", EVALUATION)).status_code == 401
    assert run(_call("POST", "/authzen/dev/access/v1/evaluation", staging_token, EVALUATION)).status_code == 403
    assert not DecisionLog.objects.exists()

    response = run(_call("POST", "/authzen/dev/access/v1/evaluation", dev_token, EVALUATION))
    assert response.status_code == 200
    answer = response.json()
    assert answer["decision"] is False
    assert "unknown-tool" in {r["rule"] for r in answer["context"]["reasons"]}
    row = DecisionLog.objects.get(decision_id=answer["context"]["id"])
    assert row.environment_id == dev.pk and row.path == "warden/decision"
    assert row.input["agent"]["id"] == "billing-bot" and row.input["action"]["args"] == {"x": 1}
    assert row.result["effect"] == "deny"

    body = {"subject": EVALUATION["subject"], "resource": EVALUATION["resource"],
            "options": {"evaluations_semantic": "deny_on_first_deny"},
            "evaluations": [{"action": {"name": "a"}}, {"action": {"name": "b"}}]}
    response = run(_call("POST", "/authzen/dev/access/v1/evaluations", dev_token, body))
    assert response.status_code == 200 and [e["decision"] for e in response.json()["evaluations"]] == [False]
    assert DecisionLog.objects.count() == 2
    response = run(_call("POST", "/authzen/dev/access/v1/evaluation", dev_token, {"subject": {}}))
    assert response.status_code == 400 and response.json()["message"].startswith("subject.type")


def test_an_environment_without_a_bundle_denies(staging_token):
    body = {**EVALUATION, "subject": {"type": "agent", "id": "x"}}
    answer = run(_call("POST", "/authzen/staging/access/v1/evaluation", staging_token, body)).json()
    assert answer["decision"] is False and answer["context"]["reasons"][0]["rule"] == "stale-bundle"
