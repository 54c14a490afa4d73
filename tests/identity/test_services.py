"""The identity services: registration, kill switch transitions, keys and rotation."""

import pytest
from django.utils import timezone

from agents_sdk.keys import key_fingerprint
from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.identity import selectors, services
from controlplane.identity.models import AgentStatus
from tests.identity.factories import AgentFactory, AgentKeyFactory, new_public_key, set_key_created_at

pytestmark = pytest.mark.django_db


def test_register_agent_records_creation_in_change_log(admin_user):
    agent = services.register_agent(
        name="ops-bot", owner_email="ops@example.com", scopes=["read:logs"], environments=["prod"], by=admin_user
    )
    change = ObjectChange.objects.get(object_id=str(agent.pk))
    assert change.action == "create"
    assert change.user == admin_user
    assert change.prechange_data is None
    assert change.postchange_data["name"] == "ops-bot"
    assert change.postchange_data["scopes"] == ["read:logs"]


def test_register_agent_refuses_duplicate_name(admin_user):
    AgentFactory(name="ops-bot")
    with pytest.raises(ConflictError, match="already exists"):
        services.register_agent(name="ops-bot", owner_email="x@example.com", by=admin_user)


@pytest.mark.parametrize("scopes", [["tickets"], ["Read:tickets"], ["read:"], [":x"], ["read:a b"], ["read:x", "read:x"]])
def test_register_agent_refuses_malformed_scopes(admin_user, scopes):
    with pytest.raises(InvalidInput) as error:
        services.register_agent(name="ops-bot", owner_email="ops@example.com", scopes=scopes, by=admin_user)
    assert error.value.field == "scopes"


def test_suspend_resume_cycle_records_each_transition_with_reason(admin_user):
    agent = AgentFactory()
    services.suspend_agent(agent, by=admin_user, reason="runaway deletes")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.SUSPENDED
    assert agent.status_reason == "runaway deletes"
    assert agent.status_changed_at is not None
    services.resume_agent(agent, by=admin_user, reason="fixed")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    actions = list(
        ObjectChange.objects.filter(object_id=str(agent.pk)).order_by("time").values_list("action", "message")
    )
    assert actions == [("suspend", "runaway deletes"), ("resume", "fixed")]
    suspend = ObjectChange.objects.get(object_id=str(agent.pk), action="suspend")
    assert suspend.prechange_data["status"] == "active"
    assert suspend.postchange_data["status"] == "suspended"


@pytest.mark.parametrize(
    "start, service",
    [
        (AgentStatus.SUSPENDED, services.suspend_agent),
        (AgentStatus.ACTIVE, services.resume_agent),
        (AgentStatus.REVOKED, services.suspend_agent),
        (AgentStatus.REVOKED, services.resume_agent),
        (AgentStatus.REVOKED, services.revoke_agent),
    ],
)
def test_invalid_status_transitions_conflict_and_change_nothing(admin_user, start, service):
    agent = AgentFactory(status=start)
    with pytest.raises(ConflictError, match=f"the agent is {start}"):
        service(agent, by=admin_user)
    agent.refresh_from_db()
    assert agent.status == start
    assert not ObjectChange.objects.filter(object_id=str(agent.pk)).exists()


def test_revoke_agent_revokes_every_key(admin_user):
    agent = AgentFactory()
    keys = [AgentKeyFactory(agent=agent) for _ in range(2)]
    services.revoke_agent(agent, by=admin_user, reason="decommissioned")
    for key in keys:
        key.refresh_from_db()
        assert key.revoked_at is not None
        assert "decommissioned" in key.revoked_reason
    with pytest.raises(ConflictError, match="revoked agent cannot get new keys"):
        services.add_agent_key(agent, public_key=new_public_key(), by=admin_user)


def test_add_key_stores_fingerprint_as_the_sdk_computes_it(admin_user):
    agent = AgentFactory()
    public_key = new_public_key()
    key = services.add_agent_key(agent, public_key=public_key, by=admin_user)
    import base64

    assert key.key_id == key_fingerprint(base64.b64decode(public_key))
    assert key.public_key == public_key


def test_add_key_accepts_pem_and_normalises_to_base64(admin_user):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    key = services.add_agent_key(AgentFactory(), public_key=pem, by=admin_user)
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.key_id == key_fingerprint(raw)


@pytest.mark.parametrize("bad", ["", "not base64!", "AAAA", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"])
def test_add_key_refuses_what_is_not_an_ed25519_key(admin_user, bad):
    with pytest.raises(InvalidInput) as error:
        services.add_agent_key(AgentFactory(), public_key=bad, by=admin_user)
    assert error.value.field == "public_key"


def test_add_key_refuses_a_key_registered_to_any_agent(admin_user):
    existing = AgentKeyFactory()
    with pytest.raises(ConflictError, match="already registered"):
        services.add_agent_key(AgentFactory(), public_key=existing.public_key, by=admin_user)


def test_active_keys_are_capped(admin_user):
    agent = AgentFactory()
    for _ in range(services.MAX_ACTIVE_KEYS):
        services.add_agent_key(agent, public_key=new_public_key(), by=admin_user)
    with pytest.raises(ConflictError, match="active keys"):
        services.add_agent_key(agent, public_key=new_public_key(), by=admin_user)


def test_rotation_adds_new_key_and_revokes_all_previous_ones_atomically(admin_user):
    agent = AgentFactory()
    old = [AgentKeyFactory(agent=agent) for _ in range(2)]
    new_key, replaced = services.rotate_agent_key(agent, public_key=new_public_key(), by=admin_user)
    assert {k.key_id for k in replaced} == {k.key_id for k in old}
    assert [k.key_id for k in selectors.active_keys(agent)] == [new_key.key_id]
    rotation = ObjectChange.objects.get(object_id=str(agent.pk), action="rotate")
    assert new_key.key_id in rotation.message
    revocations = ObjectChange.objects.filter(action="revoke", object_id__in=[k.key_id for k in old])
    assert revocations.count() == 2


def test_failed_rotation_keeps_previous_keys_active(admin_user):
    agent = AgentFactory()
    old = AgentKeyFactory(agent=agent)
    with pytest.raises(InvalidInput):
        services.rotate_agent_key(agent, public_key="garbage", by=admin_user)
    old.refresh_from_db()
    assert old.revoked_at is None


def test_key_valid_at_respects_revocation_time(admin_user):
    key = AgentKeyFactory()
    before_revocation = timezone.now()
    services.revoke_agent_key(key, by=admin_user, reason="leaked")
    key.refresh_from_db()
    assert selectors.key_valid_at(key.key_id, before_revocation) == key
    assert selectors.key_valid_at(key.key_id, timezone.now()) is None


def test_agents_due_for_key_rotation_lists_stale_and_keyless_agents():
    from datetime import timedelta

    fresh = AgentKeyFactory().agent
    stale_key = AgentKeyFactory()
    set_key_created_at(stale_key.pk, timezone.now() - timedelta(days=120))
    keyless = AgentFactory()
    AgentFactory(status=AgentStatus.REVOKED)
    due = set(selectors.agents_due_for_key_rotation(timedelta(days=90)).values_list("name", flat=True))
    assert due == {stale_key.agent.name, keyless.name}
    assert fresh.name not in due


def test_registry_change_is_announced_only_after_commit(admin_user, django_capture_on_commit_callbacks):
    received = []

    def listener(sender, reason, agent=None, **kwargs):
        received.append((agent.name, reason))

    registry_changed.connect(listener)
    try:
        agent = AgentFactory()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            services.update_agent(agent, by=admin_user, team="payments")
        assert received == []
        for callback in callbacks:
            callback()
        assert received == [(agent.name, "updated")]
    finally:
        registry_changed.disconnect(listener)


def test_the_kill_switch_delivers_before_it_returns_not_after_commit(admin_user, django_capture_on_commit_callbacks):
    """A suspension must not wait for a commit hook that may never run (or fail silently):
    the receivers run during the call, with deliver=True, and their report is returned."""
    received = []

    def listener(sender, reason, agent=None, deliver=False, **kwargs):
        received.append((agent.name, reason, deliver))
        return [{"environment": "dev", "revision": "r1"}]

    registry_changed.connect(listener)
    try:
        agent = AgentFactory()
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            outcome = services.suspend(agent, by=admin_user, reason="leak")
        assert callbacks == []
        assert received == [(agent.name, "suspend", True)]
        assert {"environment": "dev", "revision": "r1"} in outcome.delivery
        assert outcome.agent.status == AgentStatus.SUSPENDED
    finally:
        registry_changed.disconnect(listener)


def test_update_agent_cannot_change_name_or_status(admin_user):
    agent = AgentFactory()
    for field in ("name", "status"):
        with pytest.raises(InvalidInput) as error:
            services.update_agent(agent, by=admin_user, **{field: "x"})
        assert error.value.field == field
