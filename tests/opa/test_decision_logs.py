"""Decision Log API: gzip JSON arrays as OPA uploads them, stored once per decision_id,
bounded before and after inflation, malformed uploads refused with the index and field."""

import gzip
import json
import uuid

import pytest

from controlplane.opa import services
from controlplane.opa.models import DecisionLog, RejectedDecisionLog
from tests.identity.factories import AgentFactory
from tests.opa.sidecar import EmulatedOPA, asgi_client, run


INSTANCE = "5f0e7e8c-9c4a-4d5e-8a3b-0c2d1e4f5a6b"


@pytest.fixture(autouse=True)
def billing_bot_runs_in_dev(opa_db):
    """The agent the events name runs in dev, the environment of `logs_token`."""
    return AgentFactory(name="billing-bot", environments=["dev"])


def decision_event(**overrides) -> dict:
    """An EventV1 as OPA 1.x writes it (plus a field from a newer OPA, which must be kept)."""
    event = {
        "labels": {"id": INSTANCE, "version": "1.4.2", "app": "billing"},
        "decision_id": str(uuid.uuid4()),
        "bundles": {"dev": {"revision": "abc123"}},
        "path": "warden/decision",
        "input": {"agent": {"id": "billing-bot"}, "action": {"type": "tool_call", "tool": "file_delete"}},
        "result": {"allow": False, "effect": "deny", "reasons": []},
        "requested_by": "[::1]:59943",
        "timestamp": "2025-03-01T12:00:00.123456789Z",
        "metrics": {"timer_rego_query_eval_ns": 12345},
        "req_id": 7,
        "some_future_field": {"x": 1},
    }
    event.update(overrides)
    return event


async def _upload(token, events=None, *, body=None, gzipped=True):
    async with asgi_client() as client:
        opa = EmulatedOPA(client, token=token, resource="")
        if body is None:
            return await opa.upload_logs(events)
        return await opa.post("/opa/logs", body, gzipped=gzipped)


def test_gzip_upload_is_stored_with_opa_fields_and_raw_event(logs_token):
    event = decision_event()
    response = run(_upload(logs_token, [event]))
    assert response.status_code == 200
    assert response.json() == {"received": 1, "stored": 1, "rejected": 0}
    row = DecisionLog.objects.select_related("environment").get(decision_id=event["decision_id"])
    assert row.environment.name == "dev"
    assert row.instance_id == INSTANCE
    assert row.path == "warden/decision"
    assert row.result == event["result"] and row.input == event["input"]
    assert row.bundles == {"dev": {"revision": "abc123"}}
    assert row.timestamp.isoformat() == "2025-03-01T12:00:00.123456+00:00"
    assert row.event == event  # unknown fields kept verbatim


def test_duplicate_decision_ids_are_stored_once(logs_token):
    first, second = decision_event(), decision_event()
    repeated = dict(first, result={"allow": True})  # same id again in the same chunk
    assert run(_upload(logs_token, [first, second, repeated])).json() == {"received": 3, "stored": 2, "rejected": 0}
    # OPA re-sends a chunk whose 2xx it missed: nothing new is stored, and it still gets 2xx.
    again = run(_upload(logs_token, [first, second]))
    assert again.status_code == 200 and again.json() == {"received": 2, "stored": 0, "rejected": 0}
    assert DecisionLog.objects.count() == 2
    assert DecisionLog.objects.get(decision_id=first["decision_id"]).result == first["result"]


def test_plain_json_upload_is_accepted(logs_token):
    body = json.dumps([decision_event(path="/warden/decision")]).encode()
    response = run(_upload(logs_token, body=body, gzipped=False))
    assert response.json() == {"received": 1, "stored": 1, "rejected": 0}
    assert DecisionLog.objects.get().path == "warden/decision"


def test_undefined_decision_is_stored_without_result(logs_token):
    event = decision_event()
    del event["result"], event["input"], event["bundles"]
    assert run(_upload(logs_token, [event])).status_code == 200
    row = DecisionLog.objects.get()
    assert row.result is None and "result" not in row.event


def test_gzip_bomb_is_refused_with_413(logs_token):
    bomb = gzip.compress(b"[" + b" " * (services.MAX_LOG_INFLATED_BYTES + 1) + b"]", compresslevel=9)
    assert len(bomb) < services.MAX_LOG_UPLOAD_BYTES  # small on the wire, huge inflated
    response = run(_upload(logs_token, body=bomb))
    assert response.status_code == 413
    assert "inflates to more than" in response.json()["detail"]
    assert DecisionLog.objects.count() == 0


def test_oversized_compressed_body_is_refused_with_413(logs_token):
    response = run(_upload(logs_token, body=b"x" * (services.MAX_LOG_UPLOAD_BYTES + 1)))
    assert response.status_code == 413
    assert str(services.MAX_LOG_UPLOAD_BYTES) in response.json()["detail"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("text", "[1]: must be a decision event object"),
        (decision_event(decision_id=None), "[1].decision_id: is required"),
        (decision_event(decision_id=""), "[1].decision_id: must be a non-empty string"),
        (decision_event(timestamp="yesterday"), "[1].timestamp: must be an RFC 3339 time"),
        (decision_event(labels={"version": "1.4.2"}), "[1].labels.id: is required"),
        (decision_event(path=["warden"]), "[1].path: must be a string"),
        (decision_event(erased="/input/password"), "[1].erased: must be an array"),
        (decision_event(decision_id="x" * 200), "[1].decision_id: must be at most 128 characters"),
        (decision_event(input={"note": "a\x00b"}), "[1].input.note: contains U+0000"),
        (decision_event(input={"note": "\ud800"}), "[1].input.note: contains an unpaired surrogate"),
        (decision_event(input={"amount": float("inf")}), "[1].input.amount: inf has no JSON form"),
        (decision_event(input={"amount": float("nan")}), "[1].input.amount: nan has no JSON form"),
    ],
)
def test_a_bad_event_is_rejected_alone_and_the_rest_of_the_chunk_is_stored_with_200(logs_token, bad, message):
    good = [decision_event(), decision_event()]
    body = json.dumps([good[0], bad, good[1]], ensure_ascii=True).replace("Infinity", "1e400").encode()
    response = run(_upload(logs_token, body=gzip.compress(body)))
    assert response.status_code == 200
    assert response.json() == {"received": 3, "stored": 2, "rejected": 1}
    assert set(DecisionLog.objects.values_list("decision_id", flat=True)) == {e["decision_id"] for e in good}
    rejected = RejectedDecisionLog.objects.get()
    assert rejected.position == 1 and message in rejected.message, rejected.message
    # OPA sends the chunk again: nothing new is stored, and it still gets its 200.
    again = run(_upload(logs_token, body=gzip.compress(body)))
    assert again.status_code == 200 and again.json()["stored"] == 0


@pytest.mark.parametrize(
    ("body", "gzipped", "text"),
    [
        (b"not gzip at all", True, "not valid gzip"),
        (gzip.compress(b"[{]", mtime=0)[:-8], True, "truncated"),
        (gzip.compress(b"[{]", mtime=0), True, "not valid JSON"),
        (b"\xff\xfe[]", False, "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, False, "JSON"),
    ],
)
def test_undecodable_bodies_are_refused_with_400(logs_token, body, gzipped, text):
    response = run(_upload(logs_token, body=body, gzipped=gzipped))
    assert response.status_code == 400
    assert text in json.dumps(response.json())


def test_unknown_content_encoding_is_415(logs_token):
    async def scenario():
        async with asgi_client() as client:
            return await client.post(
                "/opa/logs", content=b"[]",
                headers={"Authorization": f"Bearer {logs_token}", "Content-Encoding": "br"},
            )

    assert run(scenario()).status_code == 415


def test_logs_need_a_valid_token(logs_token):
    response = run(_upload("wdn_made-up", [decision_event()]))
    assert response.status_code == 401
    assert DecisionLog.objects.count() == 0


def test_partitioned_upload_path_is_accepted(logs_token):
    async def scenario():
        async with asgi_client() as client:
            opa = EmulatedOPA(client, token=logs_token, resource="")
            return await opa.post("/opa/logs/p1", gzip.compress(json.dumps([decision_event()]).encode()), gzipped=True)

    assert run(scenario()).json()["stored"] == 1


def test_a_decision_of_an_agent_of_another_environment_is_rejected_per_event(logs_token):
    AgentFactory(name="prod-bot", environments=["prod"])
    own, foreign = decision_event(), decision_event(input={"agent": {"name": "prod-bot"}})
    unknown = decision_event(input={"agent": {"id": "nobody"}})
    response = run(_upload(logs_token, [own, foreign, unknown]))
    assert response.json() == {"received": 3, "stored": 1, "rejected": 2}
    assert DecisionLog.objects.get().decision_id == own["decision_id"]
    messages = dict(RejectedDecisionLog.objects.values_list("position", "message"))
    assert "[1].input.agent names 'prod-bot', which does not run in environment 'dev'" in messages[1]
    assert "[2].input.agent names 'nobody', which does not run in environment 'dev'" in messages[2]


def test_another_environments_token_cannot_preempt_a_decision_id(logs_token, admin):
    from controlplane.bundles import services as bundle_services

    prod = bundle_services.create_environment(name="prod", by=admin, position=1)
    prod_token = bundle_services.create_environment_token(prod, name="opa-prod", by=admin)[1]
    AgentFactory(name="prod-bot", environments=["prod"])
    genuine = decision_event(input={"agent": {"name": "prod-bot"}}, result={"effect": "deny"})
    squat = dict(genuine, input={"agent": {"id": "billing-bot"}}, result={"effect": "allow"})
    assert run(_upload(logs_token, [squat])).json()["stored"] == 1  # dev's own decision, in dev
    assert run(_upload(prod_token, [genuine])).json() == {"received": 1, "stored": 1, "rejected": 0}
    stored = DecisionLog.objects.get(environment=prod, decision_id=genuine["decision_id"])
    assert stored.result == {"effect": "deny"}


def test_sensitive_keys_are_masked_in_decision_logs(logs_token):
    event = decision_event(input={"agent": {"id": "billing-bot"}, "action": {"args": {"password": "hunter2-secret"}}},
                           result={"effect": "allow", "token": "tok-secret"})
    run(_upload(logs_token, [event]))
    row = DecisionLog.objects.get()
    assert row.input["action"]["args"]["password"] == "[masked]" and row.result["token"] == "[masked]"
    assert "/input/action/args/password" in row.masked and "/result/token" in row.masked
    assert "hunter2-secret" not in json.dumps(row.event) and "tok-secret" not in json.dumps(row.event)
