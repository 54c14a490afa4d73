"""A log-only rule on live traffic: a Warden sidecar (OPA's REST API and bundle, decision-log
and status protocols) evaluates it without enforcing it, its decision log carries the
would-be decision, the console's read shows the effect, and one click enforces it."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agents_sdk.guard import Guard, OPAHTTPBackend
from agents_sdk.sidecar import Sidecar, parse_config
from controlplane.authoring import live, services
from controlplane.opa.models import DecisionLog
from controlplane.policies import services as policy_services
from tests.sdk.conftest import admin, api_token, control_plane, prod  # noqa: F401 - fixtures
from tests.sdk.test_live_control_plane import published, registered_bot, signing_key

pytestmark = pytest.mark.django_db(transaction=True)

WATCH = {
    "name": "watch_crm_exports", "owner": "security@example.com", "tools": ["crm_export"], "effect": "deny",
    "when": {"environments": ["prod"]}, "log_only": True,
}


def test_log_only_rule_is_observed_on_live_traffic_then_enforced(control_plane, admin, api_token, prod, tmp_path):  # noqa: F811
    bot = registered_bot(control_plane, api_token)
    # A tool the library's own tests never call: publishing runs them with organisation policy.
    policy_services.create_tool(name="crm_export", scopes=["read:tickets"], by=admin)
    example = {"input": {"agent": {"id": "support-bot"}, "action": {"tool": "crm_export", "args": {}}}, "expect": "deny", "environment": "prod"}
    rule = services.save_authored_rule(template="block_tool", params=WATCH, examples=[example], by=admin)
    published(prod, admin)
    kid, pem = signing_key(control_plane, api_token)
    config = parse_config({
        "services": {"warden": {"url": f"{control_plane.url}/opa", "credentials": {"bearer": {"token": prod.token}}}},
        "keys": {kid: {"algorithm": "RS256", "key": pem}},
        "bundles": {"prod": {"service": "warden", "resource": "bundles/prod", "signing": {"keyid": kid},
                             "polling": {"long_polling_timeout_seconds": 20}}},
        "decision_logs": {"service": "warden", "reporting": {"min_delay_seconds": 60, "max_delay_seconds": 60}},
        "persistence_directory": str(tmp_path),
    })
    sidecar = Sidecar(config, addr="127.0.0.1:0").start()
    try:
        assert sidecar.bundles.wait_until_ready(10)
        guard = Guard(bot, OPAHTTPBackend(sidecar.url), environment="prod", session_id="s-1")
        for n in range(3):
            assert guard.check("crm_export", {"id": n}).effect == "allow"  # logged, not enforced
        assert sidecar.decision_logs.flush()
        control_plane.wait_for_uploads()  # stored off the request path (controlplane.opa.uploads)
        logged = DecisionLog.objects.filter(environment=prod).order_by("timestamp")
        assert logged.count() == 3
        assert logged[0].result["effect"] == "allow" and logged[0].result["log_only"]["effect"] == "deny"

        effects = live.log_only_effects(prod, since=timezone.now() - timedelta(hours=1))
        (seen,) = effects["rules"]
        assert (seen["rule"], seen["matched"], seen["would_change"]) == ("watch-crm-exports", 3, 3)
        assert seen["transitions"] == {"allow->deny": 3} and seen["by_tool"] == {"crm_export": 3}
        assert seen["samples"][0]["input"]["action"]["tool"] == "crm_export"

        # One click: the console's enforce button, then publish.
        answer = httpx.post(
            f"{control_plane.url}/api/v1/authoring/rules/{rule.pk}/log-only/", json={"log_only": False},
            headers={"Authorization": f"Token {api_token}"}, timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["log_only"] is False and "log_only := true" not in answer.json()["source"]
        published(prod, admin)
        deadline = time.monotonic() + 15
        decision = guard.check("crm_export", {"id": 9})
        while decision.effect == "allow" and time.monotonic() < deadline:
            time.sleep(0.05)
            decision = guard.check("crm_export", {"id": 9})
        assert decision.effect == "deny"
        assert [r.rule for r in decision.reasons] == ["watch-crm-exports"]
    finally:
        sidecar.stop()
