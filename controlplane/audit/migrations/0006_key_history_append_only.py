"""Key material and validity history never change (PostgreSQL; a no-op on SQLite).

Agent keys verify signed audit records, bundle signing keys sign what engines enforce, and
checkpoint keys sign the audit log's heads: a role that could rewrite a public key, move a
revocation back or "un-revoke" a key could make forged evidence verify. So no row of these
tables is ever deleted, and an UPDATE may only:

- agent keys: set `revoked_at` once (NULL to a time) with its `revoked_reason` in the same
  statement; `created_by_id` may become NULL when the user is deleted;
- bundle signing keys: retire (`is_active` true to false, `retired_at` set once);
- bundle and checkpoint signing keys: re-encrypt `encrypted_private_key` (`manage.py
  rotate_encryption_key`): a different private key under an unchanged public key signs
  nothing that verifies;
- checkpoint keys: deactivate (`is_active` true to false).

Everything else (key ids, public keys, owners, creation times) is frozen. `setup_db_roles`
also grants the app role UPDATE on exactly these columns (controlplane/audit/database_roles.py).
"""

from django.db import migrations

# table -> "column:how" rules; any column not named must stay as it is.
KEY_TABLES = {
    "identity_agentkey": ("revoked_at:once", "revoked_reason:with=revoked_at", "created_by_id:to-null"),
    "bundles_signingkey": ("is_active:off", "retired_at:once", "encrypted_private_key:re-encrypt"),
    "audit_checkpointkey": ("is_active:off", "encrypted_private_key:re-encrypt"),
}

FUNCTION = """
CREATE OR REPLACE FUNCTION warden_key_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb := to_jsonb(OLD);
    new_row jsonb;
    before jsonb := to_jsonb(OLD);  -- what is left to compare once the rules' columns are out
    after jsonb;
    rule text;
    col text;
    how text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'table % keeps every key: DELETE refused', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege', HINT = 'revoke or retire the key instead';
    END IF;
    new_row := to_jsonb(NEW);
    after := new_row;
    FOREACH rule IN ARRAY TG_ARGV LOOP
        col := split_part(rule, ':', 1);
        how := split_part(rule, ':', 2);
        -- coalesce: a rule that cannot be judged (an unknown column) refuses the change.
        IF (new_row -> col) IS DISTINCT FROM (old_row -> col) AND NOT coalesce(
            how = 're-encrypt'
            OR (how = 'once' AND old_row -> col = 'null'::jsonb)
            OR (how = 'off' AND old_row -> col = 'true'::jsonb AND new_row -> col = 'false'::jsonb)
            OR (how = 'to-null' AND new_row -> col = 'null'::jsonb)
            OR (how LIKE 'with=%' AND old_row -> substr(how, 6) = 'null'::jsonb
                AND new_row -> substr(how, 6) <> 'null'::jsonb),
            false
        ) THEN
            RAISE EXCEPTION 'table % keeps its keys'' history: % may not change from % to %',
                TG_TABLE_NAME, col, old_row -> col, new_row -> col
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        before := before - col;
        after := after - col;
    END LOOP;
    IF after IS DISTINCT FROM before THEN
        RAISE EXCEPTION 'table % keeps its keys'' material: only revocation, retirement and re-encryption change a row',
            TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
"""


def forward_sql() -> str:
    return FUNCTION + "".join(
        f"""
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION warden_key_history({", ".join(f"'{rule}'" for rule in rules)});
"""
        for table, rules in KEY_TABLES.items()
    )


# Back to 0004's trigger on checkpoint keys (deactivation only); the other two had none.
BACKWARD = """
DROP TRIGGER IF EXISTS identity_agentkey_append_only ON identity_agentkey;
DROP TRIGGER IF EXISTS bundles_signingkey_append_only ON bundles_signingkey;
DROP TRIGGER IF EXISTS audit_checkpointkey_append_only ON audit_checkpointkey;
CREATE TRIGGER audit_checkpointkey_append_only BEFORE UPDATE OR DELETE ON audit_checkpointkey
    FOR EACH ROW EXECUTE FUNCTION warden_append_only('keep', 'is_active', 'false');
DROP FUNCTION IF EXISTS warden_key_history();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(forward_sql(), params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_audit_export"),
        ("identity", "0003_agent_sandbox_profile"),
        ("bundles", "0003_bundle_parts"),
    ]

    operations = [migrations.RunPython(forward, backward)]
