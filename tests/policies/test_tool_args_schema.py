"""The tool catalog's argument schema: validated at save, carried in the bundle, enforced by
the pack (agents_sdk.engine.args_schema, rego/warden/args_schema.rego)."""

import pytest

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"path": {"type": "string", "maxLength": 200}}, "required": ["path"],
          "additionalProperties": False}


def test_a_schema_the_pack_cannot_enforce_is_refused_naming_the_keyword(token_client):
    client = token_client("policy_author")
    bad = client.post("/api/v1/tools/", {"name": "file_shred", "args_schema": {"properties": {"path": {"pattern": "^/"}}}},
                      format="json")
    assert bad.status_code == 400
    assert bad.json()["args_schema"][0].startswith("args_schema.properties.path.pattern: not supported")


def test_a_catalog_argument_schema_travels_in_the_bundle_and_the_pack_refuses_other_shapes(token_client, admin_user):
    from agents_sdk.engine import RegoEngine
    from controlplane.bundles.selectors import registry_data
    from controlplane.policies.library import library_modules
    from tests.bundles.factories import environment
    from tests.identity.factories import AgentFactory

    client = token_client("policy_author")
    created = client.post("/api/v1/tools/", {"name": "file_shred", "scopes": ["write:files"], "category": "file",
                                             "args_schema": SCHEMA}, format="json")
    assert created.status_code == 201 and created.json()["args_schema"] == SCHEMA
    AgentFactory(name="files-bot", environments=["dev"], scopes=["write:files"])
    data = registry_data(environment("dev", by=admin_user))
    assert data["tools"]["file_shred"]["args_schema"] == SCHEMA
    policy = RegoEngine().compile(library_modules(include_tests=False), {"warden_registry": data})

    def call(args):
        return policy.decide({"agent": {"id": "files-bot", "scopes": ["write:files"]},
                              "action": {"type": "tool_call", "tool": "file_shred", "args": args},
                              "context": {"environment": "dev"}})

    assert call({"path": "/tmp/a"})["effect"] == "allow"
    refused = call({"path": "/tmp/a", "paths": ["/prod/x"]})
    assert refused["effect"] == "deny"
    assert [r["message"] for r in refused["reasons"] if r["rule"] == "malformed-args"] == [
        "Argument args.paths of tool file_shred must be absent: the tool's argument schema does not declare it"]
