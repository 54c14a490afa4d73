"""Fixtures shared by the whole suite: one user and API client per role."""

import pytest
from rest_framework.test import APIClient

from controlplane.accounts import services as account_services
from controlplane.accounts.roles import ALL_ROLES
from tests.accounts.factories import UserFactory


@pytest.fixture(autouse=True)
def audit_witness(tmp_path_factory, settings) -> str:
    """Each test has its own audit witness file: the database rolls back, a shared file would not."""
    settings.WARDEN_AUDIT_WITNESS_PATH = str(tmp_path_factory.mktemp("witness") / "audit-witness.jsonl")
    return settings.WARDEN_AUDIT_WITNESS_PATH


@pytest.fixture
def user_with_role(db):
    def make(role: str | None, username: str | None = None):
        roles = [role] if role else []
        return UserFactory(username=username or f"{role or 'norole'}-user", roles=roles)

    return make


@pytest.fixture
def token_client(user_with_role):
    """An APIClient authenticated with a real API token of a user holding `role`."""

    def make(role: str | None):
        user = user_with_role(role)
        _, plaintext = account_services.create_token(user=user, name="test", by=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
        client.user = user
        return client

    return make


@pytest.fixture
def admin_client(token_client):
    return token_client("admin")


@pytest.fixture
def auditor_client(token_client):
    return token_client("auditor")


@pytest.fixture
def anonymous_client():
    return APIClient()


@pytest.fixture
def admin_user(user_with_role):
    return user_with_role("admin")


@pytest.fixture(params=ALL_ROLES)
def any_role_client(request, token_client):
    return token_client(request.param)
