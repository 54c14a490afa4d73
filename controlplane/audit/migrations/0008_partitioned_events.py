"""Audit events partitioned by month (PostgreSQL declarative partitioning), on a live table.

The rows of `audit_auditevent` move, in this migration's transaction, into a table of the
same name partitioned by RANGE (time) (controlplane/audit/partitions.py):

- keys: PRIMARY KEY (id, time) and UNIQUE (agent_id, record_id, time): a partitioned
  table's unique constraints must include the partition key. A replayed record (same
  record id, same signed time) is still refused by the database; a record id reused with
  another time is refused by verification, which looks the record id up in every
  partition under the agent's batch order (`storage.existing_record_ids`);
- one partition a month for every month that has rows, the previous month to three ahead,
  and a DEFAULT partition for a row whose month has none yet (never refused); the beat
  task `audit.create_partitions` keeps months created ahead;
- every index of the console's searches, including 0007's (rule ids, time) GIN index,
  on the parent, so on every partition, named `audit_event_<name>_y2026m11`;
- append-only per partition: the parent's row trigger (cloned onto each partition), a
  TRUNCATE trigger on each, and no privilege on a partition for anyone but its owner
  (rows go through the parent, whose grants are carried over from the old table);
- the id sequence continues where the old one stopped, so checkpoints go on.

SQLite (the embedded default) keeps its one table: only the unique constraint and the
indexes change there.
"""

from django.db import migrations, models
from django.db.migrations.operations.base import Operation

from controlplane.audit import partitions

MONTHS_AHEAD = 3
OLD = "audit_auditevent_unpartitioned"
COLUMNS = (
    "id, record_id, key_id, session_id, seq, kind, time, tool, effect, rule_ids, payload, masked_paths, prev_hash, "
    "record_hash, sealed_record, stored_at, agent_id, batch_id"
)

FREE_NAMES = f"""
ALTER TABLE audit_auditevent RENAME TO {OLD};
DO $$
DECLARE
    r record;
    old_sequence text := pg_get_serial_sequence('{OLD}', 'id');
BEGIN
    IF old_sequence IS NOT NULL THEN
        EXECUTE format('ALTER SEQUENCE %s RENAME TO {OLD}_id_seq', old_sequence);
    END IF;
    FOR r IN SELECT conname FROM pg_constraint WHERE conrelid = '{OLD}'::regclass AND contype IN ('p', 'u', 'f') LOOP
        EXECUTE format('ALTER TABLE {OLD} DROP CONSTRAINT %I', r.conname);
    END LOOP;
    FOR r IN SELECT indexrelid::regclass AS name FROM pg_index WHERE indrelid = '{OLD}'::regclass LOOP
        EXECUTE format('DROP INDEX %s', r.name);
    END LOOP;
END $$;
"""

KEYS_AND_GRANTS = f"""
ALTER TABLE audit_auditevent ADD CONSTRAINT audit_auditevent_agent_id_fk_identity_agent_id
    FOREIGN KEY (agent_id) REFERENCES identity_agent (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE audit_auditevent ADD CONSTRAINT audit_auditevent_batch_id_fk_audit_batch_id
    FOREIGN KEY (batch_id) REFERENCES audit_batch (id) DEFERRABLE INITIALLY DEFERRED;
DO $$
DECLARE
    r record;
BEGIN
    -- The old table's grants (app role, warden_audit_deleter) on the new parent and sequence.
    FOR r IN
        SELECT a.privilege_type AS privilege, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS who
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
        WHERE c.oid = '{OLD}'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON audit_auditevent TO %s', r.privilege, r.who);
    END LOOP;
    FOR r IN
        SELECT a.privilege_type AS privilege, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END AS who
        FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
        WHERE c.oid = '{OLD}_id_seq'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON SEQUENCE %s TO %s', r.privilege, pg_get_serial_sequence('audit_auditevent', 'id'), r.who);
    END LOOP;
END $$;
"""

COPY_ROWS = f"""
SELECT warden_audit_create_partitions('audit_auditevent', month, 1)
    FROM (SELECT DISTINCT date_trunc('month', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month FROM {OLD}) AS m;
SELECT warden_audit_create_partitions('audit_auditevent', date_trunc('month', now() AT TIME ZONE 'UTC')
    AT TIME ZONE 'UTC' - interval '1 month', {MONTHS_AHEAD + 2});
INSERT INTO audit_auditevent ({COLUMNS}) SELECT {COLUMNS} FROM {OLD};
SELECT CASE WHEN s.is_called THEN setval(pg_get_serial_sequence('audit_auditevent', 'id'), s.last_value) END
    FROM {OLD}_id_seq AS s;
"""

OWNER = f"""
DO $$
DECLARE
    old_owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = '{OLD}'::regclass);
    r record;
BEGIN
    IF old_owner <> current_user THEN
        FOR r IN SELECT 'audit_auditevent'::regclass AS name
                 UNION ALL SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_auditevent'::regclass LOOP
            EXECUTE format('ALTER TABLE %s OWNER TO %I', r.name, old_owner);
        END LOOP;
        FOR r IN SELECT unnest(ARRAY['warden_audit_drop_partitions(regclass, timestamptz)',
                                     'warden_audit_create_partitions(regclass, timestamptz, integer)',
                                     'warden_audit_protect_partition(regclass)',
                                     'warden_refuse_truncate()']) AS name LOOP
            EXECUTE format('ALTER FUNCTION %s OWNER TO %I', r.name, old_owner);
        END LOOP;
    END IF;
END $$;
DROP TABLE {OLD};
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FREE_NAMES, params=None)
    schema_editor.execute(partitions.create_table_sql("audit_auditevent", index_prefix="audit_event"), params=None)
    schema_editor.execute(partitions.default_partition_sql("audit_auditevent"), params=None)
    schema_editor.execute(KEYS_AND_GRANTS, params=None)
    schema_editor.execute(COPY_ROWS, params=None)
    schema_editor.execute(OWNER, params=None)


class OnSQLite(Operation):
    """Apply `operation` to the model state everywhere, to the schema on SQLite only (on
    PostgreSQL, `partition` built the table with these already)."""

    reduces_to_sql = False

    def __init__(self, operation):
        self.operation = operation

    def deconstruct(self):
        return (self.__class__.__name__, [self.operation], {})

    def state_forwards(self, app_label, state):
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        return f"{self.operation.describe()} (SQLite; PostgreSQL: in the partitioned table)"


class Migration(migrations.Migration):
    dependencies = [("audit", "0007_rule_time_index"), ("identity", "0002_agent_allowlists")]

    operations = [
        migrations.RunPython(partition),
        OnSQLite(migrations.RemoveConstraint(model_name="auditevent", name="audit_event_record_id_per_agent")),
        OnSQLite(migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(
                fields=("agent", "record_id", "time"), name="audit_event_record_id_per_agent"
            ),
        )),
        OnSQLite(migrations.RemoveIndex(model_name="auditevent", name="audit_event_stored")),
        OnSQLite(migrations.AddIndex(
            model_name="auditevent", index=models.Index(fields=["agent", "time"], name="audit_event_agent_time")
        )),
    ]
