from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("bundles", "0003_bundle_parts")]

    operations = [
        migrations.AddField(
            model_name="bundlepart",
            name="previous_etag",
            field=models.CharField(blank=True, default="", max_length=70),
            preserve_default=False,
        ),
        migrations.AddField(model_name="bundlepart", name="changes", field=models.JSONField(blank=True, null=True)),
    ]
