"""Rule rows whose event is gone removed, so the rule table alone counts a rule's matches.

The events list's capped count of a rule search (`?rule=`, with or without a time range)
counts the rule table's rows (an index-only scan of its key) instead of fetching up to
10,001 events from disk (AuditEventFilter.rule_rows_to_count). That count is exact only if
every rule row has its event. Since 0010 retention removes them together; rows left behind
by row-by-row retention between 0009 and 0010 are removed here (PostgreSQL; SQLite has no
rule rows), as `warden_audit_deleter`, the one role the append-only trigger lets delete
(as in 0004 and 0010, the migrating role must be a superuser or a member of it). One
anti-join of the rule table against the events' key: minutes at 100 million events.
"""

from django.db import migrations

from controlplane.audit import partitions

EVENTS = "audit_auditevent"
RULES = partitions.rule_table(EVENTS)
DELETER = "warden_audit_deleter"

REMOVE_ORPHANS = f"""
DELETE FROM {RULES} AS r
    WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} AS e WHERE e.id = r.event_id AND e.time = r.time)
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        migrating_role = cursor.fetchone()[0]
        cursor.execute(f"SET LOCAL ROLE {DELETER}")
        cursor.execute(REMOVE_ORPHANS)
        cursor.execute("SELECT set_config('role', %s, true)", [migrating_role])  # back to who migrates


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_retention_removes_rule_rows")]

    # Backward: nothing to restore (a rule row without its event matched nothing).
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
