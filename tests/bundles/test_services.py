"""Building, publishing, promoting and rolling back bundles; rebuilds on registry changes."""

import json

import pytest

from controlplane.bundles import archive, services
from controlplane.bundles.models import Bundle, BundleActivation
from controlplane.changelog.models import ObjectChange
from controlplane.core.exceptions import ConflictError, InvalidInput
from controlplane.identity import services as identity_services
from controlplane.policies import services as policy_services
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory, AgentKeyFactory
from tests.policies.test_services import DENY_REFUNDS

pytestmark = pytest.mark.django_db(transaction=True)


def registry_in(bundle: Bundle) -> dict:
    files = archive.read_tar_gz(bytes(bundle.archive))
    return json.loads(files["data.json"])["warden_registry"]


def test_publish_runs_tests_builds_signs_and_activates(admin_user):
    dev = environment("dev", by=admin_user)
    agent = AgentKeyFactory(agent=AgentFactory(name="bot", environments=["dev"])).agent
    AgentFactory(name="elsewhere", environments=["prod"])
    bundle = services.publish_policies(dev, by=admin_user, message="first release")
    dev.refresh_from_db()
    assert dev.active_bundle == bundle
    assert bundle.tests_passed >= 40
    registry = registry_in(bundle)
    assert set(registry["agents"]) == {"bot"}, "only agents that run in the environment travel to it"
    assert registry["agents"]["bot"]["key_ids"] == [agent.keys.get().key_id]
    assert registry["environment"] == "dev"
    assert "warden/decision.rego" in bundle.files
    assert not any(path.endswith("_test.rego") for path in bundle.files)
    change = ObjectChange.objects.get(action="activate", object_id=str(dev.pk))
    assert bundle.revision in change.message


def test_publishing_unchanged_policies_again_reuses_the_bundle(admin_user):
    dev = environment("dev", by=admin_user)
    first = services.publish_policies(dev, by=admin_user)
    second = services.build_bundle(dev, policy_files=services.current_policy_files())
    assert first.pk == second.pk
    assert Bundle.objects.count() == 1


def test_failing_policy_test_blocks_publication(admin_user):
    dev = environment("dev", by=admin_user)
    policy_services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    failing = "package warden.org_test.refunds\n\nimport rego.v1\n\ntest_always_fails if {\n    1 == 2\n}\n"
    policy_services.save_policy_module(path="refunds_test.rego", source=failing, by=admin_user)
    with pytest.raises(InvalidInput) as error:
        services.publish_policies(dev, by=admin_user)
    assert error.value.field == "tests"
    assert error.value.details == [{"test": "data.warden.org_test.refunds.test_always_fails", "message": error.value.details[0]["message"]}]
    assert not Bundle.objects.exists()


def test_organisation_module_travels_in_the_bundle_and_decides(admin_user):
    dev = environment("dev", by=admin_user)
    policy_services.save_policy_module(path="finance/refunds.rego", source=DENY_REFUNDS, by=admin_user)
    bundle = services.publish_policies(dev, by=admin_user)
    assert "org/finance/refunds.rego" in bundle.files
    policy = policy_services.compile_modules(services.policy_files_of(bundle), {"warden_registry": registry_in(bundle)})
    decision = policy.decide({"agent": {"id": "x"}, "action": {"tool": "refund", "args": {"amount": 5000}}})
    assert decision["effect"] == "deny"
    assert "big-refunds" in {reason["rule"] for reason in decision["reasons"]}


def test_promote_runs_source_policies_with_target_registry(admin_user):
    dev = environment("dev", by=admin_user, position=0)
    prod = environment("prod", by=admin_user, position=2)
    AgentFactory(name="prod-bot", environments=["prod"])
    policy_services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    services.publish_policies(dev, by=admin_user)
    # a newer draft that is not published must not reach prod
    policy_services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS.replace("1000", "1"), by=admin_user)
    promoted = services.promote_bundle(dev, to=prod, by=admin_user)
    prod.refresh_from_db()
    assert prod.active_bundle == promoted
    assert set(registry_in(promoted)["agents"]) == {"prod-bot"}
    assert "> 1000" in services.policy_files_of(promoted)["org/refunds.rego"]
    assert ObjectChange.objects.filter(action="promote", object_id=str(prod.pk)).count() == 1
    with pytest.raises(ConflictError):
        services.promote_bundle(environment("staging", by=admin_user, position=1), to=prod, by=admin_user)


def test_rollback_restores_policies_but_keeps_current_registry(admin_user):
    dev = environment("dev", by=admin_user)
    agent = AgentFactory(name="bot", environments=["dev"])
    services.publish_policies(dev, by=admin_user)
    policy_services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    services.publish_policies(dev, by=admin_user)
    identity_services.suspend_agent(agent, by=admin_user, reason="incident")
    rolled_back = services.rollback_bundle(dev, by=admin_user)
    assert "org/refunds.rego" not in services.policy_files_of(rolled_back)
    assert registry_in(rolled_back)["agents"]["bot"]["status"] == "suspended"
    assert ObjectChange.objects.filter(action="rollback").count() == 1


def test_rollback_twice_returns_to_the_newer_policies(admin_user):
    dev = environment("dev", by=admin_user)
    services.publish_policies(dev, by=admin_user)
    policy_services.save_policy_module(path="refunds.rego", source=DENY_REFUNDS, by=admin_user)
    newer = services.publish_policies(dev, by=admin_user)
    services.rollback_bundle(dev, by=admin_user)
    assert services.rollback_bundle(dev, by=admin_user).pk == newer.pk


def test_rollback_without_history_is_a_conflict(admin_user):
    dev = environment("dev", by=admin_user)
    with pytest.raises(ConflictError):
        services.rollback_bundle(dev, by=admin_user)
    services.publish_policies(dev, by=admin_user)
    with pytest.raises(ConflictError):
        services.rollback_bundle(dev, by=admin_user)


def test_suspending_an_agent_activates_a_new_bundle_in_every_environment(admin_user):
    dev = environment("dev", by=admin_user)
    prod = environment("prod", by=admin_user)
    agent = AgentFactory(name="bot", environments=["dev", "prod"])
    services.publish_policies(dev, by=admin_user)
    services.promote_bundle(dev, to=prod, by=admin_user)
    for env in (dev, prod):
        env.refresh_from_db()
    before = {env.name: env.active_bundle.revision for env in (dev, prod)}

    identity_services.suspend_agent(agent, by=admin_user, reason="kill switch")

    for env in (dev, prod):
        env.refresh_from_db()
        assert env.active_bundle.revision != before[env.name]
        assert registry_in(env.active_bundle)["agents"]["bot"]["status"] == "suspended"
        assert env.active_bundle.reason == "registry changed: suspend"
    assert BundleActivation.objects.filter(reason="registry changed: suspend").count() == 2


def test_suspended_agent_is_denied_by_the_new_bundle(admin_user):
    dev = environment("dev", by=admin_user)
    policy_services.create_tool(name="ticket_read", scopes=["read:tickets"], by=admin_user)
    agent = AgentFactory(name="bot", environments=["dev"], scopes=["read:tickets"])
    services.publish_policies(dev, by=admin_user)
    request = {
        "agent": {"id": "bot", "name": "bot"},
        "action": {"type": "tool_call", "tool": "ticket_read", "args": {}},
        "context": {"environment": "dev", "session_id": "s"},
    }

    def decide():
        dev.refresh_from_db()
        bundle = dev.active_bundle
        policy = policy_services.compile_modules(services.policy_files_of(bundle), {"warden_registry": registry_in(bundle)})
        return policy.decide(request)

    assert decide()["effect"] == "allow"
    identity_services.suspend_agent(agent, by=admin_user)
    decision = decide()
    assert decision["effect"] == "deny"
    assert decision["allow"] is False


def test_registry_change_without_data_change_builds_nothing(admin_user):
    dev = environment("dev", by=admin_user)
    services.publish_policies(dev, by=admin_user)
    count = Bundle.objects.count()
    assert services.refresh_all_environments(reason="noop") == []
    assert Bundle.objects.count() == count


def test_reconcile_task_repairs_a_missed_rebuild(admin_user, settings):
    from controlplane.bundles.tasks import reconcile_bundles
    from controlplane.identity.models import Agent

    dev = environment("dev", by=admin_user)
    AgentFactory(name="bot", environments=["dev"])
    services.publish_policies(dev, by=admin_user)
    # a change that bypassed the services (as if the process died before the rebuild)
    Agent.objects.filter(name="bot").update(status="suspended")
    assert reconcile_bundles.apply().get() == 1
    dev.refresh_from_db()
    assert registry_in(dev.active_bundle)["agents"]["bot"]["status"] == "suspended"
    assert reconcile_bundles.apply().get() == 0
