"""The Django admin shows users, roles and tokens but cannot change them: a superuser there
could otherwise hand a token to another user (impersonation) or grant roles, unlogged."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from controlplane.accounts import services
from controlplane.accounts.models import APIToken
from controlplane.changelog.models import ObjectChange
from controlplane.identity.models import Agent
from tests.accounts.factories import UserFactory
from tests.identity.factories import AgentFactory


@pytest.fixture
def admin_browser(db):
    admin = UserFactory(username="site-admin", roles=[])
    services.update_user(admin, by=admin, roles=["admin"], password="a long demo passphrase 42")
    browser = Client()
    assert browser.login(username="site-admin", password="a long demo passphrase 42")
    return browser, admin


def test_the_admin_role_opens_the_django_admin_and_losing_it_closes_it(admin_browser):
    browser, admin = admin_browser
    admin.refresh_from_db()
    assert admin.is_staff and admin.is_superuser
    assert browser.get("/admin/").status_code == 200
    services.update_user(admin, by=admin, roles=["auditor"])
    admin.refresh_from_db()
    assert not admin.is_staff and not admin.is_superuser
    assert browser.get("/admin/").status_code == 302  # to the login page
    change = ObjectChange.objects.filter(object_id=str(admin.pk), action="update").first()
    assert change.prechange_data["admin_site"] is True and change.postchange_data["admin_site"] is False


def test_a_token_cannot_be_reassigned_edited_added_or_deleted_in_the_admin(admin_browser):
    browser, admin = admin_browser
    victim = UserFactory(username="victim", roles=["auditor"])
    token, _ = services.create_token(user=admin, name="mine", by=admin)
    url = f"/admin/accounts/apitoken/{token.pk}/change/"
    assert browser.get(url).status_code == 200  # visible
    response = browser.post(url, {"name": "stolen", "user": victim.pk})
    assert response.status_code == 403
    assert browser.post(f"/admin/accounts/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code == 403
    assert browser.get("/admin/accounts/apitoken/add/").status_code == 403
    token.refresh_from_db()
    assert token.user_id == admin.pk and token.name == "mine"
    assert APIToken.objects.filter(pk=token.pk).exists()
    assert b"key_hash" not in browser.get(url).content


def test_roles_and_users_cannot_be_changed_in_the_admin(admin_browser):
    browser, admin = admin_browser
    user = UserFactory(username="someone", roles=["auditor"])
    admin_group = Group.objects.get(name="admin")
    response = browser.post(f"/admin/auth/user/{user.pk}/change/", {"username": "someone", "groups": [admin_group.pk]})
    assert response.status_code == 403
    assert browser.post(f"/admin/auth/group/{admin_group.pk}/change/", {"name": "admin"}).status_code == 403
    assert browser.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 403
    assert list(user.groups.values_list("name", flat=True)) == ["auditor"]


def test_agents_are_read_only_in_the_admin(admin_browser):
    browser, _ = admin_browser
    agent = AgentFactory(name="bot")
    response = browser.post(f"/admin/identity/agent/{agent.pk}/change/", {"name": "bot", "status": "active"})
    assert response.status_code == 403
    assert Agent.objects.get(pk=agent.pk).status == "active"
