"""The incremental registry encoding (controlplane/bundles/registry.py) is byte for byte the
canonical JSON of registry_data, before and after changes, and reads only what changed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents_sdk.bundles.format import canonical_json
from controlplane.bundles import registry, services
from controlplane.bundles.selectors import registry_data
from controlplane.identity.models import AgentKey
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory, AgentKeyFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_caches():
    registry.agents_json.clear()
    registry.keys_json.clear()
    yield
    registry.agents_json.clear()
    registry.keys_json.clear()


def _same(env) -> bytes:
    fast = bytes(registry.registry_json(env))
    assert fast == canonical_json(registry_data(env))
    return fast


def test_hostile_shapes_encode_exactly_as_the_plain_way(admin_user):
    dev = environment("dev", by=admin_user)
    AgentKeyFactory(agent=AgentFactory(name="zeta", environments=["dev", "prod"], scopes=["b:x", "a:y"]))
    odd = AgentFactory(
        name="ünï-\u2028bot", environments=["dev"], team="x<y & \"z\"",
        egress_allow_hosts=["b.example", "a.example"], shell_allow_commands=["ls", "git status"],
        sandbox_profile={"memory_mb": 512, "cpu": 1.5, "paths": {"ro": ["/etc"]}, "net": False, "n": None},
    )
    for _ in range(3):
        AgentKeyFactory(agent=odd)
    revoked = AgentKey.objects.filter(agent=odd).order_by("key_id").first()
    AgentKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    AgentFactory(name="elsewhere", environments=["prod"])
    data = _same(dev)
    assert b"elsewhere" not in data


def test_changes_are_picked_up_and_only_changed_agents_are_read_again(admin_user):
    dev = environment("dev", by=admin_user)
    agents = [AgentKeyFactory(agent=AgentFactory(name=f"bot-{i:03d}", environments=["dev"])).agent for i in range(40)]
    for _ in range(4):  # agents with several keys are versioned alike by both queries
        AgentKeyFactory(agent=agents[11])
        AgentKeyFactory(agent=agents[12])
    _same(dev)
    agents[7].status = "suspended"
    agents[7].save(update_fields=["status"])
    with CaptureQueriesContext(connection) as queries:
        fast = bytes(registry.registry_json(dev))
    changed = [q["sql"] for q in queries.captured_queries if "= ANY(" in q["sql"] and "jsonb_build_object" in q["sql"]]
    assert len(changed) == 1  # one query for the changed agents...
    assert canonical_json(registry_data(dev)) == fast
    assert b'"bot-007":{' in fast and b'"status":"suspended"' in fast
    # ...and none when nothing changed.
    with CaptureQueriesContext(connection) as queries:
        registry.registry_json(dev)
    assert not [q for q in queries.captured_queries if "= ANY(" in q["sql"] and "jsonb_build_object" in q["sql"]]
    # A key revoked, a new agent, an agent leaving the environment.
    AgentKey.objects.filter(agent=agents[3]).update(revoked_at=timezone.now())
    AgentKeyFactory(agent=AgentFactory(name="bot-new", environments=["dev"]))
    agents[5].environments = ["prod"]
    agents[5].save(update_fields=["environments"])
    fast = _same(dev)
    assert b'"bot-005"' not in fast and b'"bot-new"' in fast


def test_the_bundle_carries_the_incremental_encoding(admin_user):
    dev = environment("dev", by=admin_user)
    AgentKeyFactory(agent=AgentFactory(name="bot", environments=["dev"]))
    assert services.bundle_data_json(dev) == canonical_json(services.bundle_data(dev))
