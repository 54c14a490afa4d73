"""Retention row by row removes the events' rule rows too; the partition functions, one loop
for the events and their rule table (PostgreSQL; a no-op on SQLite, whose rule table stays empty).

- `warden_audit_retention_delete` (migration 0004) deleted events row by row (agents with a
  shorter retention, the default partition) and left their rows in `audit_auditevent_rule`
  (migration 0009): a rule search then still joined nothing to them, but the rule table
  kept saying that an event naming that rule existed at that time, until its month was
  dropped. It now deletes them, by their key (rule_id, time, event_id) computed from the
  deleted events' rule ids as ingestion and the back-fill computed it, in the same
  statement; `warden_audit_deleter` gets DELETE on the rule table (the append-only trigger
  lets only it through, as on the events). Rule rows orphaned before this migration leave
  with their month.
- `warden_audit_create_partitions` and `warden_audit_drop_partitions` redefined from
  controlplane/audit/partitions.py (one loop body for both tables; same behaviour).

Replacing the retention function keeps its owner (`warden_audit_deleter`) and its grants;
as in 0004, the migrating role must be allowed to (a superuser, or a member of that role).
"""

from django.db import migrations

from controlplane.audit import partitions

EVENTS = "audit_auditevent"
RULES = partitions.rule_table(EVENTS)
DELETER = "warden_audit_deleter"
RETENTION_SIGNATURE = "warden_audit_retention_delete(event_ids bigint[], quarantined_ids bigint[], batch_ids bigint[])"


def retention_function_sql(schema: str, rule_rows: bool) -> str:
    """The retention function of 0004; with `rule_rows`, removing the events' rule rows too."""
    rules = f"""
    DELETE FROM {RULES} AS x USING ({partitions.rule_keys_sql(EVENTS, "AND e.id = ANY(event_ids)")}) AS k
        WHERE x.rule_id = k.rule_id AND x.time = k.time AND x.event_id = k.event_id;""" if rule_rows else ""
    return f"""
CREATE OR REPLACE FUNCTION {RETENTION_SIGNATURE}
RETURNS integer[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = "{schema}", pg_temp AS $$
DECLARE
    covered bigint;
    removed_events integer;
    removed_quarantined integer;
    removed_batches integer;
BEGIN
    -- Only checkpointed events: what was never checkpointed cannot vanish unrecorded.
    SELECT coalesce(max(last_event_id), 0) INTO covered FROM audit_checkpoint WHERE kind = 'events';
    IF EXISTS (SELECT 1 FROM unnest(event_ids) AS e(id) WHERE e.id > covered) THEN
        RAISE EXCEPTION 'retention removes only checkpointed events (up to id %)', covered
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM audit_quarantinedrecord WHERE id = ANY(quarantined_ids);
    GET DIAGNOSTICS removed_quarantined = ROW_COUNT;{rules}
    DELETE FROM audit_auditevent WHERE id = ANY(event_ids);
    GET DIAGNOSTICS removed_events = ROW_COUNT;
    DELETE FROM audit_batch b WHERE b.id = ANY(batch_ids) AND b.status = 'verified'
        AND NOT EXISTS (SELECT 1 FROM audit_auditevent e WHERE e.batch_id = b.id)
        AND NOT EXISTS (SELECT 1 FROM audit_quarantinedrecord q WHERE q.batch_id = b.id);
    GET DIAGNOSTICS removed_batches = ROW_COUNT;
    RETURN ARRAY[removed_events, removed_quarantined, removed_batches];
END
$$;
"""


def _schema(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return cursor.fetchone()[0]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"GRANT SELECT, DELETE ON {RULES} TO {DELETER}", params=None)
    schema_editor.execute(retention_function_sql(_schema(schema_editor), rule_rows=True), params=None)
    schema_editor.execute(partitions.functions_sql(EVENTS), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(retention_function_sql(_schema(schema_editor), rule_rows=True), params=None)
    schema_editor.execute(f"REVOKE DELETE ON {RULES} FROM {DELETER}", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0009_event_rules")]

    operations = [migrations.RunPython(forward, backward)]
