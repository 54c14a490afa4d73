"""Collectors over real state: each one flips when the fact it checks flips."""

import pytest
from django.db import connection, transaction

from controlplane.audit.models import AuditEvent
from controlplane.compliance import services, tasks
from controlplane.compliance.catalog import framework
from controlplane.compliance.collectors import collect
from controlplane.compliance.collectors.context import ReportContext
from controlplane.compliance.collectors.probes import tool_risks
from controlplane.compliance.models import GapReport
from controlplane.core import tasks as core_tasks
from controlplane.policies.models import Tool

pytestmark = pytest.mark.django_db


def context_for(environment, framework_id="eu_ai_act"):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    return ReportContext(framework=framework(framework_id), environment=environment,
                         period_start=now - timedelta(days=90), period_end=now + timedelta(seconds=1))


def test_audit_integrity_is_met_then_a_removed_event_is_a_gap(deployment):
    d = deployment()
    evidence = collect("audit_integrity_verified", context_for(d.environment))
    assert evidence.status == "met", evidence.missing
    assert evidence.objects[0].type == "audit.checkpoint"
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # past the append-only trigger, as a superuser could
                cursor.execute("SET LOCAL session_replication_role = replica")
        AuditEvent.objects.filter(pk=AuditEvent.objects.order_by("id").first().pk).delete()
    evidence = collect("audit_integrity_verified", context_for(d.environment))
    assert evidence.status == "gap"
    assert evidence.missing == ["5 event(s) stored in the checkpointed range, the checkpoints account for 6"]
    assert "verify_audit" in evidence.remediation


def test_retention_below_six_months_is_an_eu_gap_but_hipaa_looks_at_policy_history(deployment, settings):
    d = deployment()
    # 183 days can be one day short of six calendar months (1 Jul -> 1 Jan is 184 days).
    settings.WARDEN_AUDIT_RETENTION_DAYS = 183
    short = collect("log_retention", context_for(d.environment))
    assert short.status == "gap" and "billing-bot keeps events 183 days" in short.missing
    settings.WARDEN_AUDIT_RETENTION_DAYS = 190
    assert collect("log_retention", context_for(d.environment)).status == "met"
    settings.WARDEN_AUDIT_RETENTION_DAYS = 30
    eu = collect("log_retention", context_for(d.environment))
    assert eu.status == "gap" and "billing-bot keeps events 30 days" in eu.missing
    hipaa = collect("log_retention", context_for(d.environment, "hipaa"))
    assert hipaa.status == "met" and "Audit events are kept 30 days" in hipaa.summary


def test_agent_without_key_or_owner_is_named(deployment):
    d = deployment()
    assert collect("agent_identity", context_for(d.environment)).status == "met"
    d.agent.keys.update(revoked_at=d.agent.keys.first().created_at)
    evidence = collect("agent_identity", context_for(d.environment))
    assert evidence.status == "gap" and evidence.missing == ["billing-bot has no active key"]


def test_roleless_active_users_make_role_based_access_partial(deployment, user_with_role):
    d = deployment()
    assert collect("role_based_access", context_for(d.environment)).status == "met"
    user_with_role(None, username="drifter")
    evidence = collect("role_based_access", context_for(d.environment))
    assert evidence.status == "partial" and evidence.missing == ["user drifter is active without a role"]


def test_no_active_bundle_is_a_gap_for_policy_evidence(deployment, admin_user):
    from controlplane.bundles import services as bundle_services

    d = deployment()
    empty = bundle_services.create_environment(name="staging", by=admin_user, position=1)
    for kind in ("deny_rules_high_risk", "human_approval", "kill_switch", "policy_tests", "bundle_signing"):
        evidence = collect(kind, context_for(empty))
        assert evidence.status == "gap" and "publish" in evidence.remediation, kind
    assert collect("kill_switch", context_for(d.environment)).status == "partial"


def test_tool_risk_comes_from_category_flags_and_telling_names():
    settings = {"destructive_file_tools": ["file_delete"], "protected_paths": ["/prod/"],
                "protected_branches": ["release/*"]}
    assert tool_risks(Tool(name="lookup", category="other"), settings)[0] == []
    assert tool_risks(Tool(name="refund_card", category="other"), settings)[0] == ["payment (by name or scope)"]
    assert tool_risks(Tool(name="x", category="other", scopes=["payments:create"]), settings)[0] == [
        "payment (by name or scope)"]
    risks, args = tool_risks(Tool(name="file_delete", category="file"), settings)
    assert risks == ["file_delete"] and args["path"] == "/prod/warden-compliance-probe"
    assert tool_risks(Tool(name="git_push", category="git_push"), settings)[1]["branch"] == "release/probe"
    assert tool_risks(Tool(name="db_drop_table", category="database", irreversible=True), settings)[0] == [
        "irreversible", "database_delete"]


def test_beat_schedules_one_report_per_framework_and_environment(deployment, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    d = deployment()
    queued = []
    monkeypatch.setattr(core_tasks, "send_now", lambda name, report_id, queue=None: queued.append(report_id))
    with django_capture_on_commit_callbacks(execute=True):
        ids = tasks.schedule_gap_reports()
    reports = GapReport.objects.filter(pk__in=ids)
    assert sorted(reports.values_list("framework", flat=True)) == ["eu_ai_act", "hipaa", "soc2"]
    assert set(reports.values_list("trigger", flat=True)) == {"scheduled"}
    assert sorted(queued) == sorted(ids)
    assert tasks.build_gap_report(ids[0])["status"] == "done"
    assert tasks.build_gap_report(ids[0]) is None, "idempotent: a done report is left alone"
    assert services.build_gap_report("00000000-0000-0000-0000-000000000000") is None
    assert d.environment.name == "prod"


def test_reports_left_pending_or_running_are_enqueued_again(deployment, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    d = deployment()
    queued = []
    monkeypatch.setattr(core_tasks, "send_now", lambda name, report_id, queue=None: queued.append(report_id))
    fresh = services.request_gap_report(framework="soc2", environment=d.environment)
    lost = services.request_gap_report(framework="hipaa", environment=d.environment)
    dead = services.request_gap_report(framework="eu_ai_act", environment=d.environment)
    now = timezone.now()
    GapReport.objects.filter(pk=lost.pk).update(created_at=now - timedelta(minutes=11))
    GapReport.objects.filter(pk=dead.pk).update(status="running", started_at=now - timedelta(minutes=31))
    assert sorted(tasks.requeue_stale_reports()) == sorted([str(lost.pk), str(dead.pk)])
    assert str(fresh.pk) not in queued
    assert services.build_gap_report(dead.pk).status == "done", "a dead worker's report is rebuilt"
