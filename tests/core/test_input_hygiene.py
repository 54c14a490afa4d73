"""Hostile input at the API boundary is the caller's 4xx naming the field, never a 500:
deep JSON, NUL characters and lone surrogates in bodies, filters and paths, and partial
updates of nested settings."""

import json
from pathlib import Path

import pytest
import yaml

from controlplane.bundles.models import Environment, default_policy_settings
from controlplane.core.parsers import nesting_depth
from tests.bundles.factories import environment
from tests.identity.factories import AgentFactory

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "docs" / "api" / "openapi.yaml").read_text())
DEEP = 100_000  # far beyond Python's recursion limit


def list_endpoints_with_filters():
    for path, operations in SCHEMA["paths"].items():
        get = operations.get("get")
        if get is None or "{" in path:
            continue
        names = [p["name"] for p in get.get("parameters", []) if p.get("in") == "query"]
        for name in names:
            if name not in ("limit", "offset"):
                yield path, name


@pytest.mark.parametrize("body", ["[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP])
@pytest.mark.parametrize(
    "method, path",
    [("post", "/api/v1/agents/"), ("patch", "/api/v1/environments/dev/"), ("post", "/api/v1/tokens/"),
     ("post", "/api/v1/environments/dev/promote/"), ("post", "/api/v1/agents/bot/suspend/")],
)
def test_deeply_nested_json_is_a_400_not_a_recursion_error(admin_client, admin_user, method, path, body):
    environment("dev", by=admin_user)
    AgentFactory(name="bot")
    response = getattr(admin_client, method)(path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "nested more than 32 levels" in response.json()["detail"]


def test_json_just_within_the_depth_limit_is_parsed(admin_client, admin_user):
    environment("dev", by=admin_user)
    nested = {"rate_limits": {"calls_per_minute": 5}}
    response = admin_client.patch("/api/v1/environments/dev/", {"policy_settings": nested}, format="json")
    assert response.status_code == 200, response.json()


def test_depth_is_counted_outside_strings_only():
    assert nesting_depth('["[[[[", {"a": "{{{{"}]', limit=32) == 2
    assert nesting_depth('"\\"[[[["', limit=32) == 0
    assert nesting_depth("[" * 40, limit=32) == 33, "counting stops past the limit"


@pytest.mark.parametrize("bad", ["a\u0000b", "\ud800", "x\udfffy"])
@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/api/v1/environments/dev/promote/", lambda bad: {"to": bad}, "to"),
        ("/api/v1/agents/", lambda bad: {"name": "bot2", "owner_email": "a@example.com", "team": bad}, "team"),
        ("/api/v1/tokens/", lambda bad: {"name": bad}, "name"),
        ("/api/v1/agents/bot/suspend/", lambda bad: {"reason": bad}, "reason"),
        ("/api/v1/environments/", lambda bad: {"name": "qa", "description": {"nested": [bad]}}, "description.nested[0]"),
        ("/api/v1/environments/", lambda bad: {"name": "qa", bad: 1}, "non_field_errors"),
    ],
)
def test_nul_and_lone_surrogates_in_a_body_are_a_400_naming_the_field(admin_client, admin_user, path, body, field, bad):
    environment("dev", by=admin_user)
    AgentFactory(name="bot")
    raw = json.dumps(body(bad))  # escapes as \\u0000 / \\ud800, as any client would send them
    response = admin_client.post(path, raw, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()
    assert Environment.objects.filter(name="qa").count() == 0


@pytest.mark.parametrize("path, parameter", sorted(set(list_endpoints_with_filters())))
def test_a_nul_in_any_filter_of_any_list_is_a_400_naming_the_parameter(admin_client, path, parameter):
    response = admin_client.get(path, {parameter: "x\x00y"})
    assert response.status_code == 400, (path, parameter, response.status_code)
    assert response.json() == {parameter: ["must not contain the NUL character (U+0000); remove it"]}


def test_a_nul_in_a_path_is_a_400(admin_client):
    response = admin_client.get("/api/v1/tokens/%00/")
    assert response.status_code in (400, 404)
    assert admin_client.get("/api/v1/agents/a%00b/").status_code in (400, 404)
    assert admin_client.get("/api/v1/agents/?%00=1").status_code == 400


def test_a_partial_policy_settings_patch_is_merged_and_keeps_the_environment_readable(admin_client, admin_user):
    environment("dev", by=admin_user)
    response = admin_client.patch(
        "/api/v1/environments/dev/", {"policy_settings": {"internal_email_domains": ["example.com"]}}, format="json"
    )
    assert response.status_code == 200, response.json()
    stored = Environment.objects.get(name="dev").policy_settings
    assert stored == {**default_policy_settings(), "internal_email_domains": ["example.com"]}
    response = admin_client.patch(
        "/api/v1/environments/dev/", {"policy_settings": {"rate_limits": {"calls_per_hour": 10}}}, format="json"
    )
    assert response.status_code == 200
    assert Environment.objects.get(name="dev").policy_settings["rate_limits"] == {
        "calls_per_minute": 120, "calls_per_hour": 10
    }
    listing = admin_client.get("/api/v1/environments/")
    assert listing.status_code == 200


@pytest.mark.parametrize(
    "change, field",
    [
        ({"protected_paths": ["no-slash"]}, "protected_paths"),
        ({"rate_limits": {"calls_per_minute": 0}}, "rate_limits"),
        ({"rate_limits": "fast"}, "rate_limits"),
        ([1, 2], "non_field_errors"),
        ("everything", "non_field_errors"),
    ],
)
def test_an_invalid_partial_policy_settings_patch_saves_nothing(admin_client, admin_user, change, field):
    environment("dev", by=admin_user)
    response = admin_client.patch("/api/v1/environments/dev/", {"policy_settings": change}, format="json")
    assert response.status_code == 400
    assert field in json.dumps(response.json()["policy_settings"])
    assert Environment.objects.get(name="dev").policy_settings == default_policy_settings()
    assert admin_client.get("/api/v1/environments/").status_code == 200


def test_stored_settings_missing_keys_still_render(admin_client, admin_user):
    """Rows a partial PATCH broke before this fix must not break the list for everyone."""
    environment("dev", by=admin_user)
    Environment.objects.filter(name="dev").update(policy_settings={"protected_paths": ["/x/"]})
    response = admin_client.get("/api/v1/environments/")
    assert response.status_code == 200
    assert response.json()["results"][0]["policy_settings"]["rate_limits"] == {
        "calls_per_minute": 120, "calls_per_hour": 2000
    }
