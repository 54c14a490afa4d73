"""The console is served at every page path; API, admin, OPA and health keep their routes."""

import pytest
from django.contrib.staticfiles import finders
from django.test import Client, override_settings

INDEX = '<!doctype html><html lang="en"><head><script type="module" src="/static/console/assets/index-abc.js">'


@pytest.fixture
def built_console(tmp_path):
    (tmp_path / "index.html").write_text(INDEX)
    with override_settings(STATICFILES_DIRS=[("console", str(tmp_path))], STATIC_ROOT=tmp_path / "collected"):
        finders.get_finder.cache_clear()
        yield tmp_path
    finders.get_finder.cache_clear()


@pytest.mark.parametrize("path", ["/", "/agents", "/agents/support-bot", "/policies/x/y", "/admin-tools", "/apis"])
def test_page_paths_answer_the_console_index(db, built_console, path):
    response = Client().get(path)
    assert response.status_code == 200
    assert response.content.decode() == INDEX
    assert response["Content-Type"].startswith("text/html")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert "csrftoken" in response.cookies


@pytest.mark.parametrize("path", ["/api/v1/nothing-here/", "/api/v2/agents/", "/api/", "/api/v1/agents/x/y/z/"])
def test_unknown_api_paths_answer_json_404(db, built_console, path):
    response = Client().get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert path in response.json()["detail"]


def test_known_api_path_without_slash_is_redirected(db, built_console):
    response = Client().get("/api/v1/agents?search=x")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/agents/?search=x"


def test_other_routes_keep_their_views(db, built_console):
    client = Client()
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/admin/").status_code == 302
    assert client.get("/api/v1/agents/").status_code == 401
    assert client.get("/static/console/missing.js").status_code == 404
    assert client.get("/opa/status").status_code != 200 or client.get("/opa/status").content != INDEX.encode()


def test_unbuilt_console_says_how_to_build_it(db, tmp_path):
    with override_settings(STATICFILES_DIRS=[], STATIC_ROOT=tmp_path):
        finders.get_finder.cache_clear()
        response = Client().get("/")
    finders.get_finder.cache_clear()
    assert response.status_code == 503
    assert b"make run" in response.content
