"""Indexes for two filters at once on the live events (issue #20; docs/scale.md).

Each search index served one filter and the other was checked on every event it found:
at 100 M events an agent's calls of a tool read the agent's events until 50 matched (p99
946 ms), an agent's events naming a rule fetched the rule's matches of every agent (3.2 s).
Added on the partitioned parent, so on every partition (partitions.INDEXES):

- `audit_event_agent_tool` (agent_id, tool, time): an agent's calls of a tool;
- `audit_event_agent_effect` (agent_id, effect, time) and `audit_event_tool_effect`
  (tool, effect, time), denies and approvals only: an agent's or a tool's denies;
- `audit_event_agent_rules` (agent_id, time, id), events naming a rule only: an agent's
  events naming a rule, joined to the rule table's key.

PostgreSQL only (SQLite's single table is small). One transaction: each index is built
under a SHARE lock of the events (ingestion waits; reads go on), a sort per partition; the
three partial ones read every event but hold a few in a hundred. Each partition's new
indexes are then named after the parent's (warden_audit_protect_partition), as plans show.
"""

from django.db import migrations

from controlplane.audit import partitions

EVENTS = "audit_auditevent"
PREFIX = "audit_event"
ADDED = ("agent_tool", "agent_effect", "tool_effect", "agent_rules")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for suffix in ADDED:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {PREFIX}_{suffix} ON {EVENTS} {partitions.INDEXES[suffix]}", params=None
        )
    schema_editor.execute(
        f"SELECT warden_audit_protect_partition(inhrelid::regclass) FROM pg_inherits WHERE inhparent = '{EVENTS}'::regclass",
        params=None,
    )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for suffix in ADDED:
        schema_editor.execute(f"DROP INDEX IF EXISTS {PREFIX}_{suffix}", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0011_rule_rows_without_events")]

    operations = [migrations.RunPython(forward, backward)]
