"""The rule search's table, `audit_auditevent_rule` (rule_id, time, event_id), on a live database.

`?rule=` in a time range was answered by a GIN index over the events' rule ids and day:
it finds the matching rows but every match of the range is then fetched and sorted (2 s
p99 over a week at 75 M events). A narrow table keyed (rule_id, time, event_id) gives a
page of 50 newest matches from 50 index entries, joined to their events by key.

In this migration's transaction (PostgreSQL; SQLite keeps its text match, and an empty table):
- the table, partitioned like the events (controlplane/audit/partitions.py): a month for
  each month the events have, a default partition; append-only by trigger (row and
  TRUNCATE), no privilege on a partition for anyone but the owner;
- the partition functions redefined: creating a month of events creates its rule month,
  dropping one drops it, and the rule table's months are never dropped on their own;
- the events table's grants (the app role's SELECT, INSERT) copied to it, and its owner;
- the rule rows of the existing events back-filled (one scan of the events: minutes at
  100 million events, while ingestion waits on the lock);
- the GIN index `audit_event_rule_time` dropped (the table replaces it).
"""

import importlib

from django.db import migrations, models

from controlplane.audit import partitions

OnSQLite = importlib.import_module("controlplane.audit.migrations.0008_partitioned_events").OnSQLite

EVENTS = "audit_auditevent"
RULES = partitions.rule_table(EVENTS)

GRANTS_AND_OWNER = f"""
DO $$
DECLARE
    r record;
    events_owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = '{EVENTS}'::regclass);
BEGIN
    -- The events' grants (the app role's SELECT, INSERT; none for UPDATE, DELETE, TRUNCATE),
    -- and no other (a default privilege of the owner may have granted more).
    FOR r IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS who
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
        WHERE c.oid = '{RULES}'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON {RULES} FROM %s', r.who);
    END LOOP;
    FOR r IN
        SELECT a.privilege_type AS privilege, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS who
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
        WHERE c.oid = '{EVENTS}'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON {RULES} TO %s', r.privilege, r.who);
    END LOOP;
    IF events_owner <> current_user THEN
        FOR r IN SELECT '{RULES}'::regclass AS name
                 UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = '{RULES}'::regclass LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO %I', r.name, events_owner);
        END LOOP;
    END IF;
END $$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # The create/drop functions now know the rule table (kept owners and grants: OR REPLACE).
    schema_editor.execute(partitions.functions_sql(EVENTS), params=None)
    schema_editor.execute(partitions.rule_table_sql(EVENTS), params=None)
    with schema_editor.connection.cursor() as cursor:
        for _, start, _ in partitions.monthly_partitions(cursor, EVENTS):
            cursor.execute(partitions.partition_sql(RULES, start))
    schema_editor.execute(GRANTS_AND_OWNER, params=None)
    schema_editor.execute(partitions.rule_rows_sql(EVENTS), params=None)
    schema_editor.execute(f"ANALYZE {RULES}", params=None)
    schema_editor.execute("DROP INDEX IF EXISTS audit_event_rule_time", params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TABLE IF EXISTS {RULES}", params=None)  # its partitions with it
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS audit_event_rule_time ON {EVENTS} USING gin "
        "(rule_ids jsonb_path_ops, ((time AT TIME ZONE 'UTC')::date)) WHERE rule_ids <> '[]'::jsonb",
        params=None,
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_partitioned_events")]

    operations = [
        migrations.RunPython(forward, backward),
        # The model everywhere; its table built here on SQLite only, where it stays empty
        # (SQLite's search matches the rule ids' text); on PostgreSQL `forward` built it.
        OnSQLite(
            migrations.CreateModel(
                name="EventRule",
                fields=[
                    (
                        "pk",
                        models.CompositePrimaryKey(
                            "rule_id", "time", "event", blank=True, editable=False, primary_key=True, serialize=False
                        ),
                    ),
                    ("rule_id", models.TextField()),
                    ("time", models.DateTimeField()),
                    (
                        "event",
                        models.ForeignKey(
                            db_constraint=False,
                            db_index=False,
                            on_delete=models.deletion.DO_NOTHING,
                            related_name="rule_hits",
                            to="audit.auditevent",
                        ),
                    ),
                ],
                options={"db_table": "audit_auditevent_rule"},
            ),
        ),
    ]
