"""The events' foreign keys to their agent and their batch dropped (PostgreSQL; issue #16).

A foreign key is a row trigger: each inserted event ran two lookups with a row lock (`FOR
KEY SHARE`) on its agent and its batch at commit, about 9 µs of PostgreSQL CPU per event
of a measured 52 (bench/audit_ingest.py, docs/audit.md). What they guarded holds without
them: the worker writes an event's `agent_id` and `batch_id` from the batch row it holds
locked in the same transaction; a batch is removed only by `warden_audit_retention_delete`
(the append-only trigger refuses every other DELETE), which removes no batch an event or a
quarantined record still names; and the agent stays protected by its batches' own foreign
key (Batch.agent, PROTECT), kept, as are the quarantined records' (few rows). Django still
refuses to delete a batch or an agent with events (`on_delete=PROTECT` is checked by the
ORM, not the database). SQLite keeps its constraints (state-only there).
"""

import django.db.models.deletion
from django.db import migrations, models

EVENTS = "audit_auditevent"
KEYS = {
    "audit_auditevent_agent_id_fk_identity_agent_id": "FOREIGN KEY (agent_id) REFERENCES identity_agent (id)",
    "audit_auditevent_batch_id_fk_audit_batch_id": "FOREIGN KEY (batch_id) REFERENCES audit_batch (id)",
}


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in KEYS:
        schema_editor.execute(f"ALTER TABLE {EVENTS} DROP CONSTRAINT IF EXISTS {name}", params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in KEYS.items():
        schema_editor.execute(
            f"ALTER TABLE {EVENTS} ADD CONSTRAINT {name} {definition} DEFERRABLE INITIALLY DEFERRED", params=None
        )


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_combined_filter_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="agent",
                    field=models.ForeignKey(
                        db_constraint=False, on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_events", to="identity.agent",
                    ),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="batch",
                    field=models.ForeignKey(
                        db_constraint=False, on_delete=django.db.models.deletion.PROTECT,
                        related_name="events", to="audit.batch",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
