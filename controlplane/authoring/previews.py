"""Impact previews: what a candidate policy would have decided differently, before it is
published, over the environment's recorded traffic and the library's test inputs.

Requested by a person, run by a Celery task with progress (`authoring.run_impact_preview`),
stored with the bundle it was published as. Where four-eyes release is on for the environment
(controlplane.approvals.releases), relaxations need a second person's release before the
candidate may be published, and the publish itself then waits for an approver.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from collections.abc import Iterator

from django.db import transaction
from django.utils import timezone

from agents_sdk.engine.corpus import corpus
from controlplane.approvals.models import ApprovalRequest
from controlplane.approvals.releases import four_eyes_required, held_release
from controlplane.audit.models import AuditEvent
from controlplane.authoring.impact import ReplayInput, deduplicate, replay
from controlplane.authoring.models import ImpactPreview, PreviewStatus
from controlplane.authoring.rollout import publish_log_only
from controlplane.bundles.models import Bundle, Environment
from controlplane.bundles.selectors import registry_data
from controlplane.bundles.services import current_policy_files, policy_files_of, publish_policies
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core.tasks import enqueue
from controlplane.identity.models import Agent
from controlplane.opa.models import DecisionLog
from controlplane.policies.library import library_modules
from controlplane.policies.replay import storable
from controlplane.policies.services import compile_modules

LIBRARY_INPUTS = 300
DEFAULT_WINDOW = timedelta(days=7)
MAX_WINDOW = timedelta(days=92)


def files_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].encode("utf-8") + b"\0")
    return digest.hexdigest()


@transaction.atomic
def request_impact_preview(
    environment: Environment, *, by, window_start: datetime | None = None, window_end: datetime | None = None,
    candidate_files: dict[str, str] | None = None, queue: str | None = None,
) -> ImpactPreview:
    """Queue a preview of `candidate_files` (default: what publishing would build now) against
    the environment's active bundle, over recorded traffic in [window_start, window_end]."""
    window_end = window_end or timezone.now()
    window_start = window_start or window_end - DEFAULT_WINDOW
    if window_start >= window_end:
        raise InvalidInput("window_start must be before window_end", field="window_start")
    if window_end - window_start > MAX_WINDOW:
        raise InvalidInput(f"a window is at most {MAX_WINDOW.days} days", field="window_start")
    active = Environment.objects.select_related("active_bundle").get(pk=environment.pk).active_bundle
    baseline = policy_files_of(active) if active else library_modules(include_tests=False)
    candidate = candidate_files if candidate_files is not None else current_policy_files()
    preview = ImpactPreview.objects.create(
        environment=environment, window_start=window_start, window_end=window_end,
        baseline_files=baseline, candidate_files=candidate, candidate_digest=files_digest(candidate),
        requested_by=by if getattr(by, "pk", None) else None,
    )
    enqueue("authoring.run_impact_preview", str(preview.pk), queue=queue)
    return preview


def recorded_inputs(environment: Environment, start: datetime, end: datetime) -> Iterator[ReplayInput]:
    """Decision inputs the environment's engines logged, then intents its agents signed."""
    logs = (
        DecisionLog.objects.filter(environment=environment, timestamp__gte=start, timestamp__lte=end, input__isnull=False)
        .values_list("id", "input").order_by().iterator(chunk_size=5000)
    )
    for pk, value in logs:
        if isinstance(value, dict):
            yield ReplayInput("decision_log", str(pk), value)
    agents = [name for name, where in Agent.objects.values_list("name", "environments") if environment.name in (where or [])]
    intents = (
        AuditEvent.objects.filter(kind="intent", time__gte=start, time__lte=end, agent__name__in=agents)
        .values_list("id", "agent__name", "session_id", "time", "payload").order_by().iterator(chunk_size=5000)
    )
    for pk, agent, session, moment, payload in intents:
        if isinstance(payload, dict) and isinstance(payload.get("tool"), str):
            args = payload.get("args") if isinstance(payload.get("args"), dict) else {}
            yield ReplayInput("intent", str(pk), {
                "agent": {"id": agent}, "action": {"type": "tool_call", "tool": payload["tool"], "args": args},
                "context": {"session_id": session, "environment": environment.name, "time": moment.isoformat().replace("+00:00", "Z")},
            })


def library_inputs() -> Iterator[ReplayInput]:
    for number, value in enumerate(corpus(count=LIBRARY_INPUTS)):
        yield ReplayInput("library", str(number), value)


def run_impact_preview(preview: ImpactPreview) -> ImpactPreview:
    """Replay and store the counts (idempotent: a finished preview is left as it is)."""
    if preview.status == PreviewStatus.DONE:
        return preview
    started = time.monotonic()
    ImpactPreview.objects.filter(pk=preview.pk).update(status=PreviewStatus.RUNNING, processed=0, error="")
    environment = preview.environment
    counts = {"decision_logs": 0, "intents": 0, "library": 0}
    items = []
    for item in [*recorded_inputs(environment, preview.window_start, preview.window_end), *library_inputs()]:
        counts[{"decision_log": "decision_logs", "intent": "intents", "library": "library"}[item.source]] += 1
        items.append(item)
    unique = deduplicate(items)
    del items
    ImpactPreview.objects.filter(pk=preview.pk).update(unique_inputs=len(unique), sources=counts)
    data = {"warden_registry": registry_data(environment)}
    try:
        before = compile_modules(preview.baseline_files, data)
        after = compile_modules(preview.candidate_files, data)
    except InvalidInput as exc:
        return _failed(preview, f"the candidate does not compile: {exc.message}")
    try:
        result = replay(
            unique, before.decide, after.decide,
            progress=lambda done: ImpactPreview.objects.filter(pk=preview.pk).update(processed=done),
        )
    except Exception as exc:  # recorded as failed for the console, then raised for the worker's log
        _failed(preview, f"replay failed: {type(exc).__name__}: {exc}")
        raise
    preview.refresh_from_db()
    preview.status, preview.total, preview.unique_inputs = PreviewStatus.DONE, result.total, result.unique
    preview.processed, preview.sources, preview.changes = result.unique, counts, result.changes()
    preview.samples, preview.relaxations = storable(result.samples), result.relaxations
    preview.duration_ms = int((time.monotonic() - started) * 1000)
    preview.finished_at = timezone.now()
    preview.save()
    return preview


def _failed(preview: ImpactPreview, message: str) -> ImpactPreview:
    ImpactPreview.objects.filter(pk=preview.pk).update(status=PreviewStatus.FAILED, error=message, finished_at=timezone.now())
    preview.refresh_from_db()
    return preview


def needs_second_person(preview: ImpactPreview) -> bool:
    return preview.relaxations > 0 and preview.second_person_id is None and four_eyes_required(preview.environment)


@transaction.atomic
def release_relaxations(preview: ImpactPreview, *, by) -> ImpactPreview:
    """The second person's release of a preview's relaxations (four-eyes)."""
    preview = ImpactPreview.objects.select_for_update().get(pk=preview.pk)
    if preview.status != PreviewStatus.DONE:
        raise ConflictError("the preview has not finished")
    if preview.relaxations == 0:
        raise ConflictError("the preview has no relaxations to release")
    if preview.second_person_id is not None:
        raise ConflictError("the relaxations are already released")
    if preview.requested_by_id is not None and preview.requested_by_id == getattr(by, "pk", None):
        raise ConflictError("four-eyes: the person who requested the preview cannot release its relaxations", field="second_person")
    preview.second_person, preview.released_at = by, timezone.now()
    preview.save(update_fields=["second_person", "released_at"])
    return preview


def _check_publishable(preview: ImpactPreview) -> None:
    """The preview is finished, still about what publishing would build, and released where needed."""
    if preview.status != PreviewStatus.DONE:
        raise ConflictError("the preview has not finished", field="impact_preview")
    if files_digest(current_policy_files()) != preview.candidate_digest:
        raise ConflictError("the policies changed after this preview; request a new one", field="impact_preview")
    if needs_second_person(preview):
        raise ConflictError(
            f"four-eyes: {preview.relaxations} decision(s) become less strict; a second person must release them first",
            field="second_person",
        )


def _publish(preview: ImpactPreview | None, environment: Environment, *, by, note: str,
             log_only: bool = False) -> Bundle | ApprovalRequest:
    if log_only:  # enforced decisions stay the active revision's: nothing for an approver to hold
        bundle = publish_log_only(environment, by=by, message=note)
    else:
        # A four-eyes environment's publish waits for an approver like any other (approvals app).
        held = held_release(environment, by=by, operation="publish", message=note)
        if held is not None:
            return held
        bundle = publish_policies(environment, by=by, message=note)
    if preview is not None:
        preview.bundle = bundle
        preview.save(update_fields=["bundle"])
    return bundle


@transaction.atomic
def publish_previewed(preview: ImpactPreview, *, by, message: str = "", log_only: bool = False) -> Bundle | ApprovalRequest:
    """Publish the previewed candidate: only if it is still what publishing would build, and,
    where four-eyes is on, only with its relaxations released by a second person. With
    `log_only`, its new organisation rules are evaluated and logged, not enforced (rollout)."""
    preview = ImpactPreview.objects.select_for_update().select_related("environment").get(pk=preview.pk)
    _check_publishable(preview)
    note = message or f"published after impact preview {preview.pk}"
    if preview.relaxations:
        note = f"{note} [impact preview: {preview.relaxations} decision(s) less strict]"
    return _publish(preview, preview.environment, by=by, note=note, log_only=log_only)


@transaction.atomic
def publish_with_preview_or_override(
    environment: Environment, *, by, message: str = "", impact_preview=None, override_reason: str = "",
    log_only: bool = False,
) -> Bundle | ApprovalRequest:
    """The plain publish: it names a finished impact preview of exactly these policies, or
    says why it goes without one (the reason is kept in the change log and any approval)."""
    if impact_preview is not None:
        preview = (ImpactPreview.objects.select_for_update().select_related("environment")
                   .filter(pk=impact_preview, environment=environment).first())
        if preview is None:
            raise InvalidInput(f"no impact preview {impact_preview} of {environment.name}", field="impact_preview")
        return publish_previewed(preview, by=by, message=message, log_only=log_only)
    reason = (override_reason or "").strip()
    if not reason:
        raise ConflictError(
            "publishing needs an impact preview of these policies: POST /api/v1/authoring/previews/ "
            f'{{"environment": "{environment.name}"}}, then publish with its id as impact_preview; or give '
            "override_reason to publish without one (recorded in the change log)",
            field="impact_preview",
        )
    who = getattr(by, "username", "") or "system"
    note = f"{message or 'published'} [published without impact preview by {who}: {reason}]"
    return _publish(None, environment, by=by, note=note[:500], log_only=log_only)
