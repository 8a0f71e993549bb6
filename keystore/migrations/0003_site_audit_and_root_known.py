"""Site audit events (no tenant: login lockouts) and `root_known` on key material, filled in
from each stored chain."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from keystore.migrations import _root_known


def fill_entries(apps, schema_editor) -> None:
    _root_known.fill(apps.get_model("keystore", "KeystoreEntry"))


class Migration(migrations.Migration):
    dependencies = [
        ("keystore", "0002_audit_indexes_without_like_patterns"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="keystoreentry",
            name="root_known",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(fill_entries, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("add", "Added"),
                    ("overwrite", "Overwritten"),
                    ("rename", "Renamed"),
                    ("delete", "Deleted"),
                    ("export", "Exported (PKCS#12)"),
                    ("provision", "New SAP key provided"),
                    ("activate", "Activated"),
                    ("revert", "Added back to New SAP Keys"),
                    ("role", "Role assigned"),
                    ("lockout", "Login locked"),
                    ("chain", "Chain completed"),
                    ("other", "Other"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="tenant",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="audit_events",
                to="keystore.tenant",
            ),
        ),
    ]
