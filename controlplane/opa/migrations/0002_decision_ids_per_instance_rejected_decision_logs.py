"""Decision ids unique per environment and OPA instance (not globally), and rejected events."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("opa", "0001_initial"), ("bundles", "0001_initial")]

    operations = [
        migrations.AlterField(model_name="decisionlog", name="decision_id", field=models.CharField(max_length=128)),
        migrations.AlterField(
            model_name="decisionlog",
            name="masked",
            field=models.JSONField(
                blank=True, default=list,
                help_text="JSON pointers replaced by OPA's mask policy, and by Warden's sensitive key names.",
            ),
        ),
        migrations.AddConstraint(
            model_name="decisionlog",
            constraint=models.UniqueConstraint(
                fields=("environment", "instance_id", "decision_id"), name="opa_decision_once_per_instance"
            ),
        ),
        migrations.CreateModel(
            name="RejectedDecisionLog",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("instance_id", models.CharField(blank=True, max_length=128)),
                ("decision_id", models.CharField(blank=True, max_length=128)),
                ("position", models.PositiveIntegerField(help_text="Index of the event in its upload.")),
                ("reason", models.CharField(db_index=True, max_length=32)),
                ("message", models.TextField()),
                ("event", models.TextField(
                    help_text="The event as received (JSON text, sensitive keys masked, truncated).")),
                ("received_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("environment", models.ForeignKey(
                    on_delete=django.db.models.deletion.PROTECT, related_name="rejected_decision_logs",
                    to="bundles.environment")),
            ],
            options={"ordering": ["-id"]},
        ),
    ]
