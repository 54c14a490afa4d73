"""seed_demo (controlplane/demo): idempotent, its tokens and the demo admin's login work."""

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from controlplane.identity.models import Agent
from tests.demo.seeding import seed_demo_verified_in_process

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_is_idempotent_and_its_tokens_work(settings, tmp_path, monkeypatch):
    seed_demo_verified_in_process(settings, tmp_path, monkeypatch, times=2)
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
    # The README's demo-admin logs in to the Django admin with the password seed_demo wrote.
    password = (tmp_path / "demo-admin.password").read_text()
    browser = Client()
    assert browser.login(username="demo-admin", password=password)
    assert browser.get("/admin/").status_code == 200
    assert browser.get("/admin/identity/agent/").status_code == 200
    # Every role's demo user can log in to the console with its own password, and only that.
    for username in ("demo-policy-author", "demo-approver", "demo-auditor"):
        password_file = tmp_path / f"{username}.password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        console = APIClient(enforce_csrf_checks=False)
        assert console.login(username=username, password=password_file.read_text())
        assert not APIClient().login(username=username, password=password)


def test_seed_demo_refuses_production(settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="WARDEN_PRODUCTION"):
        call_command("seed_demo")
