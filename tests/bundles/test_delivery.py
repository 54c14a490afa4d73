"""The kill switch is delivered in the request or fails visibly; bundles carry a signed build
time that only moves forward, even when a revision is activated again."""

import json

import pytest
from cryptography.fernet import Fernet

from controlplane.bundles import archive, services
from controlplane.bundles.models import Bundle
from controlplane.changelog.models import ObjectChange
from controlplane.identity.models import Agent, AgentStatus
from tests.bundles.factories import built_bundle, environment
from tests.opa.factories import OPAInstanceFactory
from tests.identity.factories import AgentFactory


@pytest.fixture
def dev(admin_user):
    AgentFactory(name="bot", environments=["dev"])
    AgentFactory(name="elsewhere", environments=["prod"])
    dev = environment("dev", by=admin_user)
    built_bundle(dev, by=admin_user)
    return dev


def manifest_of(bundle: Bundle) -> dict:
    return json.loads(archive.read_tar_gz(bytes(bundle.archive))[".manifest"])


def test_suspend_answers_with_the_active_revision_that_carries_it_and_the_engines_running_it(admin_client, dev):
    OPAInstanceFactory(environment=dev, instance_id="old-engine", active_revision=dev.active_bundle.revision)
    OPAInstanceFactory(instance_id="other-environment")  # not reported for dev
    response = admin_client.post("/api/v1/agents/bot/suspend/", {"reason": "leak"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "suspended"
    [report] = body["delivery"]
    dev.refresh_from_db()
    assert report["environment"] == "dev"
    assert report["revision"] == dev.active_bundle.revision != manifest_of(Bundle.objects.exclude(pk=dev.active_bundle.pk).get())["revision"]
    assert report["built_at"] == manifest_of(dev.active_bundle)["metadata"]["warden"]["built_at"]
    assert report["engines_with_change"] == 0
    assert report["engines"][0]["instance_id"] == "old-engine" and report["engines"][0]["has_change"] is False
    dev.opa_instances.filter(instance_id="old-engine").update(active_revision=report["revision"])
    again = admin_client.post("/api/v1/agents/bot/resume/", {}, format="json").json()["delivery"][0]
    assert again["revision"] != report["revision"]


def test_a_failed_rebuild_is_a_503_with_an_alert_in_the_change_log_not_a_200(admin_client, dev, settings):
    before = dev.active_bundle.revision
    # The signing key was encrypted under the old secret key; without it as a fallback the
    # rebuild cannot sign (the failure an operator causes by changing the key carelessly).
    settings.SECRET_KEY = "another secret key " * 4
    settings.WARDEN_ENCRYPTION_KEY = Fernet.generate_key().decode()
    response = admin_client.post("/api/v1/agents/bot/suspend/", {"reason": "leak"}, format="json")
    assert response.status_code == 503
    message = response.json()["detail"]
    assert "could not be rebuilt" in message and "dev" in message and "reconcile" in message
    assert Agent.objects.get(name="bot").status == AgentStatus.SUSPENDED, "the decision itself is recorded"
    dev.refresh_from_db()
    assert dev.active_bundle.revision == before
    alert = ObjectChange.objects.get(action="alert")
    assert alert.object_id == str(dev.pk)
    assert "cannot be decrypted" in alert.message and before in alert.message


def test_rotating_the_secret_key_with_the_old_one_as_fallback_keeps_bundles_building(admin_client, dev, settings):
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a new secret key " * 4
    settings.SECRET_KEY_FALLBACKS = [old]
    response = admin_client.post("/api/v1/agents/bot/suspend/", {}, format="json")
    assert response.status_code == 200, response.json()


def test_reconcile_failures_raise_an_alert_too(dev, settings):
    settings.SECRET_KEY = "another secret key " * 4
    Agent.objects.filter(name="bot").update(status=AgentStatus.SUSPENDED)  # a change that bypassed services
    assert services.refresh_all_environments(reason="periodic reconcile") == []
    assert ObjectChange.objects.filter(action="alert", message__contains="periodic reconcile").count() == 1


def test_a_revision_activated_again_is_restamped_with_a_later_signed_build_time(admin_user, dev):
    from controlplane.identity import services as identity

    first = dev.active_bundle
    first_built = manifest_of(first)["metadata"]["warden"]["built_at"]
    bot = Agent.objects.get(name="bot")
    identity.suspend_agent(bot, by=admin_user)
    identity.resume_agent(bot, by=admin_user)
    dev.refresh_from_db()
    assert dev.active_bundle.pk == first.pk, "same content, same revision and row"
    again = manifest_of(dev.active_bundle)
    assert again["revision"] == first.revision
    assert again["metadata"]["warden"]["built_at"] > first_built
    assert again["metadata"]["environment"] == "dev"
    # The build time is covered by the bundle signature: .manifest is a signed file.
    files = archive.read_tar_gz(bytes(dev.active_bundle.archive))
    assert archive.file_hash(".manifest", files[".manifest"]) == dev.active_bundle.files[".manifest"]


def test_publishing_the_active_content_again_changes_nothing(admin_user, dev):
    etag = dev.active_bundle.etag
    built_bundle(dev, by=admin_user)
    assert dev.active_bundle.etag == etag
