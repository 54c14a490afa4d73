"""Agent keys, bundle signing keys and checkpoint keys keep their material and validity history
(migration audit 0006), tried as the application's own PostgreSQL role and past its privileges.

Revocation, retirement and re-encryption must keep working; nothing else may change a row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from controlplane.audit import checkpoints
from controlplane.audit.models import CheckpointKey
from controlplane.bundles.models import SigningKey
from controlplane.bundles.signing import active_signing_key, private_key_pem
from controlplane.identity import services as identity
from controlplane.identity.models import AgentKey
from tests.audit import test_database_roles as role_tests
from tests.audit.test_database_roles import REPO, connected_as, database_url, refused
from tests.identity.factories import AgentFactory, AgentKeyFactory, new_public_key

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="database roles and triggers exist on PostgreSQL only (CI runs PostgreSQL)",
    ),
]


roles = role_tests.roles  # the fixture: setup_db_roles in the test database, dropped afterwards


def as_table_owner(statement: str, params=()) -> str:
    """Run `statement` with every table privilege (the test's superuser, triggers on): the
    trigger must refuse it. Returns the refusal."""
    with connection.cursor() as cursor, pytest.raises(Exception) as caught:
        cursor.execute(statement, params)
    return str(caught.value)


@pytest.fixture
def agent_key(admin_user) -> AgentKey:
    return AgentKeyFactory(agent=AgentFactory(), created_by=admin_user)


def test_agent_keys_keep_their_material_and_revocation_happens_once(roles, agent_key, admin_user):
    other = AgentFactory()
    tamper = [
        ("UPDATE identity_agentkey SET public_key = %s WHERE key_id = %s", [new_public_key(), agent_key.key_id]),
        ("UPDATE identity_agentkey SET agent_id = %s WHERE key_id = %s", [other.pk, agent_key.key_id]),
        ("UPDATE identity_agentkey SET key_id = 'f' || substr(key_id, 2) WHERE key_id = %s", [agent_key.key_id]),
        ("UPDATE identity_agentkey SET created_at = created_at - interval '1 year' WHERE key_id = %s", [agent_key.key_id]),
        ("UPDATE identity_agentkey SET label = 'renamed' WHERE key_id = %s", [agent_key.key_id]),
        ("UPDATE identity_agentkey SET revoked_reason = 'no revocation' WHERE key_id = %s", [agent_key.key_id]),
        ("DELETE FROM identity_agentkey WHERE key_id = %s", [agent_key.key_id]),
    ]
    with connected_as(roles.app) as app:
        for statement, params in tamper:  # by privilege, or (granted columns) by the trigger
            assert any(word in refused(app, statement, params) for word in ("permission denied", "keeps its keys")), statement
        assert "permission denied" in refused(app, "TRUNCATE identity_agentkey CASCADE")
    for statement, params in tamper:  # the trigger holds for a role with every table privilege too
        assert "history" in as_table_owner(statement, params) or "keeps every key" in as_table_owner(statement, params)

    # Revocation works as the app does it (the service, through the ORM) ...
    identity.revoke_agent_key(agent_key, by=admin_user, reason="leaked")
    revoked = AgentKey.objects.get(pk=agent_key.pk)
    assert revoked.revoked_at is not None and revoked.revoked_reason == "leaked"
    # ... and once: never un-revoked, moved to another time, or given another reason.
    with connected_as(roles.app) as app:
        for statement in (
            "UPDATE identity_agentkey SET revoked_at = NULL WHERE key_id = %s",
            "UPDATE identity_agentkey SET revoked_at = revoked_at + interval '1 day' WHERE key_id = %s",
            "UPDATE identity_agentkey SET revoked_at = revoked_at - interval '1 day' WHERE key_id = %s",
            "UPDATE identity_agentkey SET revoked_reason = 'routine' WHERE key_id = %s",
        ):
            assert "revoked_" in refused(app, statement, [agent_key.key_id]), statement
        # Setting a column to the value it has changes nothing and is allowed (an ORM save).
        app.execute("UPDATE identity_agentkey SET revoked_reason = revoked_reason WHERE key_id = %s", [agent_key.key_id])
    # Deleting the user who added the key keeps the key, with created_by NULL.
    get_user_model().objects.filter(pk=admin_user.pk).delete()
    assert AgentKey.objects.get(pk=agent_key.pk).created_by_id is None
    assert "created_by_id" in as_table_owner("UPDATE identity_agentkey SET created_by_id = %s WHERE key_id = %s",
                                             [get_user_model().objects.create(username="eve").pk, agent_key.key_id])


def test_rotation_adds_and_revokes_keys_under_the_trigger(admin_user):
    agent = AgentFactory()
    first = identity.add_agent_key(agent, public_key=new_public_key(), by=admin_user)
    added, replaced = identity.rotate_agent_key(agent, public_key=new_public_key(), by=admin_user)
    assert [key.pk for key in replaced] == [first.pk]
    assert AgentKey.objects.get(pk=first.pk).revoked_at is not None
    assert AgentKey.objects.get(pk=added.pk).revoked_at is None


def test_signing_keys_are_retired_once_and_re_encrypted_never_replaced(roles):
    key = active_signing_key()
    kid = key.kid
    with connected_as(roles.app) as app:
        for statement in (
            "UPDATE bundles_signingkey SET public_key_pem = 'attacker' WHERE kid = %s",
            "UPDATE bundles_signingkey SET kid = 'warden-0000' WHERE kid = %s",
            "UPDATE bundles_signingkey SET algorithm = 'none' WHERE kid = %s",
            "UPDATE bundles_signingkey SET created_at = now() WHERE kid = %s",
            "DELETE FROM bundles_signingkey WHERE kid = %s",
        ):
            assert "permission denied" in refused(app, statement, [kid]), statement
        # Retiring is allowed, once; a retired key never comes back.
        app.execute("UPDATE bundles_signingkey SET is_active = false, retired_at = now() WHERE kid = %s", [kid])
        for statement in (
            "UPDATE bundles_signingkey SET is_active = true WHERE kid = %s",
            "UPDATE bundles_signingkey SET retired_at = NULL WHERE kid = %s",
            "UPDATE bundles_signingkey SET retired_at = retired_at - interval '1 day' WHERE kid = %s",
        ):
            assert "may not change" in refused(app, statement, [kid]), statement
    assert "keeps its keys' material" in as_table_owner(
        "UPDATE bundles_signingkey SET public_key_pem = 'x' WHERE kid = %s", [kid])
    assert "keeps every key" in as_table_owner("DELETE FROM bundles_signingkey WHERE kid = %s", [kid])


def test_re_encryption_is_the_one_change_of_key_material_and_runs_as_the_app_role(roles, settings):
    """Re-encryption is the one change of key material: ciphertext only, run as the app role."""
    key = active_signing_key()
    checkpoints.active_checkpoint_key()
    pem = private_key_pem(key)
    before = {row.pk: bytes(row.encrypted_private_key) for row in CheckpointKey.objects.all()}
    from cryptography.fernet import Fernet

    new_key = Fernet.generate_key().decode()
    env = {**os.environ, "DATABASE_URL": database_url(roles.app), "DJANGO_SETTINGS_MODULE": "controlplane.settings",
           "WARDEN_ENCRYPTION_KEY": new_key, "WARDEN_ENCRYPTION_KEY_FALLBACKS": settings.WARDEN_ENCRYPTION_KEY or "",
           "WARDEN_SECRET_KEY": settings.SECRET_KEY}
    if not settings.WARDEN_ENCRYPTION_KEY:
        env.pop("WARDEN_ENCRYPTION_KEY_FALLBACKS")
        env["WARDEN_SECRET_KEY_FALLBACKS"] = settings.SECRET_KEY
    done = subprocess.run([sys.executable, "manage.py", "rotate_encryption_key"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted" in done.stdout
    rotated = SigningKey.objects.get(pk=key.pk)
    assert bytes(rotated.encrypted_private_key) != bytes(key.encrypted_private_key)
    assert rotated.public_key_pem == key.public_key_pem and rotated.is_active
    settings.WARDEN_ENCRYPTION_KEY = new_key
    assert private_key_pem(rotated) == pem  # same key, new ciphertext
    after = {row.pk: bytes(row.encrypted_private_key) for row in CheckpointKey.objects.all()}
    assert after.keys() == before.keys() and all(after[pk] != before[pk] for pk in before)

    # Checkpoint keys: re-encrypted above; the public key stays, deactivation is for good.
    row = CheckpointKey.objects.get()
    with connected_as(roles.app) as app:
        assert "permission denied" in refused(app, "UPDATE audit_checkpointkey SET public_key = 'x' WHERE key_id = %s",
                                              [row.key_id])
        assert "permission denied" in refused(app, "DELETE FROM audit_checkpointkey WHERE key_id = %s", [row.key_id])
        app.execute("UPDATE audit_checkpointkey SET is_active = false WHERE key_id = %s", [row.key_id])
        assert "may not change" in refused(app, "UPDATE audit_checkpointkey SET is_active = true WHERE key_id = %s",
                                           [row.key_id])
    out = StringIO()
    call_command("setup_db_roles", owner=roles.owner, app=roles.app, retention=roles.retention, stdout=out)
    assert "identity_agentkey" in out.getvalue() and "bundles_signingkey" in out.getvalue()  # idempotent, named
