"""Four-eyes releases: publishing or promoting a bundle to a gated environment waits for
the approval of a person other than its author (docs/approvals.md).

This module decides which releases are held; filing the request and making the release
once approved are steps of the approval workflow (`services.file_release`,
`services.perform_release`), so the workflow never imports this module back."""

from __future__ import annotations

from controlplane.approvals.models import ApprovalRequest, ReleaseGate
from controlplane.approvals.services import file_release

# Gated without any configuration: production changes always need a second person.
GATED_BY_DEFAULT = frozenset({"prod"})


def four_eyes_required(environment) -> bool:
    gate = ReleaseGate.objects.filter(environment=environment).first()
    return gate.four_eyes if gate is not None else environment.name in GATED_BY_DEFAULT


def held_release(environment, *, by, operation: str, source=None, message: str = "") -> ApprovalRequest | None:
    """The approval request a release to `environment` now waits for, or None when the
    environment is not gated (the caller then releases at once)."""
    if not four_eyes_required(environment):
        return None
    return file_release(environment, by=by, operation=operation, source=source, message=message)


def set_four_eyes(environment, *, four_eyes: bool, by) -> ReleaseGate:
    """Turn the four-eyes gate of `environment` on or off, recorded in the change log. A
    release already waiting for its second person still waits (turning the gate off does
    not approve it)."""
    from django.db import transaction

    from controlplane.changelog.models import ChangeAction
    from controlplane.changelog.services import record_change, snapshot

    with transaction.atomic():
        gate = ReleaseGate.objects.select_for_update().filter(environment=environment).first()
        before = snapshot(gate) if gate is not None else None
        if gate is None:
            gate = ReleaseGate(environment=environment)
        gate.four_eyes = four_eyes
        gate.save()
        record_change(
            gate, action=str(ChangeAction.UPDATE if before else ChangeAction.CREATE), by=by, before=before,
            after=snapshot(gate),
            message=f"four-eyes releases {'on' if four_eyes else 'off'} for {environment.name} by {by.username}",
        )
    return gate
