"""OPA delta bundles in the SDK (agents_sdk.bundles.delta): the patch semantics OPA applies."""

import pytest

from agents_sdk.bundles import BundleError
from agents_sdk.bundles.delta import apply_patch, parse_pointer

DATA = {"warden_registry": {"agents": {"a": {"status": "active"}, "b/c": {"status": "active"}}, "tools": {"t": 1}}}
ROOTS = ("warden_registry",)


def test_a_patch_is_applied_copy_on_write_and_leaves_untouched_objects_shared():
    patched = apply_patch(
        DATA,
        [
            {"op": "upsert", "path": "/warden_registry/agents/a/status", "value": "suspended"},
            {"op": "remove", "path": "/warden_registry/agents/b~1c"},
            {"op": "upsert", "path": "/warden_registry/agents/new/status", "value": "active"},
            {"op": "replace", "path": "/warden_registry/agents/new/status", "value": "suspended"},
        ],
        ROOTS,
    )
    assert patched["warden_registry"]["agents"] == {"a": {"status": "suspended"}, "new": {"status": "suspended"}}
    assert DATA["warden_registry"]["agents"]["a"]["status"] == "active" and "b/c" in DATA["warden_registry"]["agents"]
    assert patched["warden_registry"]["tools"] is DATA["warden_registry"]["tools"]  # not on any op's path: not copied


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        ({"op": "remove", "path": "/warden_registry/agents/ghost"}, "does not exist"),
        ({"op": "replace", "path": "/warden_registry/agents/ghost", "value": {}}, "does not exist"),
        ({"op": "upsert", "path": "/warden/other", "value": 1}, "outside the bundle roots"),
        ({"op": "add", "path": "/warden_registry/x", "value": 1}, "not an upsert, replace or remove"),
        ({"op": "upsert", "path": "/warden_registry/tools/t/deeper", "value": 1}, "does not lead through objects"),
        ({"op": "upsert", "path": "/", "value": {}}, "whole data document"),
    ],
)
def test_operations_opa_would_refuse_are_refused(operation, message):
    with pytest.raises(BundleError, match=message):
        apply_patch(DATA, [operation], ROOTS)


def test_json_pointers_unescape_as_rfc_6901_says():
    assert parse_pointer("/a~1b/c~0d/~01") == ["a/b", "c~d", "~1"]
