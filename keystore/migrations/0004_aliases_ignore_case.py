"""Aliases become unique per tenant ignoring case, as Java keystores and Cloud Integration see
them. Existing case-only twins (`partner_root_CA` next to `partner_root_ca`) cannot be merged
by a migration without losing one: the migration stops before changing anything and names each
pair, so an administrator renames or deletes one of them and migrates again."""

import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import Lower


class CaseTwinsFound(Exception):
    pass


def case_twins(entry_model) -> list[tuple[str, list[str]]]:
    """(tenant slug, [aliases]) for every alias that exists in more than one spelling."""
    groups = (
        entry_model.objects.annotate(folded=Lower("alias"))
        .values("tenant_id", "folded")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .order_by()
    )
    twins = []
    for group in groups:
        rows = entry_model.objects.filter(tenant_id=group["tenant_id"]).annotate(
            folded=Lower("alias")
        )
        rows = rows.filter(folded=group["folded"]).select_related("tenant").order_by("alias")
        twins.append((rows[0].tenant.slug, [row.alias for row in rows]))
    return sorted(twins)


def refuse_case_twins(apps, schema_editor) -> None:
    twins = case_twins(apps.get_model("keystore", "KeystoreEntry"))
    if twins:
        pairs = "; ".join(
            f"tenant {slug}: " + ", ".join(repr(alias) for alias in aliases)
            for slug, aliases in twins
        )
        raise CaseTwinsFound(
            "Aliases become unique ignoring case, and these entries differ only in case: "
            f"{pairs}. Rename or delete all but one of each (manage.py shell, or the admin's "
            "Rename), then run migrate again. Nothing was changed."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("keystore", "0003_site_audit_and_root_known"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(refuse_case_twins, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="keystoreentry",
            name="unique_alias_per_tenant",
        ),
        migrations.AddConstraint(
            model_name="keystoreentry",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("alias"),
                models.F("tenant"),
                name="unique_alias_per_tenant_ignoring_case",
            ),
        ),
    ]
