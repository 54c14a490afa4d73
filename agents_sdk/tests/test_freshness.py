"""Stale and replayed bundles: never go back in time, and fail closed past a maximum age.

The bundles are real signed OPA bundles served over HTTP by the test bundle service; the
decisions come from the real Rego engine (the policy library).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agents_sdk.bundles import (
    BundleClient,
    BundleError,
    StaleBundleError,
    VerificationConfig,
    VerificationKey,
)
from agents_sdk.bundles.freshness import age_problem, built_at
from agents_sdk.guard import EmbeddedBackend, Guard
from agents_sdk.identity import AgentIdentity
from agents_sdk.sidecar import Sidecar
from agents_sdk.sidecar.config import ConfigError, parse_config
from agents_sdk.tests.signed_bundles import BundleServer, RSASigner, build_bundle, registry

from .test_sidecar import opa_config, request


def at(seconds_ago: float) -> str:
    """A signed build time ``seconds_ago`` before now (now: when the bundle is built)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def signer() -> RSASigner:
    return RSASigner("warden-test")


@pytest.fixture
def server():
    with BundleServer() as server:
        yield server


@pytest.fixture
def support_bot() -> AgentIdentity:
    return AgentIdentity.create("support-bot", "alice@example.com", ["read:tickets"])


def client(server, signer, tmp_path, **kwargs) -> BundleClient:
    keys = {"warden-test": VerificationKey.from_pem("warden-test", signer.public_pem)}
    return BundleClient(
        server.url + "/opa", "bundles/prod", token="env-token", persist_dir=tmp_path / "bundles",
        verification=VerificationConfig(keys=keys, keyid="warden-test"), **kwargs,
    )


SUSPENDED = {"support-bot": "suspended"}
READ = ("ticket_read", {"ticket_id": 7})


def test_a_replayed_older_bundle_is_refused_and_the_suspension_stays(server, signer, tmp_path, support_bot):
    bundles = client(server, signer, tmp_path)
    guard = Guard(support_bot, EmbeddedBackend(bundles, start=False), environment="prod")
    server.state.publish(build_bundle(signer, revision="active", built_at=at(600)))
    assert bundles.poll_once() and guard.check(*READ).allow
    server.state.publish(build_bundle(signer, revision="suspended", data=registry(**SUSPENDED), built_at=at(60)))
    assert bundles.poll_once() and not guard.check(*READ).allow
    # The old "active" bundle, replayed with its valid signature:
    server.state.publish(build_bundle(signer, revision="active", built_at=at(600)))
    with pytest.raises(StaleBundleError, match="before the active bundle"):
        bundles.poll_once()
    assert bundles.active.revision == "suspended"
    decision = guard.check(*READ)
    assert decision.effect == "deny" and "agent-not-active" in [r.rule for r in decision.reasons]


def test_the_same_revision_re_signed_later_is_accepted(server, signer, tmp_path):
    """A resume goes back to earlier content: the control plane re-signs it with a new time."""
    bundles = client(server, signer, tmp_path)
    server.state.publish(build_bundle(signer, revision="r1", built_at=at(600)))
    assert bundles.poll_once()
    server.state.publish(build_bundle(signer, revision="r2", data=registry(**SUSPENDED), built_at=at(300)))
    assert bundles.poll_once()
    server.state.publish(build_bundle(signer, revision="r1", built_at=at(10)))
    assert bundles.poll_once() and bundles.active.revision == "r1"


def test_a_bundle_without_a_signed_time_cannot_replace_one_with_it(server, signer, tmp_path):
    bundles = client(server, signer, tmp_path)
    server.state.publish(build_bundle(signer, revision="timed", built_at=at(60)))
    assert bundles.poll_once()
    server.state.publish(build_bundle(signer, revision="untimed"))
    with pytest.raises(StaleBundleError, match="no metadata.warden.built_at"):
        bundles.poll_once()
    assert bundles.active.revision == "timed"


def test_bundles_without_signed_times_still_replace_each_other(server, signer, tmp_path):
    """Control planes that do not sign a time yet keep working (no comparison possible)."""
    bundles = client(server, signer, tmp_path)
    server.state.publish(build_bundle(signer, revision="a"))
    assert bundles.poll_once()
    server.state.publish(build_bundle(signer, revision="b"))
    assert bundles.poll_once() and bundles.active.revision == "b"


def test_after_a_restart_the_persisted_bundle_still_refuses_a_replay(server, signer, tmp_path):
    first = client(server, signer, tmp_path)
    server.state.publish(build_bundle(signer, revision="newest", built_at=at(30)))
    assert first.poll_once()
    second = client(server, signer, tmp_path)
    assert second.load_persisted().revision == "newest"
    server.state.publish(build_bundle(signer, revision="older", built_at=at(3000)))
    with pytest.raises(StaleBundleError):
        second.poll_once()
    assert second.active.revision == "newest"


def test_a_downloaded_bundle_older_than_the_maximum_age_is_refused(server, signer, tmp_path):
    bundles = client(server, signer, tmp_path, max_age=3600)
    server.state.publish(build_bundle(signer, revision="ancient", built_at=at(7200)))
    with pytest.raises(StaleBundleError, match="over the maximum bundle age of 3600 s"):
        bundles.poll_once()
    assert bundles.active is None
    server.state.publish(build_bundle(signer, revision="fresh", built_at=at(60)))
    assert bundles.poll_once() and bundles.age_problem() is None


def test_an_expired_active_bundle_makes_every_decision_a_deny(server, signer, tmp_path, support_bot):
    young = client(server, signer, tmp_path, max_age=3600)
    server.state.publish(build_bundle(signer, revision="r1", built_at=at(120)))
    assert young.poll_once()
    # The same persisted bundle, read by an engine whose maximum age it has outlived:
    strict = client(server, signer, tmp_path, max_age=60)
    guard = Guard(support_bot, EmbeddedBackend(strict, start=False), environment="prod")
    assert strict.load_persisted().revision == "r1"
    decision = guard.check(*READ)
    assert decision.effect == "deny" and decision.reasons[0].rule == "stale-bundle"
    assert "over the maximum bundle age of 60 s" in decision.reasons[0].message
    # A fresher bundle from the control plane ends the outage.
    server.state.publish(build_bundle(signer, revision="r2", built_at=at(1)))
    assert strict.poll_once() and guard.check(*READ).allow


def test_with_a_maximum_age_a_bundle_without_a_signed_time_fails_closed(server, signer, tmp_path, support_bot):
    bundles = client(server, signer, tmp_path, max_age=3600)
    server.state.publish(build_bundle(signer, revision="untimed"))
    with pytest.raises(StaleBundleError, match="cannot be checked"):
        bundles.poll_once()


@pytest.mark.parametrize(
    "value, message",
    [
        (12, "must be an RFC 3339 time"),
        ("yesterday", "must be an RFC 3339 time"),
        ("2026-13-01T00:00:00Z", "is not an RFC 3339 time"),
        ("2026-11-01T00:00:00", "has no time zone"),
        ("2026-11-01T00:00:00\ud800Z", "is not an RFC 3339 time"),
    ],
)
def test_a_malformed_signed_time_is_refused_naming_the_field(value, message):
    with pytest.raises(BundleError, match=message):
        built_at({"metadata": {"warden": {"built_at": value}}})
    assert "metadata.warden.built_at" in age_problem({"metadata": {"warden": {"built_at": value}}}, 60)


def test_max_age_must_be_positive():
    with pytest.raises(ValueError, match="max_age"):
        BundleClient("http://127.0.0.1:1", "bundles/x", max_age=0)


# -- the sidecar ------------------------------------------------------------------------------


def test_the_sidecar_refuses_a_replay_and_fails_closed_past_its_maximum_age(server, signer, tmp_path):
    server.state.publish(build_bundle(signer, revision="suspended", data=registry(**SUSPENDED), built_at=at(60)))
    config = opa_config(server, signer, tmp_path)
    config["bundles"]["prod"]["max_age_seconds"] = 3600
    sidecar = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        server.state.publish(build_bundle(signer, revision="active", built_at=at(600)))
        with pytest.raises(StaleBundleError):
            sidecar.bundles.poll_once()
        assert sidecar.backend.revision == "suspended"
        input = {"agent": {"id": "support-bot", "name": "support-bot", "scopes": ["read:tickets"]},
                 "action": {"type": "tool_call", "tool": "ticket_read", "args": {}}, "context": {"environment": "prod"}}
        result = request(sidecar, "POST", "/v1/data/warden/decision", {"input": input})[1]["result"]
        assert "agent-not-active" in [r["rule"] for r in result["reasons"]]
    finally:
        sidecar.stop()
    # Restarted with a maximum age the persisted bundle has outlived: every decision is a deny.
    server.stop()
    config["bundles"]["prod"]["max_age_seconds"] = 30
    expired = Sidecar(parse_config(config), addr="127.0.0.1:0").start()
    try:
        assert expired.bundles.status().source == "persisted"
        status, answer = request(expired, "POST", "/v1/data/warden/decision", {"input": input})
        assert status == 200 and answer["result"]["effect"] == "deny"
        assert answer["result"]["reasons"][0]["rule"] == "stale-bundle"
        # Other queries cannot be answered from an expired bundle either, and say why.
        status, answer = request(expired, "POST", "/v1/data/warden_registry", {"input": {}})
        assert status == 500 and "maximum bundle age" in answer["message"]
    finally:
        expired.stop()


@pytest.mark.parametrize("value", [0, -5, "1d", True, float("nan")])
def test_the_sidecars_max_age_must_be_a_positive_number(value, server, signer, tmp_path):
    config = opa_config(server, signer, tmp_path)
    config["bundles"]["prod"]["max_age_seconds"] = value
    with pytest.raises(ConfigError, match="bundles.prod.max_age_seconds"):
        parse_config(json.loads(json.dumps(config, allow_nan=True)))
