"""Writes on agents and their keys: registration, updates, the kill switch, key rotation.

Each service runs in one transaction and records its change log entry itself. The kill
switch (suspend, resume, revoke) then delivers the change before it returns: the affected
bundles are rebuilt and activated in the same call, or NotDelivered is raised (503), never
a silent success.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents_sdk.keys import InvalidPublicKey, encode_public_key, key_fingerprint, parse_public_key, raw_public_key
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.identity.models import Agent, AgentKey, AgentStatus

MAX_ACTIVE_KEYS = 5
EDITABLE_AGENT_FIELDS = frozenset(
    {
        "display_name", "owner_email", "team", "description", "scopes", "risk_tier", "environments",
        "egress_allow_hosts", "shell_allow_commands", "sandbox_profile",
    }
)


def _validate(agent: Agent) -> None:
    try:
        agent.full_clean(validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(" ".join(messages), field=field) from exc


def _announce(agent: Agent, reason: str) -> None:
    transaction.on_commit(lambda: registry_changed.send(sender=Agent, agent=agent, reason=reason))


@transaction.atomic
def register_agent(*, name: str, owner_email: str, by, **fields) -> Agent:
    """Create an agent, active, with no keys yet."""
    unknown = set(fields) - EDITABLE_AGENT_FIELDS
    if unknown:
        raise InvalidInput("cannot be set when registering an agent", field=sorted(unknown)[0])
    if Agent.objects.filter(name=name).exists():
        raise ConflictError(f"an agent named {name!r} already exists", field="name")
    agent = Agent(name=name, owner_email=owner_email, **fields)
    _validate(agent)
    agent.save()
    record_change(agent, action=ChangeAction.CREATE, by=by, after=snapshot(agent))
    _announce(agent, "registered")
    return agent


@transaction.atomic
def update_agent(agent: Agent, *, by, **fields) -> Agent:
    """Change an agent's descriptive fields, scopes, risk tier or environments (not its name or status)."""
    unknown = set(fields) - EDITABLE_AGENT_FIELDS
    if unknown:
        raise InvalidInput("cannot be changed here", field=sorted(unknown)[0])
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.status == AgentStatus.REVOKED:
        raise ConflictError("a revoked agent cannot be changed")
    before = snapshot(agent)
    for name, value in fields.items():
        setattr(agent, name, value)
    _validate(agent)
    agent.save()
    after = snapshot(agent)
    record_change(agent, action=ChangeAction.UPDATE, by=by, before=before, after=after)
    _announce(agent, "updated")
    return agent


@dataclass
class KillSwitchOutcome:
    agent: Agent
    # Per environment: the revision carrying the change and which engines run it (see
    # bundles.selectors.delivery_report).
    delivery: list[dict] = field(default_factory=list)


def _deliver(agent: Agent, reason: str) -> list[dict]:
    """Rebuild and activate the bundles now, outside the status change's transaction, so a
    failed rebuild cannot undo the recorded change but is still reported (NotDelivered)."""
    report: list[dict] = []
    for _, response in registry_changed.send(sender=Agent, agent=agent, reason=reason, deliver=True):
        report.extend(response or [])
    return report


def _change_status(agent: Agent, *, to: str, allowed_from: set[str], action: str, by, reason: str) -> Agent:
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.status not in allowed_from:
        raise ConflictError(f"the agent is {agent.status}; it cannot be {ChangeAction(action).label.lower()}")
    before = snapshot(agent)
    agent.status = to
    agent.status_reason = reason
    agent.status_changed_at = timezone.now()
    agent.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
    record_change(agent, action=action, by=by, before=before, after=snapshot(agent), message=reason)
    return agent


def suspend(agent: Agent, *, by, reason: str = "") -> KillSwitchOutcome:
    """Kill switch: deny every action of the agent until it is resumed; delivered before it returns."""
    with transaction.atomic():
        agent = _change_status(
            agent, to=AgentStatus.SUSPENDED, allowed_from={AgentStatus.ACTIVE}, action=ChangeAction.SUSPEND,
            by=by, reason=reason,
        )
    return KillSwitchOutcome(agent, _deliver(agent, ChangeAction.SUSPEND))


def resume(agent: Agent, *, by, reason: str = "") -> KillSwitchOutcome:
    with transaction.atomic():
        agent = _change_status(
            agent, to=AgentStatus.ACTIVE, allowed_from={AgentStatus.SUSPENDED}, action=ChangeAction.RESUME,
            by=by, reason=reason,
        )
    return KillSwitchOutcome(agent, _deliver(agent, ChangeAction.RESUME))


def revoke(agent: Agent, *, by, reason: str = "") -> KillSwitchOutcome:
    """Retire the agent for good: status revoked and every key revoked. There is no way back."""
    with transaction.atomic():
        agent = _change_status(
            agent, to=AgentStatus.REVOKED, allowed_from={AgentStatus.ACTIVE, AgentStatus.SUSPENDED},
            action=ChangeAction.REVOKE, by=by, reason=reason,
        )
        for key in agent.keys.filter(revoked_at__isnull=True):
            _revoke_key(key, by=by, reason=f"agent revoked: {reason}" if reason else "agent revoked")
    return KillSwitchOutcome(agent, _deliver(agent, ChangeAction.REVOKE))


def suspend_agent(agent: Agent, *, by, reason: str = "") -> Agent:
    return suspend(agent, by=by, reason=reason).agent


def resume_agent(agent: Agent, *, by, reason: str = "") -> Agent:
    return resume(agent, by=by, reason=reason).agent


def revoke_agent(agent: Agent, *, by, reason: str = "") -> Agent:
    return revoke(agent, by=by, reason=reason).agent


def _parse_key(public_key: str) -> tuple[str, str]:
    """Return (key_id, canonical base64) of a submitted public key, or raise InvalidInput."""
    try:
        key = parse_public_key(public_key)
    except InvalidPublicKey as exc:
        raise InvalidInput(str(exc), field="public_key") from exc
    return key_fingerprint(raw_public_key(key)), encode_public_key(key)


def _add_key(agent: Agent, *, public_key: str, label: str, by) -> AgentKey:
    key_id, encoded = _parse_key(public_key)
    if AgentKey.objects.filter(key_id=key_id).exists():
        raise ConflictError("this public key is already registered", field="public_key")
    key = AgentKey.objects.create(key_id=key_id, agent=agent, public_key=encoded, label=label, created_by=by)
    record_change(key, action=ChangeAction.CREATE, by=by, after=snapshot(key))
    return key


def _revoke_key(key: AgentKey, *, by, reason: str) -> AgentKey:
    before = snapshot(key)
    key.revoked_at = timezone.now()
    key.revoked_reason = reason
    key.save(update_fields=["revoked_at", "revoked_reason"])
    record_change(key, action=ChangeAction.REVOKE, by=by, before=before, after=snapshot(key), message=reason)
    return key


def _lock_usable_agent(agent: Agent) -> Agent:
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.status == AgentStatus.REVOKED:
        raise ConflictError("a revoked agent cannot get new keys")
    return agent


@transaction.atomic
def add_agent_key(agent: Agent, *, public_key: str, label: str = "", by) -> AgentKey:
    """Register one more public key for the agent (the private key never leaves the agent)."""
    agent = _lock_usable_agent(agent)
    if agent.keys.filter(revoked_at__isnull=True).count() >= MAX_ACTIVE_KEYS:
        raise ConflictError(
            f"the agent already has {MAX_ACTIVE_KEYS} active keys; revoke one first", field="public_key"
        )
    key = _add_key(agent, public_key=public_key, label=label, by=by)
    _announce(agent, "key added")
    return key


@transaction.atomic
def revoke_agent_key(key: AgentKey, *, by, reason: str = "") -> AgentKey:
    key = AgentKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise ConflictError("the key is already revoked")
    key = _revoke_key(key, by=by, reason=reason)
    _announce(key.agent, "key revoked")
    return key


@transaction.atomic
def rotate_agent_key(agent: Agent, *, public_key: str, label: str = "", by) -> tuple[AgentKey, list[AgentKey]]:
    """Register the new key and revoke every other active key of the agent, atomically.

    Returns the new key and the keys it replaced.
    """
    agent = _lock_usable_agent(agent)
    replaced = list(agent.keys.filter(revoked_at__isnull=True))
    new_key = _add_key(agent, public_key=public_key, label=label, by=by)
    for key in replaced:
        _revoke_key(key, by=by, reason=f"rotated to {new_key.key_id}")
    record_change(
        agent, action=ChangeAction.ROTATE, by=by,
        message=f"new key {new_key.key_id}; revoked {', '.join(k.key_id for k in replaced) or 'none'}",
    )
    _announce(agent, "key rotated")
    return new_key, replaced
