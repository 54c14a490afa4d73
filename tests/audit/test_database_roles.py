"""The audit log's protection, tried as the attacker would: connected as the application's
own PostgreSQL role (no superuser, owns nothing), and as someone past every trigger.

Roles come from `manage.py setup_db_roles` in the test database; each test drops them again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key
from agents_sdk.records import canonical_json
from controlplane.audit import checkpoints, integrity
from controlplane.audit.database_roles import DELETER, RoleNames
from controlplane.audit.models import AuditEvent, Checkpoint, CheckpointKey, EventRule
from controlplane.changelog.models import ChangeAction, ObjectChange
from controlplane.changelog.services import record_change, snapshot
from controlplane.policies.models import PolicyModule, PolicyRevision
from tests.audit.commands import verify
from tests.audit.conftest import sign_session

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="database roles exist on PostgreSQL only (CI runs PostgreSQL)",
    ),
]


@pytest.fixture
def roles(db) -> RoleNames:
    """The owner, app and retention roles of this test database, set up as documented."""
    name = connection.settings_dict["NAME"]
    names = RoleNames(owner=f"{name}_owner", app=f"{name}_app", retention=f"{name}_retention")
    call_command("setup_db_roles", owner=names.owner, app=names.app, retention=names.retention, stdout=StringIO())
    yield names
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (superuser,) = cursor.fetchone()
        for role in (names.owner, names.app, names.retention):
            cursor.execute(f'REASSIGN OWNED BY "{role}" TO "{superuser}"')
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')


def database_url(user: str) -> str:
    s = connection.settings_dict
    return f"postgres://{user}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@contextmanager
def connected_as(role: str):
    """A connection of `role` (trust authentication, as CI's PostgreSQL has for 127.0.0.1)."""
    with psycopg.connect(database_url(role), autocommit=True) as conn:
        yield conn


def refused(conn, statement: str, params=()) -> str:
    """Run `statement` and return PostgreSQL's refusal; fail if it was allowed."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    return str(caught.value)


def superuser_tampering(statement: str, params=()) -> None:
    """What someone past every trigger could do (a superuser with replication role)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(statement, params)
        finally:
            cursor.execute("SET session_replication_role = origin")


@pytest.fixture
def checkpointed(ship, signer):
    ship(sign_session(signer, "s1") + sign_session(signer, "s2"))
    made = checkpoints.create_checkpoints()
    return list(AuditEvent.objects.order_by("id")), made


def test_the_app_role_cannot_change_or_remove_audit_rows_and_no_setting_unlocks_them(roles, checkpointed):
    events, _ = checkpointed
    event = events[0]
    with connected_as(roles.app) as app:
        assert app.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        for statement in (
            "UPDATE audit_auditevent SET tool = 'rm -rf' WHERE id = %s",
            "DELETE FROM audit_auditevent WHERE id = %s",
            "DELETE FROM audit_checkpoint WHERE sequence = %s",
            "DELETE FROM audit_quarantinedrecord WHERE id = %s",
            "DELETE FROM audit_batch WHERE id = %s",
            "UPDATE audit_checkpointkey SET public_key = 'x' WHERE %s > 0",
            "UPDATE audit_batch SET body = 'x' WHERE id = %s",
        ):
            assert "permission denied" in refused(app, statement, [event.pk])
        # The old bypass, a setting any session may set: it unlocks nothing.
        app.execute("SET warden.audit_retention = 'on'")
        assert "permission denied" in refused(app, "DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
        for statement in (
            "TRUNCATE audit_auditevent",
            "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_auditevent_append_only ON audit_auditevent",
            "CREATE TRIGGER t BEFORE DELETE ON audit_checkpoint FOR EACH ROW EXECUTE FUNCTION warden_append_only()",
            f"SET ROLE {DELETER}",
        ):
            assert "must be owner" in refused(app, statement) or "permission denied" in refused(app, statement)
        retention_call = "SELECT warden_audit_retention_delete(ARRAY[%s]::bigint[], '{}', '{}')"
        assert "permission denied for function" in refused(app, retention_call, [event.pk])
        # What the app must still do, it can: move a batch's processing columns.
        app.execute("UPDATE audit_batch SET attempts = attempts WHERE id = %s", [event.batch_id])
    assert AuditEvent.objects.count() == len(events)
    output, ok = verify()
    assert ok, output


def test_no_role_but_the_owner_can_write_truncate_detach_or_drop_an_events_partition(roles, checkpointed):
    events, _ = checkpointed
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM audit_auditevent WHERE id = %s", [events[0].pk])
        (part,) = cursor.fetchone()
    assert part.startswith("audit_auditevent_y")
    drop = "SELECT count(*) FROM warden_audit_drop_partitions('audit_auditevent', now() - interval '{} days')"
    with connected_as(roles.app) as app:
        for statement in (
            f"UPDATE {part} SET tool = 'rm -rf'",
            f"DELETE FROM {part}",
            f"TRUNCATE {part}",
            f"INSERT INTO {part} SELECT * FROM {part}",
        ):
            assert "permission denied" in refused(app, statement)
        for statement in (
            f"ALTER TABLE audit_auditevent DETACH PARTITION {part}",
            f"DROP TABLE {part}",
            f"ALTER TABLE {part} DISABLE TRIGGER ALL",
            "ALTER TABLE audit_auditevent DETACH PARTITION audit_auditevent_default",
        ):
            assert "must be owner" in refused(app, statement)
        assert "permission denied for function warden_audit_drop_partitions" in refused(app, drop.format(400))
        # Creating months ahead is the app's (the beat task): empty partitions, protected alike.
        app.execute("SELECT warden_audit_create_partitions('audit_auditevent', now(), 1)")
    with connected_as(roles.retention) as job:
        assert "minimum retention" in refused(job, drop.format(100))
        assert job.execute(drop.format(400)).fetchone() == (0,)  # nothing that old: nothing dropped
        assert "must be owner" in refused(job, f"DROP TABLE {part}")
        assert "permission denied" in refused(job, f"DELETE FROM {part}")
    assert AuditEvent.objects.count() == len(events)
    output, ok = verify()
    assert ok, output


def test_only_the_retention_role_removes_events_and_only_checkpointed_ones(roles, checkpointed, ship, signer):
    events, _ = checkpointed
    ship(sign_session(signer, "s3"))  # not checkpointed
    fresh = AuditEvent.objects.order_by("-id").first()
    call = "SELECT warden_audit_retention_delete(%s::bigint[], '{}', '{}')"
    with connected_as(roles.retention) as job:
        assert "only checkpointed events" in refused(job, call, [[fresh.pk]])
        assert job.execute(call, [[events[0].pk]]).fetchone() == ([1, 0, 0],)
    with connected_as(roles.owner) as owner:  # not even the owner may call it
        assert "permission denied for function" in refused(owner, call, [[events[1].pk]])
    assert not AuditEvent.objects.filter(pk=events[0].pk).exists()


def test_the_retention_job_runs_as_the_retention_role_and_not_as_the_app_role(roles, checkpointed, audit_witness):
    events, _ = checkpointed
    script = (
        "import django, json; from datetime import timedelta; django.setup(); "
        "from django.utils import timezone; from controlplane.audit import retention; "
        "made = retention.apply_retention(now=timezone.now() + timedelta(days=400)); "
        "print(json.dumps([c.event_count for c in made]))"
    )

    def run(role: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DATABASE_URL": database_url(role), "DJANGO_SETTINGS_MODULE": "controlplane.settings",
               "WARDEN_AUDIT_WITNESS_PATH": audit_witness, "WARDEN_CELERY_EAGER": "1"}
        return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)

    as_app = run(roles.app)
    assert as_app.returncode != 0 and "permission denied for function warden_audit_retention_delete" in as_app.stderr
    assert AuditEvent.objects.count() == len(events)
    assert EventRule.objects.count() == 2  # the two sessions' decisions name a rule
    as_job = run(roles.retention)
    assert as_job.returncode == 0, as_job.stderr
    assert as_job.stdout.strip() == f"[{len(events)}]"
    assert AuditEvent.objects.count() == 0
    assert not EventRule.objects.exists()  # the events' rule rows went with them (migration 0010)
    output, ok = verify()
    assert ok, output
    assert f"{len(events)} removed by retention" in output


def test_the_change_log_and_policy_revisions_are_append_only(roles, admin_user):
    # Rows as the policies service writes them (its Rego compile step is not the point here).
    module = PolicyModule.objects.create(path="finance/refunds.rego", package="warden.finance")
    source = "package warden.finance\n"
    revision = PolicyRevision.objects.create(module=module, number=1, source=source, author=admin_user,
                                             sha256=hashlib.sha256(source.encode()).hexdigest())
    change = record_change(revision, action=ChangeAction.CREATE, by=admin_user, after=snapshot(revision))
    with connected_as(roles.app) as app:
        for statement, key in (
            ("UPDATE changelog_objectchange SET message = 'nothing happened' WHERE id = %s", change.pk),
            ("DELETE FROM changelog_objectchange WHERE id = %s", change.pk),
            ("UPDATE policies_policyrevision SET source = 'package warden.extra' WHERE id = %s", revision.pk),
            ("DELETE FROM policies_policyrevision WHERE id = %s", revision.pk),
        ):
            assert "permission denied" in refused(app, statement, [key])
    # The trigger holds even for a role with table privileges (here the superuser).
    with connection.cursor() as cursor, pytest.raises(Exception, match="append-only"):
        cursor.execute("UPDATE changelog_objectchange SET message = 'x' WHERE id = %s", [change.pk])
    with connection.cursor() as cursor, pytest.raises(Exception, match="append-only"):
        cursor.execute("DELETE FROM policies_policyrevision WHERE id = %s", [revision.pk])
    # Deleting a user keeps its entries and revisions, with the user set to NULL.
    get_user_model().objects.filter(pk=admin_user.pk).delete()
    assert ObjectChange.objects.get(pk=change.pk).user_id is None
    assert PolicyRevision.objects.get(pk=revision.pk).author_id is None


def forge_chain_with_a_new_key() -> None:
    """Replace every checkpoint with ones signed by a key of the attacker's own."""
    superuser_tampering("DELETE FROM audit_checkpoint")
    private = Ed25519PrivateKey.generate()
    key = CheckpointKey.objects.create(
        key_id=key_fingerprint(raw_public_key(private.public_key())),
        public_key=encode_public_key(private.public_key()),
        encrypted_private_key=checkpoints.secrets_at_rest().encrypt(private.private_bytes_raw()),
    )
    CheckpointKey.objects.exclude(pk=key.pk).update(is_active=False)
    checkpoints.create_checkpoints()


def test_forging_checkpoints_with_a_new_key_is_named_with_the_pinned_key(roles, checkpointed, settings):
    events, made = checkpointed
    genuine = made[0].key.public_key
    superuser_tampering("UPDATE audit_auditevent SET tool = 'nothing' WHERE id = %s", [events[0].pk])
    forge_chain_with_a_new_key()
    # Trusting the database's key table, the forgery passes: that is why keys are pinned.
    assert integrity.verify_log(public_keys=None, witness_path=os.devnull).ok
    settings.WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = (genuine,)
    report = integrity.verify_log(witness_path=os.devnull)
    assert report.key_source == "pinned" and not report.ok
    assert "is not a trusted checkpoint key" in report.problems[0].message
    settings.WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = ()
    output, ok = verify("--public-key", genuine)
    assert not ok and "is not a trusted checkpoint key" in output
    # The witness also remembers the genuine checkpoint: the replacement is named.
    assert "the witness recorded checkpoint 1 twice with different contents" in output


def test_a_cut_tail_and_deleted_uncheckpointed_events_are_named_from_the_witness(checkpointed, ship, signer):
    ship(sign_session(signer, "s3"))
    second, = checkpoints.create_checkpoints()
    ship(sign_session(signer, "s4"))  # stored, not yet checkpointed
    newest = list(AuditEvent.objects.filter(id__gt=second.last_event_id).order_by("id").values_list("id", flat=True))
    superuser_tampering("DELETE FROM audit_checkpoint WHERE sequence = 2")
    superuser_tampering("DELETE FROM audit_auditevent WHERE id >= %s", [second.first_event_id])
    output, ok = verify()
    assert not ok
    assert "TRUNCATED: the log's tail was cut: the witness holds checkpoint(s) 2…2" in output
    assert f"event(s) {newest[0]}…{newest[-1]} of batch" in output and "no checkpoint in the database covers" in output
    report = integrity.verify_log()
    assert report.last_affected_event_id == newest[-1]
    assert report.first_affected_checkpoint == 2


def test_changed_tool_and_agent_columns_are_named_and_swaps_across_checkpoints_are_moves(
    checkpointed, ship, signer, identity
):
    events, _ = checkpointed
    ship(sign_session(signer, "s3"))
    second, = checkpoints.create_checkpoints()
    late = AuditEvent.objects.get(pk=second.first_event_id)
    superuser_tampering("UPDATE audit_auditevent SET tool = 'delete_all' WHERE id = %s", [events[0].pk])
    other = sign_session.__globals__["AgentFactory"](name="ops-bot")
    superuser_tampering("UPDATE audit_auditevent SET agent_id = %s WHERE id = %s", [other.pk, events[1].pk])
    report = integrity.verify_log()
    by_event = {p.event_id: p for p in report.problems}
    assert by_event[events[0].pk].fields == ["tool"]
    assert by_event[events[1].pk].fields == ["agent_id"]
    # Swap an event of checkpoint 1 with one of checkpoint 2 (their ids, i.e. their places in the log).
    a, b = events[3].pk, late.pk
    superuser_tampering("UPDATE audit_auditevent SET id = -1 WHERE id = %s", [a])
    superuser_tampering("UPDATE audit_auditevent SET id = %s WHERE id = %s", [a, b])
    superuser_tampering("UPDATE audit_auditevent SET id = %s WHERE id = -1", [b])
    moved = {p.event_id: p for p in integrity.verify_log().problems if p.problem == "moved"}
    assert set(moved) == {a, b}
    assert "checkpoint 2 recorded as event" in moved[a].message


def test_the_latest_signed_head_is_published_without_authentication(anonymous_client, checkpointed):
    _, made = checkpointed
    head = anonymous_client.get("/api/v1/audit/head/").json()
    assert head["sequence"] == made[-1].sequence and head["statement_hash"] == made[-1].statement_hash
    public = base64.b64decode(made[-1].key.public_key)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(head["signature"]), canonical_json(head["statement"]))
    assert hashlib.sha256(canonical_json(head["statement"])).hexdigest() == head["statement_hash"]


def test_no_head_before_the_first_checkpoint(anonymous_client, db):
    assert Checkpoint.objects.count() == 0
    assert anonymous_client.get("/api/v1/audit/head/").status_code == 404
