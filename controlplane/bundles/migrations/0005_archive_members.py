import controlplane.bundles.models
from django.db import migrations, models


class Migration(migrations.Migration):
    """Archives as content-addressed gzip members (controlplane/bundles/storage.py). Rows
    written before keep their whole archive in `archive` and are read as before."""

    dependencies = [("bundles", "0004_bundle_part_changes")]

    operations = [
        migrations.CreateModel(
            name="ArchiveMember",
            fields=[
                ("digest", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("data", models.BinaryField()),
            ],
        ),
        migrations.AddField(model_name="bundle", name="members", field=models.BinaryField(blank=True, default=b"")),
        migrations.AddField(model_name="bundlepart", name="members", field=models.BinaryField(blank=True, default=b"")),
        migrations.AlterField(model_name="bundle", name="archive", field=controlplane.bundles.models.ArchiveField()),
        migrations.AlterField(model_name="bundlepart", name="archive", field=controlplane.bundles.models.ArchiveField()),
    ]
