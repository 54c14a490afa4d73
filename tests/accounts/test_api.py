"""Users, roles and API tokens through the API, and token authentication itself."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.accounts import services
from controlplane.accounts.models import APIToken, hash_token
from controlplane.changelog.models import ObjectChange
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


# --- token authentication ------------------------------------------------------------------

def test_token_is_stored_only_as_a_hash_and_shown_once(admin_client):
    response = admin_client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    plaintext = response.json()["token"]
    assert plaintext.startswith("wdn_")
    token = APIToken.objects.get(pk=response.json()["id"])
    assert token.key_hash == hash_token(plaintext)
    assert plaintext not in str(APIToken.objects.filter(pk=token.pk).values().get())
    listed = admin_client.get(f"/api/v1/tokens/{token.pk}/").json()
    assert "token" not in listed
    change = ObjectChange.objects.get(object_id=str(token.pk), action="create")
    assert "key_hash" not in change.postchange_data
    assert plaintext not in str(change.postchange_data)


def test_new_token_authenticates_and_bearer_keyword_works(admin_client):
    plaintext = admin_client.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()["token"]
    assert client_with(plaintext).get("/api/v1/users/me/").json()["username"] == admin_client.user.username
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert bearer.get("/api/v1/agents/").status_code == 200


def test_revoked_token_is_refused(admin_client):
    created = admin_client.post("/api/v1/tokens/", {"name": "short-lived"}, format="json").json()
    assert admin_client.delete(f"/api/v1/tokens/{created['id']}/").status_code == 204
    response = client_with(created["token"]).get("/api/v1/agents/")
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid, expired or revoked token"
    assert admin_client.delete(f"/api/v1/tokens/{created['id']}/").status_code == 409


def test_expired_token_is_refused(admin_user):
    token, plaintext = services.create_token(user=admin_user, name="old", by=admin_user)
    APIToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client_with(plaintext).get("/api/v1/agents/").status_code == 401


def test_token_of_deactivated_user_is_refused(admin_client, user_with_role):
    auditor = user_with_role("auditor")
    _, plaintext = services.create_token(user=auditor, name="t", by=auditor)
    assert client_with(plaintext).get("/api/v1/agents/").status_code == 200
    assert admin_client.patch(f"/api/v1/users/{auditor.username}/", {"is_active": False}, format="json").status_code == 200
    assert client_with(plaintext).get("/api/v1/agents/").status_code == 401


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token wdn_unknown", "Token \u00e9\u00e9"])
def test_malformed_or_unknown_token_is_a_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/agents/").status_code == 401


def test_expiry_in_the_past_is_refused(admin_client):
    response = admin_client.post(
        "/api/v1/tokens/", {"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()


def test_users_see_only_their_own_tokens_and_admins_see_all(token_client):
    auditor = token_client("auditor")
    admin = token_client("admin")
    auditor.post("/api/v1/tokens/", {"name": "mine"}, format="json")
    mine = {t["name"] for t in auditor.get("/api/v1/tokens/").json()["results"]}
    assert mine == {"test", "mine"}
    admin_view = admin.get(f"/api/v1/tokens/?user={auditor.user.username}").json()["results"]
    assert {t["name"] for t in admin_view} == {"test", "mine"}
    other = APIToken.objects.filter(user=admin.user).first()
    assert auditor.delete(f"/api/v1/tokens/{other.pk}/").status_code == 404


def test_only_admins_issue_tokens_to_other_users(token_client):
    service = UserFactory(username="deployer")
    assert token_client("approver").post(
        "/api/v1/tokens/", {"name": "x", "user": "deployer"}, format="json"
    ).status_code == 400
    response = token_client("admin").post("/api/v1/tokens/", {"name": "x", "user": "deployer"}, format="json")
    assert response.status_code == 201
    assert response.json()["user"] == "deployer"
    assert APIToken.objects.filter(user=service).count() == 1


# --- users and roles -----------------------------------------------------------------------

def test_admin_creates_service_account_with_role(admin_client):
    response = admin_client.post(
        "/api/v1/users/", {"username": "policy-bot", "roles": ["policy_author"]}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["roles"] == ["policy_author"]
    change = ObjectChange.objects.get(action="create", object_repr="policy-bot")
    assert change.postchange_data["roles"] == ["policy_author"]


def test_role_change_is_logged_with_before_and_after(admin_client):
    UserFactory(username="carol", roles=["auditor"])
    response = admin_client.patch("/api/v1/users/carol/", {"roles": ["approver", "auditor"]}, format="json")
    assert response.status_code == 200
    assert response.json()["roles"] == ["approver", "auditor"]
    change = ObjectChange.objects.get(action="update", object_repr="carol")
    assert change.prechange_data["roles"] == ["auditor"]
    assert change.postchange_data["roles"] == ["approver", "auditor"]


def test_password_never_reaches_the_change_log(admin_client):
    response = admin_client.post(
        "/api/v1/users/", {"username": "dana", "password": "correct-horse-battery-staple"}, format="json"
    )
    assert response.status_code == 201
    for change in ObjectChange.objects.all():
        assert "correct-horse" not in str(change.prechange_data) + str(change.postchange_data)
        assert "password" not in (change.postchange_data or {})


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "x", "roles": ["superuser"]}, "roles"),
        ({"username": "bad name!"}, "username"),
        ({"username": "me"}, "username"),
        ({"username": "weak", "password": "123"}, "password"),
        ({"roles": ["admin"]}, "username"),
    ],
)
def test_bad_user_input_is_a_400_naming_the_field(admin_client, body, field):
    response = admin_client.post("/api/v1/users/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_duplicate_username_is_a_409(admin_client):
    UserFactory(username="erin")
    assert admin_client.post("/api/v1/users/", {"username": "ERIN"}, format="json").status_code == 409


def test_admin_cannot_deactivate_themselves(admin_client):
    response = admin_client.patch(f"/api/v1/users/{admin_client.user.username}/", {"is_active": False}, format="json")
    assert response.status_code == 400
    assert "is_active" in response.json()


@pytest.mark.parametrize("role", ["policy_author", "approver", "auditor"])
def test_non_admins_cannot_list_users_but_can_read_themselves(token_client, role):
    client = token_client(role)
    assert client.get("/api/v1/users/").status_code == 403
    me = client.get("/api/v1/users/me/").json()
    assert me["roles"] == [role]


def test_superuser_holds_admin_role(db):
    root = UserFactory(username="root", is_superuser=True)
    _, plaintext = services.create_token(user=root, name="t", by=root)
    assert client_with(plaintext).post("/api/v1/users/", {"username": "newbie"}, format="json").status_code == 201
