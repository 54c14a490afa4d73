"""Four-eyes releases: publishing or promoting a bundle to a gated environment waits for
the approval of a person other than its author (docs/approvals.md)."""

from __future__ import annotations

from controlplane.approvals.models import ApprovalRequest, ReleaseGate

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
    from controlplane.approvals.services import file_release

    return file_release(environment, by=by, operation=operation, source=source, message=message)


def perform_release(request: ApprovalRequest, *, approver) -> None:
    """Make the release an approved request stands for, as its author, in the approving
    transaction (if the release fails, so does the approval)."""
    from controlplane.bundles import services as bundle_services
    from controlplane.bundles.models import Environment

    detail = request.release
    target = Environment.objects.get(name=request.environment)
    note = f"{detail.get('message') or detail['operation']} (four eyes: approved by {approver.username})"
    if detail["operation"] == "publish":
        bundle_services.publish_policies(target, by=request.requested_by, message=note)
    else:
        source = Environment.objects.get(name=detail["source"])
        bundle_services.promote_bundle(source, to=target, by=request.requested_by, message=note)
