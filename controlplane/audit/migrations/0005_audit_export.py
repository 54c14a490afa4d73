"""Exports of the audit log are recorded: who, when, which filters, masked or original."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_append_only_by_roles"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="AuditExport",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("user_name", models.CharField(max_length=150)),
                ("originals", models.BooleanField(help_text="True if the unmasked records as signed were exported.")),
                ("query", models.CharField(blank=True, help_text="The filters of the export, as sent.", max_length=2000)),
                ("sessions", models.PositiveIntegerField(help_text="Sessions in the export.")),
                ("exported_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("user", models.ForeignKey(
                    null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                    to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["-id"]},
        ),
    ]
