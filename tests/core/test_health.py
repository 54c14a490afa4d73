import pytest

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_ok_without_authentication(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_schema_and_docs_are_public(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # Swagger UI is served from our own static files, not a CDN.
    assert b"drf_spectacular_sidecar" in docs.content
