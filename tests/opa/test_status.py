"""Status API: each OPA instance upserted by labels.id, visible in the instances API with
whether it runs the environment's active revision."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.bundles import services as bundle_services
from controlplane.opa.models import OPAInstance
from tests.opa.sidecar import EmulatedOPA, asgi_client, run


ZERO_TIME = "0001-01-01T00:00:00Z"


def status_report(instance_id: str, *, revision: str | None, bundle: str = "dev", **extra) -> dict:
    """An UpdateRequestV1 as OPA 1.x sends it after a bundle poll."""
    bundle_status = {
        "name": bundle,
        "last_successful_download": "2025-03-01T12:00:00.1Z",
        "last_successful_activation": ZERO_TIME if revision is None else "2025-03-01T12:00:00.2Z",
        "last_request": "2025-03-01T12:00:00Z",
        "last_successful_request": "2025-03-01T12:00:00Z",
        "type": "snapshot",
        "size": 7752,
        "metrics": {"timer_rego_load_bundles_ns": 1234},
    }
    if revision is not None:
        bundle_status["active_revision"] = revision
    report = {
        "labels": {"id": instance_id, "version": "1.4.2", "region": "eu-west-1"},
        "bundles": {bundle: bundle_status},
        "decision_logs": {"code": "decision_log_error", "message": "log upload failed", "http_code": 500},
        "plugins": {"bundle": {"state": "OK"}, "decision_logs": {"state": "OK"}, "status": {"state": "OK"}},
        "metrics": {"prometheus": {"go_gc_duration_seconds": {"help": "…"}}},
    }
    report.update(extra)
    return report


async def _post_status(token, report, *, raw: bytes | None = None, path="/opa/status"):
    async with asgi_client() as client:
        opa = EmulatedOPA(client, token=token, resource="")
        body = raw if raw is not None else (json.dumps(report) + "\n").encode()  # json.Encoder adds "\n"
        return await opa.post(path, body)


def test_status_report_is_visible_in_the_instances_api(dev, dev_token, admin_client):
    revision = dev.active_bundle.revision
    response = run(_post_status(dev_token, status_report("opa-1", revision=revision)))
    assert response.status_code == 200

    listing = admin_client.get("/api/v1/opa/instances/", {"environment": "dev"})
    assert listing.status_code == 200
    (instance,) = listing.json()["results"]
    assert instance["instance_id"] == "opa-1"
    assert instance["environment"] == "dev"
    assert instance["version"] == "1.4.2"
    assert instance["active_revision"] == instance["environment_revision"] == revision
    assert instance["is_current"] is True and instance["is_stale"] is False
    assert instance["bundles"]["dev"]["last_successful_activation"] == "2025-03-01T12:00:00.2Z"
    assert "metrics" not in instance["bundles"]["dev"]  # not kept
    assert instance["decision_logs"]["http_code"] == 500
    assert instance["plugins"]["bundle"] == {"state": "OK"}


def test_repeated_reports_update_one_instance_per_labels_id(dev, dev_token):
    run(_post_status(dev_token, status_report("opa-1", revision=None)))
    run(_post_status(dev_token, status_report("opa-1", revision=dev.active_bundle.revision)))
    run(_post_status(dev_token, status_report("opa-2", revision="old-revision")))
    assert OPAInstance.objects.count() == 2
    assert OPAInstance.objects.get(instance_id="opa-1").active_revision == dev.active_bundle.revision


def test_instances_api_shows_who_runs_an_old_revision(dev, dev_token, auditor_client):
    run(_post_status(dev_token, status_report("current", revision=dev.active_bundle.revision)))
    run(_post_status(dev_token, status_report("behind", revision="old-revision")))
    OPAInstance.objects.filter(instance_id="behind").update(last_seen=timezone.now() - timedelta(hours=1))

    def ids(**params):
        response = auditor_client.get("/api/v1/opa/instances/", params)  # every role reads
        assert response.status_code == 200
        return {i["instance_id"] for i in response.json()["results"]}

    assert ids(current="false") == {"behind"}
    assert ids(current="true") == {"current"}
    assert ids(stale="true") == {"behind"}
    assert ids(revision="old-revision") == {"behind"}
    assert ids(environment="prod") == set()


def test_bundle_error_is_reported(dev, dev_token, admin_client):
    report = status_report("opa-1", revision=None)
    report["bundles"]["dev"].update(
        code="bundle_error", message="server replied with Forbidden", http_code=403, errors=["x"]
    )
    run(_post_status(dev_token, report))
    instance = admin_client.get("/api/v1/opa/instances/").json()["results"][0]
    assert instance["bundles"]["dev"]["code"] == "bundle_error"
    assert instance["bundles"]["dev"]["http_code"] == 403
    assert instance["active_revision"] == ""


def test_partitioned_status_path_is_accepted(dev, dev_token):
    response = run(_post_status(dev_token, status_report("opa-1", revision=None), path="/opa/status/p1"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("report", "field"),
    [
        (["not", "an", "object"], "body"),
        ({"bundles": {}}, "labels.id"),
        ({"labels": {"id": ""}}, "labels.id"),
        ({"labels": {"id": "opa-1"}, "bundles": []}, "bundles"),
        ({"labels": {"id": "opa-1"}, "bundles": {"dev": {"active_revision": 42}}}, "bundles.dev.active_revision"),
        ({"labels": {"id": "opa-1"}, "plugins": {"bundle": {"state": 1}}}, "plugins.bundle.state"),
    ],
)
def test_bad_status_reports_are_refused_with_400(dev, dev_token, report, field):
    response = run(_post_status(dev_token, report))
    assert response.status_code == 400
    assert field in response.json()
    assert OPAInstance.objects.count() == 0


def test_invalid_json_status_is_400(dev, dev_token):
    response = run(_post_status(dev_token, None, raw=b"{"))
    assert response.status_code == 400 and "not valid JSON" in response.json()["body"][0]


def test_status_needs_a_valid_token(dev, dev_token, admin):
    bundle_services.revoke_environment_token(dev.tokens.get(), by=admin)
    assert run(_post_status(dev_token, status_report("opa-1", revision=None))).status_code == 401
