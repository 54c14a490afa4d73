"""A delta-polling engine several registry changes behind gets one delta composed from what
each build recorded (controlplane/opa/deltas.py `recorded_changes`), and the server reads
no snapshot to answer it; a link that recorded nothing makes it compare the snapshots."""

from __future__ import annotations

from controlplane.bundles import services as bundle_services
from controlplane.bundles import storage
from controlplane.bundles.models import BundlePart
from controlplane.identity import services as identity_services
from controlplane.opa import deltas
from controlplane.opa.selectors import forget_cached_bundles
from tests.identity.factories import AgentFactory
from tests.opa.opa_client import apply_delta, read_delta
from tests.opa.sidecar import run
from tests.opa.test_delta_bundles import REGISTRY, _download, _snapshot


def test_a_poller_two_changes_behind_gets_one_delta_without_the_snapshot_being_read(
    dev, dev_token, agent, admin, signing_key, monkeypatch
):
    second = AgentFactory(name="second-bot", environments=["dev"])
    bundle_services.refresh_all_environments(reason="second-bot joins dev")
    before, held = _snapshot(dev_token, signing_key)
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    identity_services.suspend_agent(second, by=admin, reason="kill switch")
    forget_cached_bundles()
    deltas.forget_cached_deltas()
    read = []
    real_archive_of = storage.archive_of
    monkeypatch.setattr(storage, "archive_of", lambda *a: read.append(a) or real_archive_of(*a))
    response = run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5))
    delta = read_delta(response.content)
    assert delta is not None, "two recorded changes compose into one delta"
    assert read == [], "answering with a recorded delta must not read a snapshot"
    paths = sorted(op["path"] for op in delta.operations)
    assert paths == ["/warden_registry/agents/billing-bot", "/warden_registry/agents/second-bot"]
    snapshot, latest = _snapshot(dev_token, signing_key, resource="bundles/dev/registry")
    assert apply_delta(held.data, delta, roots=["warden_registry"]) == latest.data
    assert response.headers["ETag"] == snapshot.headers["ETag"]


def test_a_chain_with_a_link_that_recorded_nothing_is_diffed_from_the_snapshots(dev, dev_token, agent, admin,
                                                                                signing_key):
    second = AgentFactory(name="second-bot", environments=["dev"])
    bundle_services.refresh_all_environments(reason="second-bot joins dev")
    before, held = _snapshot(dev_token, signing_key)
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    identity_services.suspend_agent(second, by=admin, reason="kill switch")
    # The first link built by a process that had not encoded the registry before.
    middle = BundlePart.objects.filter(kind=BundlePart.Kind.REGISTRY, previous_etag=before.headers["ETag"])
    assert middle.update(changes=None) == 1
    forget_cached_bundles()
    deltas.forget_cached_deltas()
    delta = read_delta(run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5)).content)
    assert delta is not None
    _, latest = _snapshot(dev_token, signing_key, resource="bundles/dev/registry")
    assert apply_delta(held.data, delta, roots=["warden_registry"]) == latest.data
    assert latest.data["warden_registry"]["agents"]["second-bot"]["status"] == "suspended"


def test_recorded_changes_compose_later_over_earlier_and_refuse_a_broken_chain():
    parts = {
        '"b"': ('"a"', {"agents": {"x": '{"status":"suspended"}'}, "keys": {}, "rest": False}),
        '"c"': ('"b"', {"agents": {"x": '{"status":"active"}', "y": None}, "keys": {"k": None}, "rest": False}),
        '"d"': ('"c"', None),
        '"e"': ('"c"', {"agents": {}, "keys": {}, "rest": True}),
    }
    assert deltas.recorded_changes(parts, '"a"', '"c"') == {
        "agents": {"x": '{"status":"active"}', "y": None}, "keys": {"k": None}, "rest": False, "ops": []}
    assert deltas.recorded_changes(parts, '"a"', '"d"') is None  # a link recorded nothing
    assert deltas.recorded_changes(parts, '"a"', '"e"') is None  # something outside agents and keys
    assert deltas.recorded_changes(parts, '"z"', '"c"') is None  # not in the chain
    tools = {"op": "upsert", "path": "/warden_registry/tools/t", "value": {"scopes": []}}
    head = {"op": "upsert", "path": "/warden_registry/audit_head", "value": {"seq": 2}}
    with_ops = {'"b"': ('"a"', {"agents": {}, "keys": {}, "rest": False, "ops": [tools]}),
                '"c"': ('"b"', {"agents": {"x": None}, "keys": {}, "rest": False, "ops": [head]})}
    composed = deltas.recorded_changes(with_ops, '"a"', '"c"')
    assert composed["ops"] == [tools, head]
    assert deltas.recorded_ops(composed) == [tools, head, {"op": "remove", "path": "/warden_registry/agents/x"}]
    looped = {'"p"': ('"q"', {"agents": {}, "keys": {}, "rest": False}),
              '"q"': ('"p"', {"agents": {}, "keys": {}, "rest": False})}
    assert deltas.recorded_changes(looped, '"a"', '"p"') is None


def test_a_change_outside_the_agents_is_recorded_as_ops_and_delivered_in_the_delta(
    dev, dev_token, agent, admin, signing_key, monkeypatch
):
    from controlplane.policies.services import create_tool

    before, held = _snapshot(dev_token, signing_key)
    create_tool(name="refund_issue", by=admin, scopes=["payments:refund"])  # the tool catalog: outside the agents
    bundle_services.refresh_all_environments(reason="tool added")
    identity_services.suspend_agent(agent, by=admin, reason="kill switch")
    parts = BundlePart.objects.filter(kind=BundlePart.Kind.REGISTRY).exclude(changes=None)
    assert any(op["path"].startswith("/warden_registry/tools") for part in parts
               for op in part.changes.get("ops", [])), "the tool must be recorded as an op"
    forget_cached_bundles()
    deltas.forget_cached_deltas()
    read = []
    real_archive_of = storage.archive_of
    monkeypatch.setattr(storage, "archive_of", lambda *a: read.append(a) or real_archive_of(*a))
    delta = read_delta(run(_download(dev_token, REGISTRY, etag=before.headers["ETag"], wait=5)).content)
    assert delta is not None and read == []
    _, latest = _snapshot(dev_token, signing_key, resource="bundles/dev/registry")
    assert apply_delta(held.data, delta, roots=["warden_registry"]) == latest.data
    assert "refund_issue" in latest.data["warden_registry"]["tools"]
