"""Status reports and decision logs queued on Redis when Celery runs there (controlplane.opa.uploads):
checked and answered in the request, stored by the drain, bounded (429 + Retry-After, never
dropped), and kept queued when storing fails."""

import gzip
import json
import socket
import uuid

import pytest
import redis
from celery import current_app as celery_app
from django.conf import settings as django_settings
from django.db import OperationalError

from controlplane.opa import services, uploads
from controlplane.opa.models import DecisionLog, OPAInstance, RejectedDecisionLog
from tests.identity.factories import AgentFactory
from tests.opa.sidecar import DJANGO_ONLY, FAST_PATH, EmulatedOPA, asgi_client, run

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="the upload queue lives in Redis (REDIS_URL)")

INSTANCE = "0b7f5a52-3d54-4c1e-9a57-2f3e8d6c1a90"


@pytest.fixture(autouse=True)
def queued_uploads(opa_db):
    """Celery on Redis (not eager), an empty queue, and drains recorded instead of sent."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = (uploads.QUEUE_KEY, uploads.BYTES_KEY, uploads.FAILED_KEY, uploads.LOCK_KEY)
    client.delete(*keys)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    yield client
    celery_app.conf.task_always_eager = eager
    client.delete(*keys)
    client.close()


@pytest.fixture
def drains_requested(monkeypatch):
    requested = []
    monkeypatch.setattr(uploads, "_start_drain", lambda: requested.append(1))
    return requested


@pytest.fixture
def billing_bot(opa_db):
    return AgentFactory(name="billing-bot", environments=["dev"])


def event(**overrides):
    return {"labels": {"id": INSTANCE, "version": "1.4.2"}, "decision_id": str(uuid.uuid4()),
            "path": "warden/decision", "input": {"agent": {"id": "billing-bot"}},
            "result": {"allow": True}, "timestamp": "2025-03-01T12:00:00.123456789Z", **overrides}


def status_report(revision="r1"):
    return {"labels": {"id": INSTANCE, "version": "1.4.2"},
            "bundles": {"dev": {"name": "dev", "active_revision": revision}}}


async def _post_all(token, posts, app=FAST_PATH):
    async with asgi_client(app) as client:
        opa = EmulatedOPA(client, token=token, resource="")
        answers = []
        for kind, payload in posts:
            if kind == "logs":
                answers.append(await opa.upload_logs(payload))
            else:
                answers.append(await opa.post("/opa/status", json.dumps(payload).encode(), gzipped=False))
        return answers


@pytest.mark.parametrize("app", [FAST_PATH, DJANGO_ONLY], ids=["fast-path", "django-view"])
def test_uploads_are_answered_once_queued_and_stored_by_the_drain(
    logs_token, billing_bot, drains_requested, queued_uploads, app
):
    events = [event(), event(), event(input={"agent": {"id": "someone-elsewhere"}})]
    logs, status = run(_post_all(logs_token, [("logs", events), ("status", status_report())], app))
    assert logs.status_code == 200 and logs.json() == {"received": 3, "queued": True}
    assert status.status_code == 200 and status.json() == {"instance_id": INSTANCE, "queued": True}
    # Nothing is stored in the request; one drain was asked for (the queue was empty).
    assert DecisionLog.objects.count() == 0 and OPAInstance.objects.count() == 0
    assert queued_uploads.llen(uploads.QUEUE_KEY) == 2 and drains_requested == [1]

    assert uploads.drain() == 2
    assert set(DecisionLog.objects.values_list("decision_id", flat=True)) == {e["decision_id"] for e in events[:2]}
    # The per-event semantics are the synchronous ones: the foreign agent's event is kept apart.
    assert RejectedDecisionLog.objects.get().reason == "foreign_agent"
    instance = OPAInstance.objects.get(instance_id=INSTANCE)
    assert instance.bundles["dev"]["active_revision"] == "r1"
    assert queued_uploads.llen(uploads.QUEUE_KEY) == 0 and int(queued_uploads.get(uploads.BYTES_KEY)) == 0


def test_status_reports_of_one_instance_in_one_batch_are_coalesced_to_the_latest(logs_token, drains_requested):
    run(_post_all(logs_token, [("status", status_report("r1")), ("status", status_report("r2"))]))
    uploads.drain()
    assert OPAInstance.objects.get(instance_id=INSTANCE).bundles["dev"]["active_revision"] == "r2"


def test_a_full_queue_refuses_with_429_and_retry_after_and_loses_nothing(
    logs_token, billing_bot, drains_requested, settings
):
    settings.WARDEN_OPA_UPLOAD_QUEUE_MAX_ITEMS = 2
    first, second, third = [event()], [event()], [event()]
    answers = run(_post_all(logs_token, [("logs", first), ("logs", second), ("logs", third)]))
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == str(uploads.RETRY_AFTER_SECONDS)
    uploads.drain()
    # OPA keeps a refused chunk and sends it again: now there is room.
    assert run(_post_all(logs_token, [("logs", third)]))[0].status_code == 200
    uploads.drain()
    assert DecisionLog.objects.count() == 3


def test_bad_uploads_are_refused_in_the_request_and_not_queued(logs_token, drains_requested, queued_uploads):
    bad_status = {"labels": {"version": "1.4.2"}}

    async def scenario():
        async with asgi_client() as client:
            opa = EmulatedOPA(client, token=logs_token, resource="")
            return [
                await opa.post("/opa/status", json.dumps(bad_status).encode(), gzipped=False),
                await opa.post("/opa/logs", gzip.compress(b'{"not": "an array"}'), gzipped=True),
                await opa.post("/opa/logs", gzip.compress(b"x" * (services.MAX_LOG_INFLATED_BYTES + 1)), gzipped=True),
                await client.post("/opa/logs", content=b"[]", headers={"Authorization": "Bearer nope"}),
            ]

    status, not_array, bomb, unauthorized = run(scenario())
    assert status.status_code == 400 and "labels.id" in status.json()
    assert not_array.status_code == 400 and not_array.json() == {"body": ["must be a JSON array of decision events"]}
    assert bomb.status_code == 413
    assert unauthorized.status_code == 401
    assert queued_uploads.llen(uploads.QUEUE_KEY) == 0 and drains_requested == []


def test_uploads_stay_queued_when_the_database_fails_while_storing(
    logs_token, billing_bot, drains_requested, queued_uploads, monkeypatch
):
    run(_post_all(logs_token, [("logs", [event()])]))

    def database_down(*args, **kwargs):
        raise OperationalError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(services, "ingest_decision_logs", database_down)
        patch.setattr(services, "ingest_decision_log_uploads", database_down)
        with pytest.raises(OperationalError):
            uploads.drain()
    assert queued_uploads.llen(uploads.QUEUE_KEY) == 1 and DecisionLog.objects.count() == 0
    assert uploads.drain() == 1  # the task's retry
    assert DecisionLog.objects.count() == 1


def test_an_upload_that_cannot_be_stored_is_set_aside_with_its_reason_and_the_others_are_stored(
    logs_token, billing_bot, drains_requested, queued_uploads
):
    from django.utils import timezone

    # An item naming an environment this database does not have (queued against another one).
    orphan = uploads.encode("logs", str(uuid.uuid4()), gzip.compress(json.dumps([event()]).encode()), "gzip",
                            timezone.now())
    queued_uploads.rpush(uploads.QUEUE_KEY, orphan)
    run(_post_all(logs_token, [("logs", [event()])]))
    assert uploads.drain() == 2
    assert DecisionLog.objects.count() == 1
    reason, _, item = queued_uploads.lrange(uploads.FAILED_KEY, 0, -1)[0].partition(b"\n")
    assert "no longer exists" in json.loads(reason)["reason"]
    assert item == orphan


def test_with_redis_down_uploads_are_refused_with_503_and_retry_after(logs_token, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port}/0"
    (answer,) = run(_post_all(logs_token, [("logs", [event()])]))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == str(uploads.RETRY_AFTER_SECONDS)


def test_the_byte_bound_is_a_setting_too(logs_token, billing_bot, drains_requested, queued_uploads, settings):
    first = run(_post_all(logs_token, [("logs", [event()])]))[0]
    assert first.status_code == 200
    settings.WARDEN_OPA_UPLOAD_QUEUE_MAX_BYTES = int(queued_uploads.get(uploads.BYTES_KEY)) + 10
    assert run(_post_all(logs_token, [("logs", [event()])]))[0].status_code == 429
    assert queued_uploads.llen(uploads.QUEUE_KEY) == 1


def test_metrics_report_the_queue_its_bytes_and_what_was_set_aside(
    logs_token, billing_bot, drains_requested, queued_uploads, monkeypatch
):
    from controlplane.metrics import state
    from tests.metrics.test_metrics import fetch, samples

    def scrape():
        monkeypatch.setattr("controlplane.metrics.views.STATE", state.StateCollector())  # no cached read
        found = samples(fetch(("/metrics", {}))[0].text)
        return {name: found.get((name, ())) for name in (
            "warden_opa_upload_queue_items", "warden_opa_upload_queue_bytes", "warden_opa_uploads_set_aside")}

    assert scrape() == {"warden_opa_upload_queue_items": 0, "warden_opa_upload_queue_bytes": 0,
                        "warden_opa_uploads_set_aside": 0}
    run(_post_all(logs_token, [("logs", [event()]), ("status", status_report())]))
    queued_bytes = sum(map(len, queued_uploads.lrange(uploads.QUEUE_KEY, 0, -1)))
    assert scrape() == {"warden_opa_upload_queue_items": 2, "warden_opa_upload_queue_bytes": queued_bytes,
                        "warden_opa_uploads_set_aside": 0}
    uploads._set_aside(queued_uploads, b"{}", "an environment deleted while queued")
    uploads.drain()
    assert scrape() == {"warden_opa_upload_queue_items": 0, "warden_opa_upload_queue_bytes": 0,
                        "warden_opa_uploads_set_aside": 1}


def test_a_batch_is_stored_in_a_few_queries_whatever_its_number_of_uploads(
    logs_token, billing_bot, drains_requested, queued_uploads
):
    """The drain stores a batch together (one agent lookup, one id lookup, one insert, one
    status upsert), not a handful of queries per upload: at 1,000 sidecars those were most
    of the machine's CPU. What is stored is what storing them one by one stores."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def post_and_drain(instances: list[str]) -> int:
        repeated = event()
        posts = []
        for n, instance in enumerate(instances):
            posts.append(("logs", [event(labels={"id": instance}),
                                   event(labels={"id": instance}, input={"agent": {"id": "someone-elsewhere"}})]))
            posts.append(("status", {**status_report(f"r{n}"), "labels": {"id": instance, "version": "1.4.2"}}))
        posts += [("logs", [repeated]), ("logs", [repeated])]  # OPA resending a chunk it got no 2xx for
        posts.append(("status", {**status_report("newest"), "labels": {"id": instances[0], "version": "1.4.2"}}))
        assert {a.status_code for a in run(_post_all(logs_token, posts))} == {200}
        with CaptureQueriesContext(connection) as queries:
            assert uploads.drain() == len(posts)
        assert DecisionLog.objects.filter(decision_id=repeated["decision_id"]).count() == 1
        return len(queries)

    few = post_and_drain([str(uuid.uuid4()) for _ in range(2)])
    instances = [str(uuid.uuid4()) for _ in range(20)]
    assert post_and_drain(instances) == few  # 45 uploads, as many queries as 9
    assert DecisionLog.objects.count() == 2 + 1 + len(instances) + 1
    assert RejectedDecisionLog.objects.filter(reason="foreign_agent").count() == 2 + len(instances)
    assert OPAInstance.objects.count() == 2 + len(instances)
    assert OPAInstance.objects.get(instance_id=instances[0]).active_revision == "newest"
    assert OPAInstance.objects.get(instance_id=instances[5]).active_revision == "r5"


def test_a_later_status_report_updates_the_instance_and_keeps_when_it_was_first_seen(
    logs_token, drains_requested, queued_uploads
):
    run(_post_all(logs_token, [("status", status_report("r1"))]))
    uploads.drain()
    first = OPAInstance.objects.get(instance_id=INSTANCE)
    run(_post_all(logs_token, [("status", {**status_report("r2"), "plugins": {"bundle": {"state": "OK"}}})]))
    uploads.drain()
    later = OPAInstance.objects.get(instance_id=INSTANCE)
    assert later.pk == first.pk and later.first_seen == first.first_seen and later.last_seen > first.last_seen
    assert later.active_revision == "r2" and later.plugins == {"bundle": {"state": "OK"}}


def test_an_item_that_fails_in_a_batch_is_set_aside_alone_and_the_rest_of_the_batch_is_stored(
    logs_token, billing_bot, drains_requested, queued_uploads, monkeypatch
):
    from django.utils import timezone

    good = [event(), event()]
    run(_post_all(logs_token, [("logs", [good[0]]), ("logs", [good[1]]), ("status", status_report())]))
    # A queued status report the checks of its day let through but storing now refuses.
    environment_id = uploads.decode(queued_uploads.lrange(uploads.QUEUE_KEY, 0, 0)[0])[0]["environment_id"]
    bad = uploads.encode("status", environment_id, json.dumps({"labels": {"id": "x" * 500}}).encode(), "",
                         timezone.now())
    queued_uploads.rpush(uploads.QUEUE_KEY, bad)
    # And a decision-log chunk whose storing fails for a reason other than the database.
    real = services.ingest_decision_log_uploads

    def refuse_the_second(environment, events, *, received_at):
        if events[0]["decision_id"] == good[1]["decision_id"]:
            raise ValueError("cannot store this one")
        return real(environment, [(events, received_at)])[0]

    def batch_fails(*args, **kwargs):
        raise ValueError("cannot store this one")

    monkeypatch.setattr(services, "ingest_decision_logs", refuse_the_second)
    monkeypatch.setattr(services, "ingest_decision_log_uploads", batch_fails)
    assert uploads.drain() == 4
    assert list(DecisionLog.objects.values_list("decision_id", flat=True)) == [good[0]["decision_id"]]
    assert OPAInstance.objects.get().instance_id == INSTANCE
    set_aside = [json.loads(entry.partition(b"\n")[0])["reason"] for entry in
                 queued_uploads.lrange(uploads.FAILED_KEY, 0, -1)]
    assert len(set_aside) == 2
    assert any("cannot store this one" in reason for reason in set_aside)
    assert any("at most 128 characters" in reason for reason in set_aside)  # the labels.id too long
