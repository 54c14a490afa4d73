"""PostgreSQL roles that make the audit log's protection hold against the application itself.

Four roles (docs/audit.md, "Database roles"):

- the owner runs migrations and owns every table; nobody else can alter or drop a table,
  disable a trigger or create one;
- the app role (the web process and the workers) reads and writes rows, but the
  append-only tables refuse it UPDATE, DELETE and TRUNCATE by privilege as well as by
  trigger (only the columns a protected row may still change are granted);
- the retention role is the app role plus EXECUTE on `warden_audit_retention_delete`;
- `warden_audit_deleter` (NOLOGIN) owns that SECURITY DEFINER function: the only way
  rows leave the audit tables; whole months of events leave only through the owner's
  `warden_audit_drop_partitions`, which only the retention role may call;
- nobody but the owner holds a privilege on an events partition or a partition of the
  rule search's table (rows go through the partitioned parents), so no one else can write,
  truncate, detach or drop one.

`setup_roles` is idempotent; run it again after migrations that add tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from psycopg import sql

from controlplane.settings.registry import setting

DELETER = "warden_audit_deleter"
RETENTION_FUNCTION = "warden_audit_retention_delete(bigint[], bigint[], bigint[])"
# Audit events partitioned by month (migration 0008): the owner's SECURITY DEFINER functions
# that drop expired months (retention role only) and create months ahead (app role).
EVENTS_TABLE = "audit_auditevent"
RULES_TABLE = "audit_auditevent_rule"  # its months are created and dropped with the events'
DROP_PARTITIONS = "warden_audit_drop_partitions(regclass, timestamptz)"
CREATE_PARTITIONS = "warden_audit_create_partitions(regclass, timestamptz, integer)"
PARTITION_FUNCTIONS = (DROP_PARTITIONS, CREATE_PARTITIONS, "warden_audit_protect_partition(regclass)",
                       "warden_refuse_truncate()")

# Append-only tables, and the columns of each the app may still UPDATE.
APPEND_ONLY: dict[str, tuple[str, ...]] = {
    "audit_auditevent": (),
    "audit_auditevent_rule": (),  # the rule search's rows (migration 0009), partitioned alike
    "audit_quarantinedrecord": (),
    "audit_checkpoint": (),
    "audit_checkpointkey": ("is_active", "encrypted_private_key"),  # deactivate, re-encrypt
    # Key material and validity history (migration audit 0006): revoke, retire, re-encrypt.
    "identity_agentkey": ("revoked_at", "revoked_reason", "created_by_id"),
    "bundles_signingkey": ("is_active", "retired_at", "encrypted_private_key"),
    "changelog_objectchange": ("user_id",),  # SET NULL when the user is deleted
    "policies_policyrevision": ("author_id",),
    # A batch keeps its body; only the verification's processing columns change.
    "audit_batch": ("status", "attempts", "started_at", "verified_at", "event_count", "quarantined_count", "problem"),
}


@dataclass(frozen=True)
class RoleNames:
    owner: str = "warden_owner"
    app: str = "warden_app"
    retention: str = "warden_retention"


def _create_role(cursor, name: str, *, login: bool, password: str | None) -> None:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
    verb = "ALTER" if cursor.fetchone() else "CREATE"
    statement = sql.SQL("{} ROLE {} {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
        sql.SQL(verb), sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")
    )
    if password:
        statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
    cursor.execute(statement)


def setup_roles(names: RoleNames = RoleNames()) -> list[str]:
    """Create or update the roles and hand out privileges in the current database.

    Run as a superuser (or a role with CREATEROLE that owns the tables). Passwords come from
    WARDEN_DB_OWNER_PASSWORD, WARDEN_DB_APP_PASSWORD and WARDEN_DB_RETENTION_PASSWORD when
    set. Returns what was done, one line per step.
    """
    done = []
    ident = sql.Identifier
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        for name, env in ((names.owner, "OWNER"), (names.app, "APP"), (names.retention, "RETENTION")):
            _create_role(cursor, name, login=True, password=setting(f"WARDEN_DB_{env}_PASSWORD") or None)
        _create_role(cursor, DELETER, login=False, password=None)
        done.append(f"roles {names.owner}, {names.app}, {names.retention}, {DELETER}")

        owner, app, retention = ident(names.owner), ident(names.app), ident(names.retention)
        cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}, {}").format(
            ident(database), owner, app, retention))
        cursor.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(ident(schema), owner))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}, {}").format(
            ident(schema), app, retention, ident(DELETER)))
        cursor.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(ident(schema)))

        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [schema])
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            cursor.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident(table), owner))
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [DROP_PARTITIONS])
        partitioned = cursor.fetchone()[0]
        functions = ("warden_append_only()", "warden_audit_batch_guard()", "warden_key_history()")
        for function in functions + (PARTITION_FUNCTIONS if partitioned else ()):
            cursor.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(function), owner))
        done.append(f"{len(tables)} tables owned by {names.owner}")

        cursor.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            ident(schema), app))
        cursor.execute(sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            ident(schema), app))
        for kind, privileges in (("TABLES", "SELECT, INSERT, UPDATE, DELETE"), ("SEQUENCES", "USAGE, SELECT, UPDATE")):
            cursor.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON {} TO {}").format(
                owner, ident(schema), sql.SQL(privileges), sql.SQL(kind), app))
        for table, columns in APPEND_ONLY.items():
            if table not in tables:
                continue
            cursor.execute(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON {} FROM {}").format(
                ident(table), app))
            if columns:
                cursor.execute(sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(
                    sql.SQL(", ").join(ident(c) for c in columns), ident(table), app))
        done.append(f"{names.app}: rows of every table; no UPDATE/DELETE/TRUNCATE on {', '.join(APPEND_ONLY)}")
        if partitioned:
            done.append(_partitions(cursor, names))

        cursor.execute(sql.SQL("GRANT {} TO {}").format(app, retention))
        cursor.execute(sql.SQL("GRANT SELECT, DELETE ON audit_auditevent, audit_quarantinedrecord, audit_batch TO {}")
                       .format(ident(DELETER)))
        cursor.execute(sql.SQL("GRANT SELECT ON audit_checkpoint TO {}").format(ident(DELETER)))
        if RULES_TABLE in tables:  # the events' rule rows go with them (migration 0010)
            cursor.execute(sql.SQL("GRANT SELECT, DELETE ON {} TO {}").format(ident(RULES_TABLE), ident(DELETER)))
        cursor.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(RETENTION_FUNCTION), ident(DELETER)))
        cursor.execute(
            "SELECT grantee.rolname FROM pg_proc p, aclexplode(p.proacl) a JOIN pg_roles grantee "
            "ON grantee.oid = a.grantee WHERE p.oid = %s::regprocedure AND a.privilege_type = 'EXECUTE'",
            [RETENTION_FUNCTION],
        )
        for (grantee,) in cursor.fetchall():
            if grantee not in (DELETER, names.retention):
                cursor.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(
                    sql.SQL(RETENTION_FUNCTION), ident(grantee)))
        cursor.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(sql.SQL(RETENTION_FUNCTION)))
        cursor.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(RETENTION_FUNCTION), retention))
        done.append(f"{names.retention}: {names.app}'s privileges and EXECUTE on {RETENTION_FUNCTION}, owned by {DELETER}")
    return done


def _partitions(cursor, names: RoleNames) -> str:
    """The events' partitions: no privilege for anyone but the owner (rows go through the
    parent); dropping months is the retention role's, creating months ahead the app's."""
    cursor.execute("SELECT warden_audit_protect_partition(inhrelid::regclass) FROM pg_inherits "
                   "WHERE inhparent = %s::regclass OR inhparent = to_regclass(%s)", [EVENTS_TABLE, RULES_TABLE])
    count = len(cursor.fetchall())
    for function, role in ((DROP_PARTITIONS, names.retention), (CREATE_PARTITIONS, names.app)):
        cursor.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(sql.SQL(function)))
        cursor.execute(
            "SELECT grantee.rolname FROM pg_proc p, aclexplode(p.proacl) a JOIN pg_roles grantee "
            "ON grantee.oid = a.grantee WHERE p.oid = %s::regprocedure AND a.privilege_type = 'EXECUTE' "
            "AND a.grantee <> p.proowner",
            [function],
        )
        for (grantee,) in cursor.fetchall():
            if grantee != role:
                cursor.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(
                    sql.SQL(function), sql.Identifier(grantee)))
        cursor.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), sql.Identifier(role)))
    return (f"{count} partitions of {EVENTS_TABLE} and {RULES_TABLE}: no privilege but the owner's; {names.retention} drops "
            f"expired months, {names.app} creates months ahead")
