import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from controlplane.identity.models import Agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_is_idempotent_and_its_tokens_work(settings, tmp_path, monkeypatch):
    from controlplane.audit import services as audit_services

    settings.VAR_DIR = tmp_path
    # Verify in-process, as the embedded default does (CI has a broker but no worker here).
    monkeypatch.setattr(audit_services, "enqueue_verification", audit_services.verify_batch)
    call_command("seed_demo")
    call_command("seed_demo")
    assert Agent.objects.count() == 4
    assert Agent.objects.get(name="data-cleaner").status == "suspended"
    assert all(agent.keys.filter(revoked_at__isnull=True).count() == 1 for agent in Agent.objects.all())
    token_file = tmp_path / "demo-tokens" / "auditor.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "demo-keys" / "support-bot.pem").stat().st_mode & 0o777 == 0o600
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_file.read_text()}")
    names = [a["name"] for a in client.get("/api/v1/agents/").json()["results"]]
    assert names == ["billing-agent", "code-assistant", "data-cleaner", "support-bot"]
    assert client.post("/api/v1/agents/support-bot/suspend/", {}, format="json").status_code == 403
    environments = client.get("/api/v1/environments/").json()["results"]
    assert [e["name"] for e in environments] == ["dev", "staging", "prod"]
    assert all(e["active_bundle"] for e in environments)
    assert (tmp_path / "demo-tokens" / "opa-prod.token").stat().st_mode & 0o777 == 0o600
    events = client.get("/api/v1/audit/events/?agent=code-assistant").json()
    assert events["count"] == 6, "the demo session is ingested and verified, once"


def test_seed_demo_refuses_production(settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="WARDEN_PRODUCTION"):
        call_command("seed_demo")
