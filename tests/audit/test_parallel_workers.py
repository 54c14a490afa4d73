"""Worker processes verifying at once: batches of different agents are stored in parallel
(neither waits for the other's transaction), each agent's in arrival order; a batch
delivered twice, or replayed as a second batch, is stored once even when the claims that
coordinate the processes are bypassed (correctness rests on the batch's transaction); and
the events, which have no foreign keys since migration 0013, keep their batch and agent."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.models import ProtectedError
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.audit import storage, verification
from controlplane.audit.models import AuditEvent, Batch, BatchStatus, QuarantinedRecord, SessionHead
from controlplane.identity.models import Agent
from tests.audit.conftest import register, route_verifications, upload
from tests.audit.test_fast_paths import run_in_threads

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="claims and row locks are PostgreSQL's; SQLite has one writer"
    ),
    pytest.mark.django_db(transaction=True),
]


def fleet(count: int) -> list[AgentIdentity]:
    identities = [AgentIdentity.create(f"fleet-bot-{n}", "ops@example.com") for n in range(count)]
    for identity in identities:
        register(identity)
    return identities


def upload_batches(monkeypatch, identity: AgentIdentity, *, batches: int, sessions: int, per_session: int) -> list[int]:
    """`sessions` sessions of `identity` (named after it), each spread over every batch; not verified."""
    route_verifications(monkeypatch, lambda batch_id: None)
    signer = ActionSigner(identity)
    chunks: list[list[dict]] = [[] for _ in range(batches)]
    for s in range(sessions):
        with signer.session(session_id=f"{identity.name}/s{s}") as session:
            for n in range(per_session):
                chunks[n * batches // per_session].append(session.result(f"step {n}", n=n))
    client = APIClient()
    return [upload(client, identity, chunk).json()["batch_id"] for chunk in chunks]


def assert_in_chain_order(identity: AgentIdentity, sessions: int, per_session: int) -> None:
    for s in range(sessions):
        session_id = f"{identity.name}/s{s}"
        rows = list(AuditEvent.objects.filter(session_id=session_id).order_by("id").values_list("seq", "batch_id"))
        assert [seq for seq, _ in rows] == list(range(per_session))
        assert [b for _, b in rows] == sorted(b for _, b in rows)
        assert SessionHead.objects.get(session_id=session_id).last_seq == per_session - 1


@contextmanager
def claims_bypassed(monkeypatch):
    """As if two processes never saw each other's claim (a lost connection, a bug): only the
    batch's transaction stands between them."""

    @contextmanager
    def no_claim(batch_id):
        yield

    monkeypatch.setattr(verification, "_claimed", no_claim)
    yield


def test_batches_of_two_agents_commit_while_the_other_is_inside_its_transaction(monkeypatch):
    first, second = fleet(2)
    [batch_a] = upload_batches(monkeypatch, first, batches=1, sessions=4, per_session=6)
    [batch_b] = upload_batches(monkeypatch, second, batches=1, sessions=4, per_session=6)
    inside, release = threading.Event(), threading.Event()
    update_heads = storage.update_heads

    def paused_for_first(heads, now):
        update_heads(heads, now)
        if any(head.session_id.startswith(first.name) for head in heads):
            inside.set()  # agent A's events are inserted, its heads moved, not committed
            assert release.wait(30)

    monkeypatch.setattr(storage, "update_heads", paused_for_first)
    done: list = []
    worker_a = threading.Thread(target=lambda: done.append(run_in_threads(lambda: verification.verify_batch(batch_a))))
    worker_a.start()
    try:
        assert inside.wait(30)
        # The other agent's batch goes through, start to commit, while A holds its transaction
        # (its heads, its batch row, the shared events lock): nothing of A's blocks it.
        [outcome_b] = run_in_threads(lambda: verification.verify_batch(batch_b))
        assert outcome_b.events == 24
        assert Batch.objects.get(pk=batch_b).status == BatchStatus.VERIFIED
        assert Batch.objects.get(pk=batch_a).status == BatchStatus.PENDING
        assert AuditEvent.objects.filter(batch_id=batch_a).count() == 0  # A's rows are not visible yet
    finally:
        release.set()
        worker_a.join(60)
    assert done and done[0][0].events == 24
    assert AuditEvent.objects.count() == 48
    assert_in_chain_order(first, 4, 6)
    assert_in_chain_order(second, 4, 6)


def test_two_agents_batches_taken_in_any_order_by_four_processes_are_each_stored_in_order(monkeypatch):
    agents = fleet(2)
    per_agent = {a.name: upload_batches(monkeypatch, a, batches=3, sessions=3, per_session=9) for a in agents}
    a, b = (per_agent[x.name] for x in agents)
    order = [a[2], b[1], a[0], b[2], a[1], b[0]]  # later batches first: each waits for, or does, the earlier
    outcomes = run_in_threads(*[lambda x=x: verification.verify_batch(x) for x in order])
    assert all(o is not None for o in outcomes)
    assert QuarantinedRecord.objects.count() == 0
    assert AuditEvent.objects.count() == 54
    for identity in agents:
        assert_in_chain_order(identity, 3, 9)


def test_one_batch_delivered_to_two_processes_at_once_is_stored_once_without_claims(monkeypatch):
    identity = fleet(1)[0]
    [batch_id] = upload_batches(monkeypatch, identity, batches=1, sessions=5, per_session=8)
    with claims_bypassed(monkeypatch):
        outcomes = run_in_threads(*[lambda: verification.verify_batch(batch_id)] * 2)
    assert sorted(o.events for o in outcomes) == [0, 40]  # one stored it, the other found it verified
    assert [o.already_verified for o in outcomes].count(True) == 1
    assert AuditEvent.objects.count() == 40
    assert QuarantinedRecord.objects.count() == 0
    assert_in_chain_order(identity, 5, 8)


def test_a_batch_replayed_as_another_batch_and_verified_at_once_is_stored_once_without_claims(monkeypatch):
    identity = fleet(1)[0]
    route_verifications(monkeypatch, lambda batch_id: None)
    signer = ActionSigner(identity)
    records = []
    for s in range(4):
        with signer.session(session_id=f"{identity.name}/s{s}") as session:
            records += [session.result(f"step {n}", n=n) for n in range(5)]
    client = APIClient()
    original, replay = (upload(client, identity, records).json()["batch_id"] for _ in range(2))
    with claims_bypassed(monkeypatch):
        outcomes = run_in_threads(lambda: verification.verify_batch(replay), lambda: verification.verify_batch(original))
    assert all(o is not None for o in outcomes)
    # The replay's process does the earlier batch first (no claim stops it), racing the
    # other process on that batch's row lock: the original is stored once, by either, and
    # the replay, stored after it, finds every record stored.
    counts = dict(Batch.objects.filter(pk__in=[original, replay]).values_list("pk", "event_count"))
    assert counts == {original: 20, replay: 0}
    assert Batch.objects.get(pk=replay).quarantined_count == 20
    assert AuditEvent.objects.count() == 20
    assert set(QuarantinedRecord.objects.values_list("reason", flat=True)) == {"replayed"}
    assert_in_chain_order(identity, 4, 5)


def test_the_agent_and_batch_of_stored_events_stay_although_events_have_no_foreign_keys(monkeypatch):
    identity = fleet(1)[0]
    [batch_id] = upload_batches(monkeypatch, identity, batches=1, sessions=1, per_session=3)
    verification.verify_batch(batch_id)
    agent, batch = Agent.objects.get(name=identity.name), Batch.objects.get(pk=batch_id)
    assert AuditEvent.objects.filter(agent=agent, batch=batch).count() == 3
    with pytest.raises(ProtectedError):
        batch.delete()
    with pytest.raises(ProtectedError):
        agent.delete()
    # The one way a batch leaves (retention's function) keeps a batch that events still name,
    # and that batch keeps its agent by its own foreign key.
    assert storage.delete_expired(event_ids=[], quarantined_ids=[], batch_ids=[batch_id]) == (0, 0, 0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
            "AND conrelid IN ('audit_auditevent'::regclass, 'audit_batch'::regclass)"
        )
        assert set(cursor.fetchall()) == {("audit_batch", "identity_agent")}
    assert Batch.objects.filter(pk=batch_id).exists()
