"""Environments and bundles through the API: roles, one call each for publish, promote and
roll back, environment tokens, bundle download and the public signing key."""

import jwt
import pytest

from controlplane.bundles import archive
from controlplane.bundles.models import Environment, EnvironmentToken
from controlplane.changelog.models import ObjectChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def environments(admin_client):
    for position, name in enumerate(["dev", "staging", "prod"]):
        response = admin_client.post("/api/v1/environments/", {"name": name, "position": position}, format="json")
        assert response.status_code == 201, response.content


@pytest.mark.parametrize("role, expected", [("policy_author", 200), ("admin", 200), ("approver", 403), ("auditor", 403)])
def test_who_may_publish(token_client, environments, role, expected):
    response = token_client(role).post("/api/v1/environments/dev/publish/", {"message": "v1", "override_reason": "first release"},
                                        format="json")
    assert response.status_code == expected
    assert (Environment.objects.get(name="dev").active_bundle_id is not None) == (expected == 200)


def test_release_flow_publish_promote_rollback(token_client, environments):
    author = token_client("policy_author")
    published = author.post("/api/v1/environments/dev/publish/", {"message": "v1", "override_reason": "first release"},
                            format="json").json()
    assert published["tests_passed"] >= 40
    promoted = author.post("/api/v1/environments/dev/promote/", {"to": "staging"}, format="json")
    assert promoted.status_code == 200
    staging = author.get("/api/v1/environments/staging/").json()
    assert staging["active_bundle"]["revision"] == promoted.json()["revision"]
    assert author.post("/api/v1/environments/staging/rollback/", {}, format="json").status_code == 409
    assert author.post("/api/v1/environments/dev/promote/", {"to": "nowhere"}, format="json").status_code == 400
    assert author.post("/api/v1/environments/dev/promote/", {"to": "dev"}, format="json").status_code == 400
    activations = author.get("/api/v1/environments/staging/activations/").json()["results"]
    assert len(activations) == 1
    assert activations[0]["reason"] == "promoted from dev"
    actions = set(ObjectChange.objects.filter(object_type__model="environment").values_list("action", flat=True))
    assert {"create", "activate", "promote"} <= actions


def test_environment_validation(admin_client, environments):
    assert admin_client.post("/api/v1/environments/", {"name": "dev"}, format="json").status_code == 409
    assert admin_client.post("/api/v1/environments/", {"name": "Prod!"}, format="json").status_code == 400
    bad = {"policy_settings": {"protected_paths": ["prod"], "destructive_file_tools": [], "protected_branches": [],
                               "internal_email_domains": [], "rate_limits": {}}}
    response = admin_client.patch("/api/v1/environments/dev/", bad, format="json")
    assert response.status_code == 400
    assert "policy_settings" in response.json()


def test_environment_tokens_are_admin_only_and_shown_once(token_client, environments):
    assert token_client("policy_author").post("/api/v1/environments/prod/tokens/", {"name": "x"}, format="json").status_code == 403
    admin = token_client("admin")
    created = admin.post("/api/v1/environments/prod/tokens/", {"name": "opa-sidecars"}, format="json")
    assert created.status_code == 201
    plaintext = created.json()["token"]
    token = EnvironmentToken.objects.get(pk=created.json()["id"])
    assert plaintext not in token.key_hash
    listed = admin.get("/api/v1/environments/prod/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["opa-sidecars"]
    assert "token" not in listed[0]
    assert admin.delete(f"/api/v1/environments/prod/tokens/{token.pk}/").status_code == 204
    assert admin.get("/api/v1/environments/nowhere/tokens/").status_code == 404


def test_bundle_download_verifies_with_the_exported_public_key(token_client, environments):
    author = token_client("policy_author")
    bundle = author.post("/api/v1/environments/dev/publish/", {"override_reason": "first release"}, format="json").json()
    auditor = token_client("auditor")
    [key] = auditor.get("/api/v1/signing-keys/").json()["results"]
    assert key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "private" not in str(key).lower()
    download = auditor.get(f"/api/v1/bundles/{bundle['id']}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/gzip"
    files = archive.read_tar_gz(download.content)
    [token] = __import__("json").loads(files[".signatures.json"])["signatures"]
    claims = jwt.decode(token, key["public_key_pem"], algorithms=["RS256"])
    assert {f["name"] for f in claims["files"]} == set(files) - {".signatures.json"}
    listed = auditor.get("/api/v1/bundles/?environment__name=dev").json()
    assert listed["count"] == 1
    assert "archive" not in listed["results"][0]
