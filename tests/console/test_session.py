"""Cookie sessions for the console: login needs CSRF, unsafe API calls need CSRF,
logout ends access, and the form does not tell which usernames exist."""

import pytest
from django.test import Client

from controlplane.accounts import services as account_services

SESSION = "/api/v1/console/session/"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def person(user_with_role):
    user = user_with_role("auditor", username="ada")
    account_services.update_user(user, by=user, password=PASSWORD)
    return user


def csrf(browser) -> str:
    body = browser.get(SESSION).json()
    assert browser.cookies["csrftoken"].value
    return body["csrf_token"]


def log_in(browser, username="ada", password=PASSWORD):
    return browser.post(
        SESSION, {"username": username, "password": password}, content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf(browser),
    )


def test_anonymous_session_says_not_logged_in_and_sets_a_csrf_cookie(browser, db):
    body = browser.get(SESSION).json()
    assert body["authenticated"] is False and body["user"] is None
    assert body["csrf_token"] and "csrftoken" in browser.cookies


def test_login_with_the_right_password_opens_a_session_with_roles(browser, person):
    response = log_in(browser)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["authenticated"] is True
    assert body["user"]["username"] == "ada" and body["user"]["roles"] == ["auditor"]
    assert body["expires_in"] > 0
    assert browser.get("/api/v1/agents/").status_code == 200
    assert browser.get(SESSION).json()["user"]["username"] == "ada"


def test_login_without_csrf_token_is_refused(browser, person):
    browser.get(SESSION)
    response = browser.post(SESSION, {"username": "ada", "password": PASSWORD}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert browser.get("/api/v1/agents/").status_code == 401


@pytest.mark.parametrize("username, password", [("ada", "wrong"), ("nobody", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_field_error(browser, person, username, password):
    response = log_in(browser, username, password)
    assert response.status_code == 400
    assert response.json() == {"password": ["wrong username or password"]}


def test_inactive_user_cannot_log_in(browser, person, admin_user):
    account_services.update_user(person, by=admin_user, is_active=False)
    assert log_in(browser).status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"username": ["ada"], "password": PASSWORD},
        {"username": "ada", "password": {"x": 1}},
        {"username": "ada\x00", "password": PASSWORD},
        {"username": "a" * 151, "password": PASSWORD},
        {"username": "ada", "password": "p" * 129},
        {"username": "\ud800", "password": PASSWORD},
        {},
    ],
)
def test_hostile_login_bodies_get_field_errors_not_sessions(browser, person, body):
    response = browser.post(SESSION, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf(browser))
    assert response.status_code == 400
    assert set(response.json()) & {"username", "password"}
    assert browser.get("/api/v1/agents/").status_code == 401


def test_unsafe_api_request_in_a_session_needs_the_csrf_header(browser, person, user_with_role):
    admin = user_with_role("admin", username="root")
    account_services.update_user(admin, by=admin, password=PASSWORD)
    log_in(browser, "root")
    body = {"name": "console-token"}
    refused = browser.post("/api/v1/tokens/", body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    accepted = browser.post(
        "/api/v1/tokens/", body, content_type="application/json", HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value
    )
    assert accepted.status_code == 201


def test_roles_are_enforced_for_session_users_as_for_tokens(browser, person):
    log_in(browser)
    response = browser.post(
        "/api/v1/agents/", {"name": "x", "owner_email": "a@example.com"}, content_type="application/json",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )
    assert response.status_code == 403


def test_logout_ends_the_session(browser, person):
    log_in(browser)
    assert browser.delete(SESSION).status_code == 403  # no CSRF header
    response = browser.delete(SESSION, HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert response.status_code == 204
    assert browser.get("/api/v1/agents/").status_code == 401
    assert browser.get(SESSION).json()["authenticated"] is False


def test_session_endpoint_ignores_api_tokens(db, token_client):
    client = token_client("admin")
    assert client.get(SESSION).json()["authenticated"] is False
