"""controlplane.opa.deltas without a database: the fast path that decodes only the agent
entries between two registry texts' common prefix and suffix gives the ops of a full diff."""

import copy
import json

import pytest

from agents_sdk.bundles.delta import apply_patch
from agents_sdk.bundles.format import canonical_json
from controlplane.opa.deltas import diff, index_text, text_patch


def registry(count: int) -> dict:
    agents = {
        f"agent-{i:04d}": {
            "status": "active",
            "owner": f"o{i}@example.com",
            "scopes": ["read:tickets"],
            "egress": {"allow_hosts": ["api.example.com"]},
        }
        for i in range(count)
    }
    return {
        "warden_registry": {
            "agents": agents,
            "delegation": {"keys": {"k1": {"agent": "agent-0000"}}},
            "environment": "dev",
            "tools": {"ticket_read": {"scopes": ["read:tickets"]}},
        }
    }


def suspend(name):
    return lambda data: data["warden_registry"]["agents"][name].update(status="suspended")


def add(name):
    return lambda data: data["warden_registry"]["agents"].__setitem__(name, {"status": "active", "scopes": []})


def remove(name):
    return lambda data: data["warden_registry"]["agents"].pop(name)


def several(*changes):
    def change(data):
        for one in changes:
            one(data)

    return change


CHANGES = {
    "suspend in the middle": suspend("agent-0050"),
    "suspend the first": suspend("agent-0000"),
    "suspend the last": suspend("agent-0099"),
    "add after the last": add("agent-9999"),
    "add before the first": add("agent-"),
    "add in the middle": add("agent-0050a"),
    "remove the first": remove("agent-0000"),
    "remove the last": remove("agent-0099"),
    "several far apart": several(suspend("agent-0003"), remove("agent-0040"), add("agent-0090x")),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_text_fast_path_gives_the_ops_of_a_full_diff(change):
    old = registry(100)
    new = copy.deepcopy(old)
    change(new)
    old_text, new_text = canonical_json(old).decode(), canonical_json(new).decode()
    patched = text_patch(index_text('"old"', old_text), '"new"', new_text)
    assert patched is not None, "a change confined to the agents must take the fast path"
    ops, index = patched
    assert ops == diff(old, new)
    assert apply_patch(old, ops, ("warden_registry",)) == new
    # The new text's index is the one a full scan gives, so the next change can use it.
    assert index.offsets == index_text('"new"', new_text).offsets


def test_a_change_outside_the_agents_takes_the_full_diff():
    old = registry(10)
    new = copy.deepcopy(old)
    new["warden_registry"]["delegation"]["keys"]["k2"] = {"agent": "agent-0001"}
    assert text_patch(index_text('"old"', canonical_json(old).decode()), '"new"', canonical_json(new).decode()) is None
    assert json.loads(json.dumps(diff(old, new))) == [
        {"op": "upsert", "path": "/warden_registry/delegation/keys/k2", "value": {"agent": "agent-0001"}}
    ]
