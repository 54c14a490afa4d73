"""Record ids unique per agent (not across agents), parked batches, the `unstorable`
quarantine reason, and batch bodies encrypted at rest (existing bodies are sealed here)."""

from django.db import migrations, models

from controlplane.core.crypto import secrets_at_rest

FERNET_PREFIX = b"gAAAAA"  # every Fernet token starts with version 0x80 and a timestamp


def seal_bodies(apps, schema_editor):
    Batch = apps.get_model("audit", "Batch")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:  # the guard keeps bodies as received; this one change is the encryption itself
        schema_editor.execute("ALTER TABLE audit_batch DISABLE TRIGGER audit_batch_guard")
    fernet = secrets_at_rest()
    for batch in Batch.objects.only("pk", "body").iterator(chunk_size=200):
        body = bytes(batch.body)
        if not body.startswith(FERNET_PREFIX):
            Batch.objects.filter(pk=batch.pk).update(body=fernet.encrypt(body))
    if postgres:
        schema_editor.execute("ALTER TABLE audit_batch ENABLE TRIGGER audit_batch_guard")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]

    operations = [
        migrations.AlterField(model_name="auditevent", name="record_id", field=models.UUIDField()),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("agent", "record_id"), name="audit_event_record_id_per_agent"),
        ),
        migrations.AddField(
            model_name="batch",
            name="problem",
            field=models.TextField(blank=True, help_text="Why verification failed, for a parked batch."),
        ),
        migrations.AlterField(
            model_name="batch",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Waiting for verification"),
                    ("verified", "Verified: every record stored or quarantined"),
                    ("parked", "Parked: verification kept failing; later batches go on without it"),
                ],
                db_index=True, default="pending", max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="quarantinedrecord",
            name="reason",
            field=models.CharField(
                choices=[
                    ("malformed", "Malformed record"), ("unknown_key", "Unknown key"),
                    ("revoked_key", "Key not valid at the record's time"), ("bad_signature", "Bad signature"),
                    ("agent_mismatch", "Record of another agent"), ("session_mismatch", "Spliced from another session"),
                    ("broken_chain", "Broken chain"), ("sequence_gap", "Sequence gap"),
                    ("forked_chain", "Forked chain"), ("replayed", "Record id already used"),
                    ("unstorable", "The database refused the record"),
                ],
                db_index=True, max_length=32,
            ),
        ),
        migrations.RunPython(seal_bodies, migrations.RunPython.noop),
    ]
