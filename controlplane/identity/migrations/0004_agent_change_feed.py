"""The agent change feed (AgentChange): triggers on the agent and key tables record, in the
writing transaction, which agent each write touched (PostgreSQL only; elsewhere the bundle
builder reads every agent)."""

from django.db import migrations, models

TRIGGERS = """
CREATE FUNCTION warden_agent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO identity_agentchange (agent_name, xid, created_at)
        VALUES ('', pg_current_xact_id()::text::bigint, now());
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'identity_agent' THEN
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO identity_agentchange (agent_name, xid, created_at)
            VALUES (OLD.name, pg_current_xact_id()::text::bigint, now());
        END IF;
        IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name) THEN
            INSERT INTO identity_agentchange (agent_name, xid, created_at)
            VALUES (NEW.name, pg_current_xact_id()::text::bigint, now());
        END IF;
    ELSE  -- identity_agentkey: the agent whose key it is (and was)
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO identity_agentchange (agent_name, xid, created_at)
            SELECT a.name, pg_current_xact_id()::text::bigint, now() FROM identity_agent a WHERE a.id = OLD.agent_id;
        END IF;
        IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.agent_id IS DISTINCT FROM OLD.agent_id) THEN
            INSERT INTO identity_agentchange (agent_name, xid, created_at)
            SELECT a.name, pg_current_xact_id()::text::bigint, now() FROM identity_agent a WHERE a.id = NEW.agent_id;
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER warden_agent_changed AFTER INSERT OR UPDATE OR DELETE ON identity_agent
    FOR EACH ROW EXECUTE FUNCTION warden_agent_changed();
CREATE TRIGGER warden_agent_truncated AFTER TRUNCATE ON identity_agent
    FOR EACH STATEMENT EXECUTE FUNCTION warden_agent_changed();
CREATE TRIGGER warden_agent_key_changed AFTER INSERT OR UPDATE OR DELETE ON identity_agentkey
    FOR EACH ROW EXECUTE FUNCTION warden_agent_changed();
CREATE TRIGGER warden_agent_key_truncated AFTER TRUNCATE ON identity_agentkey
    FOR EACH STATEMENT EXECUTE FUNCTION warden_agent_changed();
"""

DROP = """
DROP TRIGGER IF EXISTS warden_agent_changed ON identity_agent;
DROP TRIGGER IF EXISTS warden_agent_truncated ON identity_agent;
DROP TRIGGER IF EXISTS warden_agent_key_changed ON identity_agentkey;
DROP TRIGGER IF EXISTS warden_agent_key_truncated ON identity_agentkey;
DROP FUNCTION IF EXISTS warden_agent_changed();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGERS)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("identity", "0003_agent_sandbox_profile"),
    ]

    operations = [
        migrations.CreateModel(
            name="AgentChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("agent_name", models.CharField(help_text="'' after a TRUNCATE: every agent may have changed.",
                                                max_length=64)),
                ("xid", models.BigIntegerField(db_index=True)),
                ("created_at", models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
