"""The real service paths, run connected as the roles of `manage.py setup_db_roles`.

One scratch database per test session (a copy of the migrated test database, roles set
up as docs/audit.md says); each test swaps Django's connection to the app role (or the
retention role) of that database, so the API, the verification worker, checkpoints, key
rotation, exports and `verify_audit` run with exactly the privileges they have when
deployed, and every tamper attempt meets PostgreSQL's refusal, not a test double.

Nothing here rolls back (the app role cannot delete audit rows): each test makes its own
agent and sessions, and asserts on what it made.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from agents_sdk.identity import AgentIdentity
from agents_sdk.records import ActionSigner
from controlplane.accounts import services as account_services
from controlplane.audit import checkpoints, integrity, retention, verification
from controlplane.audit.database_roles import DELETER, RoleNames
from controlplane.audit.models import AuditEvent, AuditExport, Batch, BatchStatus, Checkpoint, CheckpointKey
from controlplane.audit.models import QuarantinedRecord
from controlplane.identity import services as identity_services
from controlplane.identity.models import Agent, AgentKey
from tests.accounts.factories import UserFactory
from tests.audit.conftest import route_verifications, sign_session, upload

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="database roles exist on PostgreSQL only (CI runs PostgreSQL)",
)


@dataclass(frozen=True)
class RoleDatabase:
    name: str
    roles: RoleNames
    superuser: str


def _admin_url(settings_dict, database: str) -> str:
    host, port = settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"] or 5432
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    return f"postgres://{settings_dict['USER']}{password}@{host}:{port}/{database}"


@contextmanager
def _default_connection(**changes) -> Iterator[None]:
    """Point Django's default connection elsewhere (another database, another role), then back."""
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict.update(changes)
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


@pytest.fixture(scope="session")
def role_database(django_db_setup, django_db_blocker) -> Iterator[RoleDatabase]:
    """A scratch copy of the migrated test database with the owner, app and retention roles.

    Copied with CREATE DATABASE … TEMPLATE (a second); migrated afresh only when this
    session made no test database (these tests alone: none of them uses pytest-django's
    `db`, whose flush after each test would cost more than the tests) or another connection
    holds it. Named after the test database, so xdist workers and checkouts never meet.
    """
    with django_db_blocker.unblock():
        conn = connections["default"]
        source, superuser = conn.settings_dict["NAME"], conn.settings_dict["USER"]
        admin_url = _admin_url(conn.settings_dict, "postgres")
        test_name = conn.settings_dict.get("TEST", {}).get("NAME") or f"test_{source}"
        migrated = source.startswith(test_name)
        name = f"{source if migrated else test_name}_approle"
        roles = RoleNames(owner=f"{name}_owner", app=f"{name}_app", retention=f"{name}_retention")
        conn.close()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            copied = False
            if migrated:
                try:
                    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
                    copied = True
                except psycopg.errors.ObjectInUse:
                    pass
            if not copied:
                admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with django_db_blocker.unblock(), _default_connection(NAME=name):
            if not copied:
                call_command("migrate", verbosity=0)
            call_command("setup_db_roles", owner=roles.owner, app=roles.app, retention=roles.retention,
                         stdout=StringIO())
        yield RoleDatabase(name, roles, superuser)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (roles.owner, roles.app, roles.retention):
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def as_role(role_database, django_db_blocker):
    """`with as_role("app"):` runs the block with Django connected as that role of the scratch database."""

    @contextmanager
    def connect(which: str) -> Iterator[None]:
        user = {"app": role_database.roles.app, "retention": role_database.roles.retention,
                "superuser": role_database.superuser}[which]
        with django_db_blocker.unblock(), _default_connection(NAME=role_database.name, USER=user, PASSWORD=""):
            yield

    return connect


@pytest.fixture
def app_role(as_role, monkeypatch) -> Iterator[RoleDatabase]:
    """The whole test runs as the app role; queued verifications run at commit, in this process."""
    route_verifications(monkeypatch, verification.verify_batch)
    with as_role("app"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            user, is_superuser = cursor.fetchone()
        assert user.endswith("_app") and not is_superuser
        yield


def new_agent() -> tuple[AgentIdentity, ActionSigner, Agent]:
    """An agent registered through the identity service (as the console does), as the app role."""
    name = f"bot-{uuid.uuid4().hex[:10]}"
    identity = AgentIdentity.create(name, "ops@example.com", ["write:refunds"])
    by = UserFactory(username=f"admin-{name}", roles=["admin"])
    agent = identity_services.register_agent(name=name, owner_email="ops@example.com", by=by, environments=["prod"])
    identity_services.add_agent_key(agent, public_key=identity.public_key_b64, by=by)
    return identity, ActionSigner(identity), agent


def refused(statement: str, params=()) -> str:
    """Run `statement` as the current role; return PostgreSQL's refusal, fail if it was allowed."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)
    return str(caught.value)


def log_report(**kwargs) -> integrity.IntegrityReport:
    report = integrity.verify_log(**kwargs)
    assert report.ok, [p.message for p in report.problems]
    return report


def test_the_app_role_ingests_quarantines_checkpoints_and_verifies_the_log(app_role):
    identity, signer, agent = new_agent()
    client = APIClient()
    genuine = sign_session(signer, "s1") + sign_session(signer, "s2")
    forged = sign_session(signer, "s3")[0]
    forged["payload"] = {**forged["payload"], "tool": "wire_transfer"}  # changed after signing
    assert upload(client, identity, genuine).status_code == 202
    assert upload(client, identity, [forged]).status_code == 202
    assert Batch.objects.filter(agent=agent, status=BatchStatus.VERIFIED).count() == 2
    assert AuditEvent.objects.filter(agent=agent).count() == len(genuine)
    assert list(QuarantinedRecord.objects.filter(agent=agent).values_list("reason", flat=True)) == ["bad_signature"]

    made = checkpoints.create_checkpoints()
    assert made and made[-1].last_event_id >= AuditEvent.objects.filter(agent=agent).latest("id").pk
    report = log_report()
    assert report.witness_entries >= 2  # the batch of events and the checkpoint, written after commit
    head = APIClient().get("/api/v1/audit/head/").json()
    assert head["sequence"] == made[-1].sequence


def test_every_tamper_attempt_of_the_app_role_is_refused(app_role):
    identity, signer, agent = new_agent()
    upload(APIClient(), identity, sign_session(signer, "s1"))
    checkpoints.create_checkpoints()
    event = AuditEvent.objects.filter(agent=agent).earliest("id")
    checkpoint = Checkpoint.objects.latest("sequence")
    for statement, key in (
        ("UPDATE audit_auditevent SET tool = 'nothing' WHERE id = %s", event.pk),
        ("DELETE FROM audit_auditevent WHERE id >= %s", event.pk),
        ("DELETE FROM audit_checkpoint WHERE sequence = %s", checkpoint.sequence),
        ("UPDATE audit_checkpoint SET merkle_root = 'x' WHERE sequence = %s", checkpoint.sequence),
        ("UPDATE audit_batch SET body = 'x' WHERE id = %s", event.batch_id),
        ("DELETE FROM audit_batch WHERE id = %s", event.batch_id),
        ("UPDATE audit_checkpointkey SET public_key = 'x' WHERE key_id <> %s", ""),
        ("DELETE FROM changelog_objectchange WHERE %s", True),
        ("UPDATE policies_policyrevision SET source = 'package x' WHERE %s", True),
        ("DELETE FROM identity_agentkey WHERE agent_id = %s", agent.pk),
        ("SELECT warden_audit_retention_delete(ARRAY[%s]::bigint[], '{}', '{}')", event.pk),
    ):
        assert "permission denied" in refused(statement, [key]), statement
    for statement in (
        "TRUNCATE audit_auditevent",
        "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_auditevent_append_only ON audit_auditevent",
        "CREATE OR REPLACE FUNCTION warden_append_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'",
        f"SET ROLE {DELETER}",
    ):
        message = refused(statement)
        assert "permission denied" in message or "must be owner" in message, statement
    # The old bypass, a session setting, unlocks nothing; neither does the ORM.
    with connection.cursor() as cursor:
        cursor.execute("SET warden.audit_retention = 'on'")
    assert "permission denied" in refused("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with connection.cursor() as cursor:
        cursor.execute("RESET warden.audit_retention")
    assert AuditEvent.objects.get(pk=event.pk).tool == event.tool
    log_report()


def test_a_checkpoint_key_the_app_role_slips_in_is_named_against_the_pinned_keys(app_role, settings):
    identity, signer, _ = new_agent()
    upload(APIClient(), identity, sign_session(signer, "s1"))
    checkpoints.create_checkpoints()
    genuine = tuple(CheckpointKey.objects.values_list("public_key", flat=True))
    # What the app role may do: insert a key row and deactivate the genuine one; then sign.
    CheckpointKey.objects.update(is_active=False)
    attacker = checkpoints._new_key()
    upload(APIClient(), identity, sign_session(signer, "s2"))
    forged = checkpoints.create_checkpoints()
    assert forged and forged[-1].key_id == attacker.pk
    assert integrity.verify_log().ok  # trusting the key table, the forgery would pass
    settings.WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = genuine
    report = integrity.verify_log()
    assert report.key_source == "pinned" and not report.ok
    assert {p.checkpoint for p in report.problems} == {c.sequence for c in forged}
    assert all("is not a trusted checkpoint key" in p.message for p in report.problems)
    # The way back, as the app role: an explicit, logged rotation, and the new key pinned.
    out = StringIO()
    call_command("rotate_checkpoint_key", stdout=out)
    settings.WARDEN_AUDIT_CHECKPOINT_PUBLIC_KEYS = tuple(
        CheckpointKey.objects.exclude(pk=attacker.pk).values_list("public_key", flat=True)
    )
    upload(APIClient(), identity, sign_session(signer, "s3"))
    assert checkpoints.create_checkpoints()
    assert {p.checkpoint for p in integrity.verify_log().problems} == {c.sequence for c in forged}


def test_retention_runs_as_the_retention_role_and_is_refused_to_the_app_role(as_role, monkeypatch):
    route_verifications(monkeypatch, verification.verify_batch)
    later = timezone.now() + timedelta(days=400)
    with as_role("app"):
        identity, signer, agent = new_agent()
        upload(APIClient(), identity, sign_session(signer, "s1"))
        checkpoints.create_checkpoints()
        count = AuditEvent.objects.filter(agent=agent).count()
        with pytest.raises(DatabaseError, match="permission denied for function warden_audit_retention_delete"):
            retention.apply_retention(now=later)
        assert AuditEvent.objects.filter(agent=agent).count() == count
    with as_role("retention"):
        made = retention.apply_retention(now=later)
        assert any(c.statement.get("agent_id") == str(agent.pk) and c.event_count == count for c in made)
        assert not AuditEvent.objects.filter(agent=agent).exists()
        assert not Batch.objects.filter(agent=agent).exists()
    with as_role("app"):
        output = StringIO()
        call_command("verify_audit", stdout=output)
        assert "removed by retention" in output.getvalue() and output.getvalue().splitlines()[-1].startswith("OK")


def test_parking_revoking_and_exporting_work_within_the_app_roles_rights(app_role, settings):
    identity, signer, agent = new_agent()
    # A batch whose verification kept failing is parked (the processing columns the app may change).
    with transaction.atomic():
        upload(APIClient(), identity, sign_session(signer, "s1"))  # verification runs at commit: not yet
        stuck = Batch.objects.filter(agent=agent).latest("id")
        Batch.objects.filter(pk=stuck.pk).update(attempts=settings.WARDEN_AUDIT_MAX_BATCH_ATTEMPTS)
    assert Batch.objects.get(pk=stuck.pk).status == BatchStatus.PARKED
    # Later batches of the agent go on without it.
    upload(APIClient(), identity, sign_session(signer, "s2"))
    assert AuditEvent.objects.filter(agent=agent, session_id="s2").count() == 4
    # Revoking the key: revoked_at moves once, never back.
    key = AgentKey.objects.get(agent=agent)
    by = UserFactory(username=f"sec-{agent.name}", roles=["admin"])
    identity_services.revoke_agent_key(key, by=by, reason="leaked")
    assert "history" in refused("UPDATE identity_agentkey SET revoked_at = NULL WHERE key_id = %s", [key.pk])
    # An export of originals is recorded, and the record cannot be rewritten.
    settings.WARDEN_AUDIT_ORIGINALS_ROLES = ("auditor",)
    auditor = UserFactory(username=f"aud-{agent.name}", roles=["auditor"])
    _, token = account_services.create_token(user=auditor, name="t", by=auditor)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.get("/api/v1/audit/events/export/", {"agent": agent.name, "originals": "true"})
    assert response.status_code == 200
    assert b"4242424242424242" in b"".join(response.streaming_content)
    export = AuditExport.objects.filter(user=auditor).get()
    assert export.originals
    with pytest.raises(CommandError):
        call_command("verify_audit", "--public-key", "not-a-key", stdout=StringIO())
    log_report()
