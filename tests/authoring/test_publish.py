"""The plain publish needs an impact preview of exactly these policies or a recorded reason
to go without one, and organisation rules cannot make the library's own tests fail."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from controlplane.authoring import previews, rollout
from controlplane.bundles.selectors import registry_data
from controlplane.bundles.models import Environment
from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import InvalidInput
from controlplane.bundles import services as bundle_services
from controlplane.policies import services as policy_services

pytestmark = pytest.mark.django_db
PUBLISH = "/api/v1/environments/finance/publish/"

BLOCK_EVERY_DELETE = """package warden.org.no_deletes

import rego.v1

deny contains {"rule": "no-deletes", "message": "Nothing is deleted", "controls": []} if {
\tinput.action.tool == "file_delete"
}
"""


def client_of(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_publish_needs_a_preview_or_a_recorded_override(finance_env, author):
    api = client_of(author)
    refused = api.post(PUBLISH, {"message": "v1"}, format="json")
    assert refused.status_code == 409 and "impact_preview" in refused.json(), refused.content
    assert "POST /api/v1/authoring/previews/" in str(refused.json())
    assert Environment.objects.get(name="finance").active_bundle is None
    blank = api.post(PUBLISH, {"message": "v1", "override_reason": "  "}, format="json")
    assert blank.status_code == 409

    published = api.post(PUBLISH, {"message": "v1", "override_reason": "first release, nothing to replay"},
                         format="json")
    assert published.status_code == 200, published.content
    change = ObjectChange.objects.filter(object_repr="finance", message__contains="without impact preview").get()
    assert "by risk-author: first release, nothing to replay" in change.message
    unknown = api.post(PUBLISH, {"impact_preview": "00000000-0000-0000-0000-000000000000"}, format="json")
    assert unknown.status_code == 400 and "impact_preview" in unknown.json()


def test_publish_with_a_finished_preview_of_the_same_policies(finance_env, author):
    policy_services.save_policy_module(path="no_deletes.rego", source=BLOCK_EVERY_DELETE, by=author)
    preview = previews.request_impact_preview(finance_env, by=author)
    api = client_of(author)
    running = api.post(PUBLISH, {"impact_preview": str(preview.pk)}, format="json")
    assert running.status_code == 409 and "not finished" in str(running.json())
    preview = previews.run_impact_preview(preview)

    published = api.post(PUBLISH, {"impact_preview": str(preview.pk)}, format="json")
    assert published.status_code == 200, published.content
    preview.refresh_from_db()
    assert preview.bundle.revision == published.json()["revision"]
    assert "org/no_deletes.rego" in preview.bundle.files

    policy_services.save_policy_module(path="no_deletes.rego", source=BLOCK_EVERY_DELETE.replace("Nothing", "No file"),
                                       by=author)
    stale = api.post(PUBLISH, {"impact_preview": str(preview.pk)}, format="json")
    assert stale.status_code == 409 and "changed after this preview" in str(stale.json())


def test_an_org_rule_blocking_a_tool_the_library_tests_call_does_not_block_publishing(finance_env, author):
    # Library tests expect some file_delete calls to be allowed; this rule denies them all.
    policy_services.save_policy_module(path="no_deletes.rego", source=BLOCK_EVERY_DELETE, by=author)
    bundle = bundle_services.publish_policies(finance_env, by=author)
    assert "org/no_deletes.rego" in bundle.files and bundle.tests_passed > 40

    # The organisation's own tests still run with the library and every organisation module.
    failing = "package warden.org_test.no_deletes\n\nimport rego.v1\n\ntest_deletes_allowed if {\n" \
              "\tcount(data.warden.org.no_deletes.deny) == 0 with input as " \
              '{"action": {"tool": "file_delete", "args": {"path": "/tmp/x"}}}\n}\n'
    policy_services.save_policy_module(path="no_deletes_test.rego", source=failing, by=author)
    with pytest.raises(InvalidInput) as error:
        bundle_services.publish_policies(finance_env, by=author)
    assert [d["test"] for d in error.value.details] == ["data.warden.org_test.no_deletes.test_deletes_allowed"]
    assert "defect of this Warden build" not in error.value.message


def test_a_whole_revision_rolls_out_log_only_then_one_publish_enforces_it(finance_env, author):
    policy_services.create_tool(name="file_delete", scopes=["payments:create"], category="file", by=author)
    api = client_of(author)
    assert api.post(PUBLISH, {"override_reason": "baseline"}, format="json").status_code == 200
    policy_services.save_policy_module(path="no_deletes.rego", source=BLOCK_EVERY_DELETE, by=author)

    answer = api.post(PUBLISH, {"override_reason": "try it on live traffic", "log_only": True}, format="json")
    assert answer.status_code == 200, answer.content
    finance_env.refresh_from_db()
    bundle = finance_env.active_bundle
    assert rollout.rollout_modules(bundle) == ["org/no_deletes.rego"] and "log-only rollout" in bundle.reason
    call = {"agent": {"id": "finance-bot"}, "action": {"tool": "file_delete", "args": {"path": "/tmp/x"}}}
    decision = decide(bundle, finance_env, call)
    assert decision["effect"] == "allow"  # enforced: the revision before it
    assert decision["log_only"]["effect"] == "deny" and decision["log_only"]["reasons"][0]["rule"] == "no-deletes"
    stored = policy_services.PolicyModule.objects.get(path="no_deletes.rego").current_revision.source
    assert stored == BLOCK_EVERY_DELETE  # only the bundle's copy is log-only

    assert api.post(PUBLISH, {"override_reason": "enforce the rollout"}, format="json").status_code == 200
    finance_env.refresh_from_db()
    enforced = decide(finance_env.active_bundle, finance_env, call)
    assert enforced["effect"] == "deny" and "log_only" not in enforced

    # Changing an enforced rule cannot go out log-only: its enforced decisions would change.
    policy_services.save_policy_module(path="no_deletes.rego", source=BLOCK_EVERY_DELETE.replace("Nothing", "No file"),
                                       by=author)
    refused = api.post(PUBLISH, {"override_reason": "x", "log_only": True}, format="json")
    assert refused.status_code == 409 and "org/no_deletes.rego" in refused.json()["log_only"][0]


def decide(bundle, environment, call: dict) -> dict:
    data = {"warden_registry": registry_data(environment)}
    return policy_services.compile_modules(bundle_services.policy_files_of(bundle), data).decide(call)
