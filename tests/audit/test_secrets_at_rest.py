"""A secret an agent passes as an argument is masked before anything is stored: it is found
nowhere in the database, the witness or any API response, except in an export of original
records by a role explicitly allowed them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from django.db import connection

from controlplane.bundles.models import Environment
from controlplane.opa import services as opa_services
from tests.audit.conftest import jsonl, resign

SECRET = "sk-live-" + uuid.uuid4().hex  # unique, so a hit can only be this test's


def database_text() -> str:
    """Every row of every table as PostgreSQL (or SQLite) prints it; bytea as hex."""
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            if connection.vendor == "postgresql":
                cursor.execute(f"SELECT t::text FROM {quoted} AS t")
            else:
                cursor.execute(f"SELECT * FROM {quoted}")
            dump.extend(str(row) for row in cursor.fetchall())
    return "\n".join(dump)


def contains_secret(text: str) -> bool:
    return SECRET in text or SECRET.encode().hex() in text


def test_a_secret_in_arguments_is_nowhere_but_in_an_allowed_original_export(
    ship, signer, identity, auditor_client, admin_client, settings, audit_witness
):
    with signer.session(session_id="pay") as session:
        records = [
            session.intent("charge", {"amount": 12, "api_key": SECRET, "note": SECRET}),
            session.decision("allow", reasons=[], obligations={"mask": ["/action/args/note"]}),
            session.result("charged", token=SECRET),
        ]
    # A record with a bad signature is quarantined: its shown copy must be masked too.
    forged = resign(identity, dict(records[0], record_id=str(uuid.uuid4()), session_id="forged"))
    forged["signature"] = records[1]["signature"]
    assert ship(records + [forged]).status_code == 202
    environment = Environment.objects.create(name="prod", position=2)
    opa_services.ingest_decision_logs(environment, [{
        "decision_id": str(uuid.uuid4()), "labels": {"id": "opa-1"}, "path": "warden/decision",
        "timestamp": "2026-01-01T00:00:00Z", "input": {"action": {"args": {"password": SECRET}}},
        "result": {"effect": "allow"},
    }])

    assert not contains_secret(database_text()), [row[:300] for row in database_text().splitlines() if contains_secret(row)]
    assert not contains_secret(Path(audit_witness).read_text())
    for client, url in (
        (auditor_client, "/api/v1/audit/events/"),
        (auditor_client, "/api/v1/audit/quarantine/"),
        (auditor_client, "/api/v1/audit/batches/"),
        (auditor_client, "/api/v1/audit/timeline/?agent=billing-bot&session=pay"),
        (auditor_client, "/api/v1/opa/decisions/"),
        (admin_client, "/api/v1/audit/events/export/?session=pay"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert not contains_secret(body.decode()), url
    for event_id in json.loads(auditor_client.get("/api/v1/audit/events/").content)["results"]:
        assert not contains_secret(auditor_client.get(f"/api/v1/audit/events/{event_id['id']}/").content.decode())
    assert admin_client.get("/api/v1/audit/events/export/?session=pay&originals=true").status_code == 403

    settings.WARDEN_AUDIT_ORIGINALS_ROLES = ("admin",)
    exported = jsonl(admin_client.get("/api/v1/audit/events/export/?session=pay&originals=true"))
    assert exported[0]["payload"]["args"]["api_key"] == SECRET and exported == records
