"""Writes for delegation: registry rules, person-issued grants, revocations.

Each change reaches every environment's bundle after it commits (``registry_changed``), so
engines verify chains against it at their next bundle activation.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction

from agents_sdk.delegation import DEFAULT_MAX_LIFETIME, MAX_LINKS, encode_chain, grant_hash, issue_grant, person_issuer
from agents_sdk.delegation.grants import HEX64, NAME, PERSON, constraints_problem, person_allowed
from agents_sdk.keys import encode_public_key, key_fingerprint, raw_public_key
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.core.crypto import secrets_at_rest
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.signals import registry_changed
from controlplane.delegation.models import DelegationAuthority, DelegationRule, PersonGrant, Revocation
from controlplane.identity.models import Agent, AgentStatus

MAX_LIFETIME_LIMIT = 7 * 24 * 3600


def _announce(reason: str) -> None:
    transaction.on_commit(lambda: registry_changed.send(sender=DelegationRule, reason=reason))


@transaction.atomic
def set_rule(agent: Agent, *, by, may_delegate_to: list[str], max_depth: int | None = None,
             max_lifetime_seconds: int | None = None, may_act_for: list[str] | None = None) -> DelegationRule:
    """Replace what ``agent`` may delegate and whose grants it accepts. Raises InvalidInput naming the field."""
    if len(may_delegate_to) > 500:
        raise InvalidInput("at most 500 agents", field="may_delegate_to")
    for name in may_delegate_to:
        if name != "*" and not (isinstance(name, str) and NAME.fullmatch(name)):
            raise InvalidInput(f"{name!r} is not an agent name or '*'", field="may_delegate_to")
        if name == agent.name:
            raise InvalidInput("an agent cannot delegate to itself", field="may_delegate_to")
    if max_depth is not None and not 1 <= max_depth <= MAX_LINKS:
        raise InvalidInput(f"must be from 1 to {MAX_LINKS}", field="max_depth")
    if max_lifetime_seconds is not None and not 1 <= max_lifetime_seconds <= MAX_LIFETIME_LIMIT:
        raise InvalidInput(f"must be from 1 to {MAX_LIFETIME_LIMIT} seconds", field="max_lifetime_seconds")
    may_act_for = list(may_act_for or [])
    if len(may_act_for) > 500:
        raise InvalidInput("at most 500 people or domains", field="may_act_for")
    for entry in may_act_for:
        as_address = "someone" + entry if isinstance(entry, str) and entry.startswith("@") else entry  # @domain
        if not isinstance(entry, str) or not (entry == "*" or PERSON.fullmatch(person_issuer(str(as_address)))):
            raise InvalidInput(f"{entry!r} is not an e-mail address, '@domain' or '*'", field="may_act_for")
    rule, created = DelegationRule.objects.select_for_update().get_or_create(agent=agent)
    before = None if created else snapshot(rule)
    rule.may_delegate_to = sorted(set(may_delegate_to))
    rule.may_act_for = sorted({entry.lower() for entry in may_act_for})
    rule.max_depth, rule.max_lifetime_seconds, rule.updated_by = max_depth, max_lifetime_seconds, by
    rule.save()
    record_change(rule, action=str(ChangeAction.CREATE if created else ChangeAction.UPDATE), by=by, before=before,
                  after=snapshot(rule))
    _announce(f"delegation rule of {agent.name} changed")
    return rule


@dataclass(frozen=True)
class _AuthoritySigner:
    key_id: str
    private_key: Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


@transaction.atomic
def authority_signer() -> _AuthoritySigner:
    """The control plane's delegation key, generated on first use and stored encrypted."""
    row = DelegationAuthority.objects.select_for_update().filter(is_active=True).first()
    if row is None:
        key = Ed25519PrivateKey.generate()
        public = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        row = DelegationAuthority.objects.create(
            key_id=key_fingerprint(raw_public_key(public)), public_key=encode_public_key(public),
            encrypted_private_key=secrets_at_rest().encrypt(pem),
        )
        _announce("delegation authority key created")
    try:
        pem = secrets_at_rest().decrypt(bytes(row.encrypted_private_key))
    except InvalidToken as exc:
        raise RuntimeError("the delegation authority key cannot be decrypted: WARDEN_SECRET_KEY changed") from exc
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    return _AuthoritySigner(row.key_id, private)


def issue_person_grant(*, by, audience: Agent, scopes: list[str], session: str, lifetime_seconds: int = 600,
                       tools: list[str] | None = None, constraints: dict | None = None, task: str | None = None) -> PersonGrant:
    """A person delegates to an agent: a grant signed by the control plane's authority key.

    The scopes must be the agent's own; the agent must be active with a current key.
    Raises InvalidInput naming the field.
    """
    if audience.status != AgentStatus.ACTIVE:
        raise ConflictError(f"agent {audience.name} is {audience.status}", field="audience")
    key = audience.keys.filter(revoked_at__isnull=True).order_by("-created_at").first()
    if key is None:
        raise ConflictError(f"agent {audience.name} has no current key to address the grant to", field="audience")
    wider = sorted(set(scopes) - set(audience.scopes))
    if wider:
        raise InvalidInput(f"{', '.join(wider)} not among {audience.name}'s scopes", field="scopes")
    email = getattr(by, "email", "") or f"{getattr(by, 'username', 'system')}@warden.invalid"
    rule = DelegationRule.objects.filter(agent=audience).first()
    if not person_allowed(person_issuer(email), rule.may_act_for if rule else None):
        # Engines refuse such a root link anyway: say so here rather than sign a dead grant.
        raise ConflictError(f"{audience.name} may not act for {email}: add it (or its @domain) to the agent's "
                            "delegation rule, may_act_for", field="audience")
    if not 1 <= lifetime_seconds <= DEFAULT_MAX_LIFETIME:
        raise InvalidInput(f"must be from 1 to {DEFAULT_MAX_LIFETIME} seconds", field="lifetime_seconds")
    if constraints:
        problem = constraints_problem(constraints)
        if problem:
            raise InvalidInput(problem, field="constraints")
    try:
        grant = issue_grant(authority_signer(), issuer=person_issuer(email), audience=audience.name,
                            audience_key_id=key.key_id, scopes=scopes, session=session, lifetime=lifetime_seconds,
                            tools=tools, constraints=constraints or None, task=task or None)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="non_field_errors") from exc
    with transaction.atomic():
        row = PersonGrant.objects.create(
            grant_hash=grant_hash(grant), grant=grant, token=encode_chain([grant]), audience=audience,
            session=session, issued_by=by if getattr(by, "pk", None) else None,
            expires_at=datetime.fromtimestamp(grant["exp"], UTC),
        )
        record_change(row, action=str(ChangeAction.CREATE), by=by, after={"grant_hash": row.grant_hash, "audience": audience.name,
                                                                     "scopes": grant["scopes"], "session": session})
    return row


@transaction.atomic
def revoke_grant(*, by, grant_hash: str, reason: str = "", expires_at: datetime | None = None) -> Revocation:
    """Withdraw a grant (and so every link beneath it) from the next bundle on."""
    if not isinstance(grant_hash, str) or not HEX64.fullmatch(grant_hash):
        raise InvalidInput("must be a grant hash: 64 lowercase hex digits", field="grant_hash")
    if Revocation.objects.filter(grant_hash=grant_hash).exists():
        raise ConflictError("this grant is already revoked", field="grant_hash")
    issued = PersonGrant.objects.filter(grant_hash=grant_hash).first()
    if issued is not None:
        expires_at = issued.expires_at
    revocation = Revocation.objects.create(grant_hash=grant_hash, reason=reason, expires_at=expires_at,
                                           revoked_by=by if getattr(by, "pk", None) else None)
    record_change(revocation, action=str(ChangeAction.REVOKE), by=by, after=snapshot(revocation), message=reason)
    _announce(f"delegation grant {grant_hash[:16]} revoked")
    return revocation


def public_key_of(authority: DelegationAuthority) -> bytes:
    return base64.b64decode(authority.public_key)
