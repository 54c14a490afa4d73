"""Checkpoints, tampering and retention: verify_audit names what was changed, removed or moved."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from controlplane.audit import checkpoints, integrity, retention
from controlplane.audit.models import AuditEvent, Checkpoint, CheckpointKind
from tests.audit.conftest import sign_session



@contextmanager
def tampering(table: str = "audit_auditevent"):
    """Raw SQL past the append-only trigger, as a database superuser could (triggers off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.fixture
def stored(ship, signer):
    ship(sign_session(signer, "s1") + sign_session(signer, "s2"))
    made = checkpoints.create_checkpoints()
    assert [c.event_count for c in made] == [8]
    return list(AuditEvent.objects.order_by("id"))


def verify_audit() -> tuple[str, bool]:
    out = StringIO()
    try:
        call_command("verify_audit", stdout=out)
        return out.getvalue(), True
    except CommandError:
        return out.getvalue(), False


def test_untouched_log_verifies(stored):
    output, ok = verify_audit()
    assert ok, output
    assert "OK: 1 checkpoints, 8 events checked" in output
    report = integrity.verify_log()
    assert report.ok and report.events_checked == 8 and report.events_not_checkpointed == 0


def test_checkpoint_is_signed_chained_and_its_key_exported(stored, ship, signer, auditor_client):
    ship(sign_session(signer, "s3"))
    second, = checkpoints.create_checkpoints()
    first = Checkpoint.objects.get(sequence=1)
    assert second.statement["previous"] == first.statement_hash
    assert second.first_event_id == stored[-1].pk + 1 and second.event_count == 4
    assert checkpoints.create_checkpoints() == []  # nothing new
    keys = auditor_client.get("/api/v1/audit/checkpoints/keys/").json()
    assert keys[0]["key_id"] == first.key_id and keys[0]["algorithm"] == "Ed25519"
    listed = auditor_client.get("/api/v1/audit/checkpoints/").json()
    assert [c["sequence"] for c in listed["results"]] == [1, 2]


def test_a_row_changed_with_raw_sql_is_named(stored):
    target = stored[2]
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET tool = 'rm', effect = 'deny' WHERE id = %s", [target.pk])
    output, ok = verify_audit()
    assert not ok
    assert f"CHANGED: event {target.pk} (record_id {target.record_id}) was changed after checkpoint 1" in output
    problem, = integrity.verify_log().problems
    assert (problem.problem, problem.event_id, problem.record_id) == ("changed", target.pk, str(target.record_id))


def test_a_changed_payload_is_named_with_the_field(stored):
    target = stored[0]
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET payload = %s WHERE id = %s", ['{"tool": "x", "args": {}}', target.pk])
    problem, = integrity.verify_log().problems
    assert problem.event_id == target.pk and problem.fields == ["payload"]
    assert "payload differ from the record as signed" in problem.message


def test_a_deleted_row_is_named(stored):
    target = stored[5]
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [target.pk])
    output, ok = verify_audit()
    assert not ok
    assert f"REMOVED: event {target.pk} (record_id {target.record_id}) was removed from the log" in output


def test_two_swapped_rows_are_named(stored):
    a, b = stored[1], stored[6]
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET id = -1 WHERE id = %s", [a.pk])
        cursor.execute("UPDATE audit_auditevent SET id = %s WHERE id = %s", [a.pk, b.pk])
        cursor.execute("UPDATE audit_auditevent SET id = %s WHERE id = -1", [b.pk])
    problems = {p.event_id: p for p in integrity.verify_log().problems}
    assert set(problems) == {a.pk, b.pk}
    assert problems[a.pk].problem == "moved"
    assert f"event {a.pk} now holds what checkpoint 1 recorded as event {b.pk} (record_id {b.record_id})" in (
        problems[a.pk].message
    )
    output, ok = verify_audit()
    assert not ok and f"MOVED: event {b.pk} now holds" in output


def test_an_inserted_row_is_named(stored):
    source = stored[0]
    new_id = stored[-1].pk + 1
    columns = [f.column for f in AuditEvent._meta.concrete_fields if f.column not in ("id", "record_id")]
    fake = "00000000-0000-4000-8000-000000000000"
    with tampering() as cursor:
        cursor.execute(
            f"INSERT INTO audit_auditevent (id, record_id, {', '.join(columns)}) "
            f"SELECT %s, %s, {', '.join(columns)} FROM audit_auditevent WHERE id = %s",
            [new_id, fake if connection.vendor == "postgresql" else fake.replace("-", ""), source.pk],
        )
    problem, = integrity.verify_log().problems
    assert problem.event_id == new_id and "record_id" in problem.fields


def test_an_altered_checkpoint_is_named(stored):
    with tampering("audit_checkpoint") as cursor:
        cursor.execute("UPDATE audit_checkpoint SET event_count = 7")
    problem, = integrity.verify_log().problems
    assert problem.problem == "checkpoint" and "do not match its signed statement" in problem.message


def test_events_after_the_last_checkpoint_are_checked_against_their_sealed_record(stored, ship, signer):
    ship(sign_session(signer, "s9"))
    late = AuditEvent.objects.order_by("-id").first()
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET seq = 99 WHERE id = %s", [late.pk])
    report = integrity.verify_log()
    assert report.events_not_checkpointed == 4
    problem, = report.problems
    assert problem.event_id == late.pk and problem.fields == ["seq"] and "not yet checkpointed" in problem.message


def test_verify_endpoint_reports_for_every_role(stored, any_role_client):
    with tampering() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [stored[0].pk])
    body = any_role_client.get("/api/v1/audit/verify/").json()
    assert body["ok"] is False
    assert body["problems"][0]["event_id"] == stored[0].pk and body["problems"][0]["problem"] == "removed"


def test_retention_removes_old_events_in_a_signed_checkpoint_and_the_log_still_verifies(stored, ship, signer):
    ship(sign_session(signer, "recent"))
    old_ids = [e.pk for e in stored]
    with tampering() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET stored_at = %s WHERE id IN (%s)" % ("%s", ",".join(map(str, old_ids))),
            [timezone.now() - timedelta(days=400)],
        )
    # The log now differs from checkpoint 1 (stored_at changed): re-checkpointing is not the point here,
    # retention must remove exactly the expired rows and say so.
    made = retention.apply_retention()
    removals = [c for c in made if c.kind == CheckpointKind.RETENTION]
    assert len(removals) == 1 and removals[0].event_count == 8
    assert removals[0].statement["retention_days"] == 190
    assert AuditEvent.objects.count() == 4
    report = integrity.verify_log()
    assert report.ok, report.problems
    assert report.events_removed_by_retention == 8


def test_retention_keeps_events_younger_than_the_policy(stored, admin_user):
    retention.set_retention_policy(days=365, environment="prod", by=admin_user)
    with tampering() as cursor:
        cursor.execute("UPDATE audit_auditevent SET stored_at = %s", [timezone.now() - timedelta(days=200)])
    retention.apply_retention()
    assert AuditEvent.objects.count() == 8


def test_retention_policy_below_six_months_is_refused(admin_client):
    response = admin_client.post("/api/v1/audit/retention-policies/", {"environment": "prod", "days": 30}, format="json")
    assert response.status_code == 400 and "at least 190 days" in response.json()["days"][0]
    response = admin_client.post("/api/v1/audit/retention-policies/", {"environment": "prod", "days": 400}, format="json")
    assert response.status_code == 200 and response.json()["days"] == 400


def test_retention_policy_is_written_by_admins_only(auditor_client):
    response = auditor_client.post("/api/v1/audit/retention-policies/", {"environment": "prod", "days": 400}, format="json")
    assert response.status_code == 403
