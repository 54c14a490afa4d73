"""Append-only audit tables, enforced by PostgreSQL (a no-op on SQLite, the embedded default).

UPDATE and DELETE on events, quarantined records and checkpoints are refused. DELETE is
let through only in a transaction that ran `SET LOCAL warden.audit_retention = 'on'`
(the retention job). A batch may change only its processing columns (status, counts,
attempts); its agent, key, body and arrival time never change.
"""

from django.db import migrations

TABLES = ("audit_auditevent", "audit_quarantinedrecord", "audit_checkpoint")

FORWARD = """
CREATE OR REPLACE FUNCTION warden_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('warden.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % refused (only the retention job deletes)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION warden_audit_batch_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('warden.audit_retention', true) = 'on' THEN
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
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION warden_audit_append_only();
"""
    for table in TABLES
) + """
CREATE TRIGGER audit_batch_guard BEFORE UPDATE OR DELETE ON audit_batch
    FOR EACH ROW EXECUTE FUNCTION warden_audit_batch_guard();
"""

BACKWARD = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in TABLES) + """
DROP TRIGGER IF EXISTS audit_batch_guard ON audit_batch;
DROP FUNCTION IF EXISTS warden_audit_append_only();
DROP FUNCTION IF EXISTS warden_audit_batch_guard();
"""


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
