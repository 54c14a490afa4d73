"""Writes of the compliance domain: requesting a gap report, building it (evidence →
control results → summary, score, difference → PDF), and the weekly schedule.

The builder records its progress on the report row outside the result transaction, so
the API shows "running, 40 %" while a long report is built; results, summary and diff are
written in one transaction, so a report is never half done.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from controlplane.bundles.models import Environment
from controlplane.changelog.models import ChangeAction
from controlplane.changelog.services import record_change, snapshot
from controlplane.compliance import assessment, attestations, conf, monitoring, signing
from controlplane.compliance.catalog import FRAMEWORK_IDS, SOC2_CATEGORIES
from controlplane.compliance.catalog import framework as get_framework
from controlplane.compliance.collectors import collect
from controlplane.compliance.collectors.context import ReportContext
from controlplane.compliance.models import ComplianceScope, ControlResult, GapReport, ReportStatus, ReportTrigger
from controlplane.compliance.rules import rules_by_control
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.core import tasks as core_tasks

logger = logging.getLogger(__name__)
# Objects kept per evidence kind for the population listings of the evidence package.
POPULATION_LIMIT = 10000


def _period(period_start: datetime | None, period_end: datetime | None) -> tuple[datetime, datetime]:
    now = timezone.now()
    end = period_end or now
    start = period_start or end - timedelta(days=conf.period_days())
    if end > now + timedelta(minutes=5):
        raise InvalidInput("the period cannot end in the future", field="period_end")
    if start >= end:
        raise InvalidInput("must be before period_end", field="period_start")
    if end - start > timedelta(days=conf.MAX_PERIOD_DAYS):
        raise InvalidInput(f"the period can span at most {conf.MAX_PERIOD_DAYS} days", field="period_start")
    return start, end


def _categories(framework: str, environment: Environment, categories: list[str] | None) -> list[str]:
    """SOC 2 categories in scope: the request's, else the environment's declared scope;
    Security is always in."""
    if framework != "soc2":
        return []
    if categories is None:
        scope = ComplianceScope.objects.filter(environment=environment).first()
        categories = list(scope.soc2_categories) if scope else []
    unknown = sorted(set(categories) - set(SOC2_CATEGORIES))
    if unknown:
        raise InvalidInput(f"unknown SOC 2 categor(ies) {unknown}; choose from {', '.join(SOC2_CATEGORIES)}",
                           field="categories")
    return ["security", *sorted(set(categories) - {"security"}, key=SOC2_CATEGORIES.index)]


@transaction.atomic
def request_gap_report(*, framework: str, environment: Environment, by=None, period_start: datetime | None = None,
                       period_end: datetime | None = None, trigger: str = ReportTrigger.MANUAL,
                       assess_as_of: date | None = None, categories: list[str] | None = None) -> GapReport:
    """Create a pending report and enqueue its build once the row is committed.

    `assess_as_of` assesses obligations as they will apply on that date (a readiness view,
    e.g. for the Annex III date); by default they are assessed as they apply at the period's end.
    """
    if framework not in FRAMEWORK_IDS:
        raise InvalidInput(f"unknown framework; choose one of {', '.join(FRAMEWORK_IDS)}", field="framework")
    start, end = _period(period_start, period_end)
    if assess_as_of is not None and not date(2000, 1, 1) <= assess_as_of <= date(2100, 1, 1):
        raise InvalidInput("must be a date between 2000-01-01 and 2100-01-01", field="assess_as_of")
    report = GapReport.objects.create(
        framework=framework, environment=environment, period_start=start, period_end=end, trigger=trigger,
        requested_by=by if getattr(by, "pk", None) else None, stage="waiting for a worker",
        assess_as_of=assess_as_of or end.date(), categories=_categories(framework, environment, categories),
    )
    record_change(report, action=ChangeAction.CREATE, by=by, after=snapshot(report),
                  message=f"{framework} gap report for {environment.name} requested")
    core_tasks.enqueue("compliance.build_gap_report", str(report.pk))
    return report


def schedule_gap_reports() -> list[GapReport]:
    """One report per framework and environment: what Celery beat runs weekly."""
    return [
        request_gap_report(framework=framework_id, environment=environment, trigger=ReportTrigger.SCHEDULED)
        for environment in Environment.objects.order_by("position", "name")
        for framework_id in FRAMEWORK_IDS
    ]


# A report pending this long lost its message (broker outage at enqueue); one running this
# long lost its worker. Either is enqueued again; building is idempotent.
STALE_PENDING = timedelta(minutes=10)
STALE_RUNNING = timedelta(minutes=30)


def requeue_stale_reports(*, now: datetime | None = None) -> list[str]:
    """Enqueue again the reports a lost message or a dead worker left unfinished."""
    from django.db.models import Q

    now = now or timezone.now()
    stale = GapReport.objects.filter(
        Q(status=ReportStatus.PENDING, created_at__lt=now - STALE_PENDING)
        | Q(status=ReportStatus.RUNNING, started_at__lt=now - STALE_RUNNING)
    ).values_list("pk", flat=True)
    ids = [str(pk) for pk in stale]
    for report_id in ids:
        core_tasks.send_now("compliance.build_gap_report", report_id)
    return ids


def _progress(report: GapReport, percent: int, stage: str) -> None:
    # A plain UPDATE outside the result transaction: readers see it at once.
    GapReport.objects.filter(pk=report.pk).update(progress=percent, stage=stage[:200])


def _claim(report_id) -> GapReport | None:
    with transaction.atomic():
        report = GapReport.objects.select_for_update().select_related("environment").filter(pk=report_id).first()
        if report is None or report.status == ReportStatus.DONE:
            return None
        report.status = ReportStatus.RUNNING
        report.started_at = timezone.now()
        report.progress, report.stage, report.error = 0, "starting", ""
        report.save(update_fields=["status", "started_at", "progress", "stage", "error"])
        return report


def build_gap_report(report_id) -> GapReport | None:
    """Build a pending (or interrupted) report; a finished one is left alone (idempotent).

    A failure is recorded on the report (status failed, error) and not raised, so the
    caller (a worker, or the request in eager mode) never turns it into a 500.
    """
    report = _claim(report_id)
    if report is None:
        return None
    try:
        _build(report)
    except Exception as exc:  # recorded for the person who asked; the traceback goes to the log
        logger.exception("gap report %s failed", report.pk)
        GapReport.objects.filter(pk=report.pk).update(
            status=ReportStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now(),
            stage="failed",
        )
    report.refresh_from_db()
    return report


def _build(report: GapReport) -> None:
    framework = get_framework(report.framework)
    context = ReportContext(framework=framework, environment=report.environment,
                            period_start=report.period_start, period_end=report.period_end,
                            categories=tuple(report.categories or ("security",)))
    kinds = list(dict.fromkeys(k for c in framework.controls for k in c.automatic_evidence))
    evidence = {}
    for index, kind in enumerate(kinds):
        _progress(report, 5 + int(75 * index / max(len(kinds), 1)), f"collecting evidence: {kind}")
        evidence[kind] = collect(kind, context)
    _progress(report, 82, "assessing controls")
    by_control = rules_by_control(context.rules)
    as_of = report.assess_as_of or report.period_end.date()
    attested = attestations.for_report(report)
    owners = attestations.owners_for(report.framework, report.environment)
    results = []
    for control in framework.controls:
        applicable, reason, applies_from = assessment.applicability(control, context.scope_facts, as_of=as_of)
        rules = [
            {"id": r.id, "title": r.title, "file": r.file, "line": r.line, "effect": r.effect}
            for r in by_control.get(control.full_id, [])
        ]
        results.append(assessment.assess_control(
            control, evidence, applicable=applicable, reason=reason, rules=rules,
            attestations=attested.get(control.id, []), as_of=report.period_end, applies_from=applies_from,
            owner=owners.get(control.id, ""),
        ))
    summary, score = assessment.summarise(results)
    previous = (
        GapReport.objects.filter(framework=report.framework, environment=report.environment,
                                 status=ReportStatus.DONE, created_at__lt=report.created_at)
        .exclude(pk=report.pk).order_by("-created_at").first()
    )
    previous_results = (
        list(previous.results.values("control_id", "status")) if previous is not None else None
    )
    diff = assessment.difference(previous_results, results, previous_meta={
        "previous_report": str(previous.pk), "previous_score": previous.score,
        "score_change": round(score - previous.score, 1) if previous and score is not None and previous.score is not None else None,
    } if previous else None)
    scope = _scope(context)
    with transaction.atomic():
        ControlResult.objects.filter(report=report).delete()
        ControlResult.objects.bulk_create(
            ControlResult(report=report, position=i, **result) for i, result in enumerate(results)
        )
        GapReport.objects.filter(pk=report.pk).update(
            summary=summary, score=score, diff=diff, previous=previous, scope=scope,
            catalog_sha256=framework.source_sha256, catalog_version=framework.version, progress=90,
            stage="rendering the PDF", evidence_items={k: e.as_dict(limit=POPULATION_LIMIT) for k, e in evidence.items()},
        )
    report.refresh_from_db()
    pdf = render_pdf(report)
    GapReport.objects.filter(pk=report.pk).update(
        pdf=pdf, pdf_rendered_at=timezone.now(), status=ReportStatus.DONE, progress=100, stage="done",
        finished_at=timezone.now(), **signing.sign_pdf(pdf, report),
    )
    report.refresh_from_db()
    monitoring.after_report(report)


def _scope(context: ReportContext) -> dict:
    from controlplane.audit.models import Checkpoint

    bundle = context.bundle
    last = Checkpoint.objects.defer("entries").order_by("-sequence").first()
    declared = context.scope
    facts = context.scope_facts
    return {
        "assumed": {
            "eu_role": facts.eu_role or "both (not declared)",
            "gpai_model_provider": facts.gpai_model_provider,
            "soc2_categories": list(facts.soc2_categories),
            "hipaa_entity": facts.hipaa_entity or "not declared",
            "out_of_scope": (declared.out_of_scope if declared else "") or "not declared",
            "declared": declared is not None,
            "high_risk_routes": facts.high_risk_routes,
            "unassessed_high_risk": facts.unassessed_high_risk,
        },
        "catalog_version": context.framework.version,
        "legal_status": context.framework.legal_status,
        "environment": context.environment.name,
        "framework_name": context.framework.name,
        "regulation": context.framework.regulation,
        "generated_at": context.now.isoformat(),
        "agents": len(context.live_agents),
        "high_risk_agents": len(context.high_risk_agents),
        "bundle": {"id": str(bundle.pk), "revision": bundle.revision, "signing_key": bundle.signing_key_id,
                   "tests_passed": bundle.tests_passed} if bundle else None,
        "rules": len(context.rules),
        "events_in_period": context.event_stats["total"],
        "last_checkpoint": {"sequence": last.sequence, "merkle_root": last.merkle_root, "kind": last.kind,
                            "created_at": last.created_at.isoformat()} if last else None,
    }


def render_pdf(report: GapReport) -> bytes:
    from controlplane.compliance.pdf import render_report_pdf

    return render_report_pdf(report)


def report_pdf(report: GapReport) -> bytes:
    """The report's PDF, rendered (and signed) and stored on first request if none is stored
    — e.g. after a sign-off, which changes the sign-off block."""
    if report.status != ReportStatus.DONE:
        raise ConflictError(f"the report is {report.status}; its PDF exists once it is done")
    if report.pdf:
        return bytes(report.pdf)
    pdf = render_pdf(report)
    signed = signing.sign_pdf(pdf, report)
    GapReport.objects.filter(pk=report.pk).update(pdf=pdf, pdf_rendered_at=timezone.now(), **signed)
    report.pdf_sha256, report.pdf_signature = signed["pdf_sha256"], signed["pdf_signature"]
    return pdf
