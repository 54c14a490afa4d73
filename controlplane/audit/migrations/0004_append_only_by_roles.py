"""Append-only protection that no session setting unlocks (PostgreSQL; a no-op on SQLite).

- Audit events, quarantined records, checkpoints, checkpoint keys, the change log and
  policy revisions refuse UPDATE and DELETE in a trigger. The only exceptions: a user
  FK may become NULL when the user is deleted (change log, revisions), a checkpoint key
  may be deactivated, and the retention function may delete events, quarantined records
  and batches.
- Retention deletes go through `warden_audit_retention_delete(...)`, a SECURITY DEFINER
  function owned by the NOLOGIN role `warden_audit_deleter`; the triggers let a DELETE
  through only when `current_user` is that role, i.e. inside the function. EXECUTE is
  revoked from PUBLIC: `manage.py setup_db_roles` grants it to the retention role only.
- The old `SET LOCAL warden.audit_retention = 'on'` bypass is gone.

The migrating role needs CREATEROLE (or run `manage.py setup_db_roles` first, which
creates `warden_audit_deleter`). Policy revisions belong to the policies app; their
trigger is installed here, after the policies and change log tables exist.
"""

from django.db import migrations

DELETER = "warden_audit_deleter"
RETENTION_FUNCTION = "warden_audit_retention_delete(bigint[], bigint[], bigint[])"
RETENTION_SIGNATURE = "warden_audit_retention_delete(event_ids bigint[], quarantined_ids bigint[], batch_ids bigint[])"

# table -> trigger arguments: deletable by retention?, a column that may change once, to what (JSON)
PROTECTED = {
    "audit_auditevent": ("retention",),
    "audit_quarantinedrecord": ("retention",),
    "audit_checkpoint": ("keep",),
    "audit_checkpointkey": ("keep", "is_active", "false"),
    "changelog_objectchange": ("keep", "user_id", "null"),
    "policies_policyrevision": ("keep", "author_id", "null"),
}


def forward_sql(schema: str) -> str:
    triggers = "".join(
        f"""
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION warden_append_only({", ".join(f"'{arg}'" for arg in args)});
"""
        for table, args in PROTECTED.items()
    )
    return f"""
DO $$ BEGIN
    CREATE ROLE {DELETER} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

CREATE OR REPLACE FUNCTION warden_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deletable boolean := coalesce(TG_ARGV[0], '') = 'retention';
    settable text := TG_ARGV[1];
BEGIN
    IF TG_OP = 'DELETE' AND deletable AND current_user = '{DELETER}' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND settable IS NOT NULL
        AND (to_jsonb(NEW) - settable) = (to_jsonb(OLD) - settable)
        AND (to_jsonb(NEW) -> settable) = TG_ARGV[2]::jsonb THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = CASE WHEN deletable
                     THEN 'only the retention job removes rows, through {RETENTION_FUNCTION}'
                     ELSE 'rows of this table are never changed or removed' END;
END
$$;

CREATE OR REPLACE FUNCTION warden_audit_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_user = '{DELETER}' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit batches are deleted only by the retention job' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.agent_id IS DISTINCT FROM OLD.agent_id
        OR NEW.key_id IS DISTINCT FROM OLD.key_id OR NEW.body IS DISTINCT FROM OLD.body
        OR NEW.record_count IS DISTINCT FROM OLD.record_count OR NEW.received_at IS DISTINCT FROM OLD.received_at THEN
        RAISE EXCEPTION 'an audit batch keeps the records as received: only its processing columns change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
{triggers}
DROP FUNCTION IF EXISTS warden_audit_append_only();

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
    GET DIAGNOSTICS removed_quarantined = ROW_COUNT;
    DELETE FROM audit_auditevent WHERE id = ANY(event_ids);
    GET DIAGNOSTICS removed_events = ROW_COUNT;
    DELETE FROM audit_batch b WHERE b.id = ANY(batch_ids) AND b.status = 'verified'
        AND NOT EXISTS (SELECT 1 FROM audit_auditevent e WHERE e.batch_id = b.id)
        AND NOT EXISTS (SELECT 1 FROM audit_quarantinedrecord q WHERE q.batch_id = b.id);
    GET DIAGNOSTICS removed_batches = ROW_COUNT;
    RETURN ARRAY[removed_events, removed_quarantined, removed_batches];
END
$$;

GRANT USAGE ON SCHEMA "{schema}" TO {DELETER};
GRANT SELECT, DELETE ON audit_auditevent, audit_quarantinedrecord, audit_batch TO {DELETER};
GRANT SELECT ON audit_checkpoint TO {DELETER};
ALTER FUNCTION {RETENTION_FUNCTION} OWNER TO {DELETER};
REVOKE ALL ON FUNCTION {RETENTION_FUNCTION} FROM PUBLIC;
-- Until setup_db_roles hands it to the retention role, the role that migrates (and, in a
-- set-up without separate roles, runs the app) may call it.
GRANT EXECUTE ON FUNCTION {RETENTION_FUNCTION} TO CURRENT_USER;
"""


BACKWARD = "".join(
    f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in PROTECTED
) + f"""
DROP FUNCTION IF EXISTS {RETENTION_FUNCTION};
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('warden.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused (only the retention job deletes)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only();
"""
    for table in ("audit_auditevent", "audit_quarantinedrecord", "audit_checkpoint")
) + "DROP FUNCTION IF EXISTS warden_append_only();\n"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    schema_editor.execute(forward_sql(schema), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_record_ids_per_agent_parked_batches_sealed_bodies"),
        ("changelog", "0002_alter_objectchange_action"),
        ("policies", "0001_initial"),
    ]

    operations = [migrations.RunPython(forward, backward)]
