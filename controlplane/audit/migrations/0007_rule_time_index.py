"""An index for the console's rule search: events naming a rule, in a time range.

`?rule=<id>` filters on `rule_ids @> '["<id>"]'` (a JSON array per event), usually with a
time range. A B-tree cannot index the elements of an array, so this is one GIN index over
both columns: the rule ids (jsonb_path_ops, for @>) and the time (btree_gin, for the range),
so PostgreSQL answers both conditions from the index instead of scanning every event of the
range or every event naming the rule. btree_gin is a trusted extension (PostgreSQL 13+):
the database owner may create it. Built CONCURRENTLY (so outside a transaction): on a
large log, audit ingestion goes on while the index builds. A no-op on SQLite.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_event_rule_time ON audit_auditevent USING gin (rule_ids jsonb_path_ops, time)",
]
BACKWARD = ["DROP INDEX CONCURRENTLY IF EXISTS audit_event_rule_time"]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("audit", "0006_key_history_append_only")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
