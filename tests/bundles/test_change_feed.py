"""The registry build reads the agents written since its last read from the database's change
feed (identity.AgentChange, triggers), not every agent's row version (issue #20): a
suspension costs the same queries at any registry size, and writes made elsewhere (another
process, plain SQL, a transaction that rolled back) are never missed.

Committed data (transaction=True): the feed is read across transactions, as in production.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.bundles import archive, registry, services
from controlplane.bundles.models import BundlePart, Environment
from controlplane.changelog.models import ChangeAction
from controlplane.identity import services as identity_services
from controlplane.identity.models import Agent, AgentChange, AgentKey
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory, AgentKeyFactory

pytestmark = pytest.mark.django_db(transaction=True)

POLICIES = {"warden/killswitch.rego": (
    "package warden.killswitch\n\n"
    "default active := false\n\n"
    "active if data.warden_registry.agents[input.agent.name].status == \"active\"\n"
)}


@pytest.fixture(autouse=True)
def _fresh_caches():
    registry.agents_json.clear()
    yield
    registry.agents_json.clear()


def _publish(env, by):
    with transaction.atomic():
        return services.activate_bundle(
            env, services.build_bundle(env, policy_files=POLICIES, by=by, reason="test"), by=by,
            action=ChangeAction.ACTIVATE,
        )


def _agents(env_name: str) -> dict:
    bundle = Environment.objects.get(name=env_name).active_bundle
    part = BundlePart.objects.get(bundle=bundle, kind=BundlePart.Kind.REGISTRY)
    return json.loads(archive.read_tar_gz(bytes(part.archive))["data.json"])["warden_registry"]["agents"]


def _refresh(env_name: str) -> None:
    services.refresh_registry_data(Environment.objects.get(name=env_name), reason="test")


def test_a_suspension_costs_the_same_queries_at_any_registry_size(admin_user):
    counts, scans = {}, []
    for env_name, size in (("small", 20), ("large", 400)):
        env = environment(env_name, by=admin_user)
        AgentFactory.create_batch(size, environments=[env_name])
        victim = AgentFactory(name=f"{env_name}-victim", environments=[env_name])
        first = AgentFactory(name=f"{env_name}-first", environments=[env_name])
        _publish(env, admin_user)  # the first build lists every agent and takes the feed's snapshot
        # One change first, so both sizes are measured with this process's caches warm.
        identity_services.suspend_agent(first, by=admin_user, reason="warm")
        with CaptureQueriesContext(connection) as queries:
            identity_services.suspend_agent(victim, by=admin_user, reason="leaked key")
        counts[env_name] = len(queries.captured_queries)
        scans += [q["sql"] for q in queries.captured_queries if q["sql"].startswith(registry._VERSIONS.split("%s")[0])]
        assert _agents(env_name)[victim.name]["status"] == "suspended"
        assert len(_agents(env_name)) == size + 2
    assert scans == [], "a suspension listed every agent's row version"
    assert counts["small"] == counts["large"]
    # What the build recorded for delta bundles is the victim alone, at either size.
    for env_name in ("small", "large"):
        part = BundlePart.objects.get(bundle=Environment.objects.get(name=env_name).active_bundle,
                                      kind=BundlePart.Kind.REGISTRY)
        assert list(part.changes["agents"]) == [f"{env_name}-victim"]


def test_writes_made_elsewhere_reach_the_next_build(admin_user):
    env = environment("dev", by=admin_user)
    AgentFactory.create_batch(5, environments=["dev"])
    moved = AgentFactory(name="moved-bot", environments=["dev"])
    deleted = AgentFactory(name="deleted-bot", environments=["dev"])
    keyed = AgentFactory(name="keyed-bot", environments=["dev"])
    _publish(env, admin_user)
    # Written past this process's services (another process, a shell), each in its own commit.
    Agent.objects.filter(pk=moved.pk).update(environments=["prod"])
    Agent.objects.filter(pk=deleted.pk).delete()
    key = AgentKeyFactory(agent=keyed)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE identity_agent SET status = 'suspended' WHERE name LIKE 'agent-%%'")
    AgentFactory(name="new-bot", environments=["dev"])
    _refresh("dev")
    agents = _agents("dev")
    assert "moved-bot" not in agents and "deleted-bot" not in agents
    assert agents["keyed-bot"]["key_ids"] == [key.key_id]
    assert agents["new-bot"]["status"] == "active"
    assert {facts["status"] for name, facts in agents.items() if name.startswith("agent-")} == {"suspended"}
    assert len(agents) == 5 + 2


def test_a_write_read_before_its_rollback_is_not_kept(admin_user):
    env = environment("dev", by=admin_user)
    bot = AgentFactory(name="rolled-back-bot", environments=["dev"])
    _publish(env, admin_user)

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic():
        Agent.objects.filter(pk=bot.pk).update(status="suspended")
        AgentFactory(name="never-bot", environments=["dev"])
        _refresh("dev")  # reads its own uncommitted writes
        assert _agents("dev")["rolled-back-bot"]["status"] == "suspended"
        raise Abandon
    other = AgentFactory(name="other-bot", environments=["dev"])
    _refresh("dev")
    agents = _agents("dev")
    assert agents["rolled-back-bot"]["status"] == "active"
    assert "never-bot" not in agents and other.name in agents


def test_the_feed_names_every_agent_a_write_touched():
    AgentChange.objects.all().delete()
    bot = AgentFactory(name="feed-bot", environments=["dev"])
    key = AgentKeyFactory(agent=bot)
    Agent.objects.filter(pk=bot.pk).update(team="other")
    AgentKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now(), revoked_reason="rotated")
    names = list(AgentChange.objects.order_by("id").values_list("agent_name", flat=True))
    assert names == ["feed-bot"] * 4
    assert registry.prune_agent_changes() == 0  # all recent


def test_a_truncate_makes_the_next_build_list_every_agent(admin_user):
    env = environment("dev", by=admin_user)
    AgentFactory(name="kept-bot", environments=["dev"])
    _publish(env, admin_user)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE identity_agentkey, identity_agent CASCADE")
    AgentFactory(name="after-bot", environments=["dev"])
    _refresh("dev")
    assert list(_agents("dev")) == ["after-bot"]
