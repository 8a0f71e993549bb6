"""The where-used index: imported integration flows and every way they use a keystore key.

One `IntegrationFlow` row per flow export (bundle) and tenant, one `KeyUsageRecord` per usage the
parser found in it. Re-importing a bundle replaces its usage rows. The where-used pages, counts and
renewal packs read these rows only; no flow file is parsed at request time. Script rows keep
what the script passes to keystore APIs and are matched to aliases when where-used is asked.
`tenant` is repeated on the usage rows so the index answers "who uses alias X in tenant T" from
one table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from keystore.models import ALIAS_MAX_LENGTH, Tenant
from renewals.whereused.parser import ANY_KEY, Certainty, Usage
from renewals.whereused.querysets import FlowQuerySet, UsageQuerySet


class ImportedCharField(models.CharField):
    """A CharField whose plain `str` value goes to the database as it is.

    For a `str`, CharField's preparation for saving (get_db_prep_save -> get_db_prep_value ->
    get_prep_value -> Field.get_prep_value -> to_python) returns the value unchanged on every
    backend; it is four method calls per value, and bulk_create makes them for every column of
    every row an import writes. Anything else (None, lazy strings, str subclasses, expressions)
    takes CharField's own path. Migrations see a plain CharField (deconstruct). Being a
    subclass, it needs `output_field` where an expression combines it with plain CharFields
    (Concat with a Value, as querysets.component_key does).
    """

    def get_db_prep_save(self, value, connection):
        if value.__class__ is str:
            return value
        return super().get_db_prep_save(value, connection)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.CharField", args, kwargs


class ImportedBooleanField(models.BooleanField):
    """A BooleanField whose True or False goes to the database as it is (see
    ImportedCharField)."""

    def get_db_prep_save(self, value, connection):
        if value is True or value is False:
            return value
        return super().get_db_prep_save(value, connection)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.BooleanField", args, kwargs


class IntegrationFlow(models.Model):
    """One imported flow export, identified by its bundle (META-INF/MANIFEST.MF)."""

    # No index of its own: the unique (tenant, bundle_id) index leads with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="integration_flows", db_index=False
    )
    bundle_id = ImportedCharField("bundle ID", max_length=255)
    bundle_name = ImportedCharField(max_length=255)
    version = ImportedCharField(max_length=64, blank=True)
    flow_names = models.JSONField(default=list, blank=True)
    imported_at = models.DateTimeField()
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    imported_by_label = ImportedCharField("imported by", max_length=150, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # `{{name}}` references the export's parameters.prop does not set (see parser.FlowExport).
    unresolved_parameters = models.JSONField(default=list, blank=True)

    # Set when a key this flow uses on an outbound connection was activated: the TLS socket
    # keeps the old key for up to 24 hours until the flow is restarted.
    restart_required = ImportedBooleanField(default=False, db_index=True)
    restart_required_since = models.DateTimeField(null=True, blank=True)
    restart_reason = ImportedCharField(max_length=500, blank=True)
    last_restart_at = models.DateTimeField(null=True, blank=True)
    last_restart_by_label = ImportedCharField("last restarted by", max_length=150, blank=True)

    objects = FlowQuerySet.as_manager()

    class Meta:
        verbose_name = "integration flow"
        verbose_name_plural = "integration flows"
        ordering = ["tenant__slug", "bundle_name", "bundle_id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "bundle_id"], name="one_flow_per_bundle")
        ]

    def __str__(self) -> str:
        return self.bundle_name or self.bundle_id


class KeyUsageRecord(models.Model):
    """One way a component (channel, step or script) of a flow uses a key (parser.KeyUsage)."""

    # No index of its own: the (tenant, alias) and (tenant, certainty) indexes lead with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="key_usages", db_index=False
    )
    flow = models.ForeignKey(IntegrationFlow, on_delete=models.CASCADE, related_name="usages")
    component_id = ImportedCharField("component ID", max_length=255)
    component_name = ImportedCharField(max_length=255, blank=True)
    component_type = ImportedCharField(max_length=128, blank=True)
    direction = ImportedCharField(max_length=16, blank=True)
    usage = ImportedCharField(max_length=40, choices=[(u.value, u.value) for u in Usage])
    certainty = ImportedCharField(max_length=16, choices=[(c.value, c.value) for c in Certainty])
    # ANY_KEY ("") means no alias is configured: any fitting key may be used.
    alias = ImportedCharField(max_length=ALIAS_MAX_LENGTH, blank=True)
    property_key = ImportedCharField(max_length=255, blank=True)
    system = ImportedCharField("backend system", max_length=255, blank=True)
    address = ImportedCharField(max_length=2000, blank=True)
    outbound = ImportedBooleanField(
        default=False,
        help_text="Client-certificate key on a connection Cloud Integration opens: the flow "
        "must be restarted after an activation.",
    )
    reason = ImportedCharField(
        max_length=255, blank=True, help_text="Why a component may use the key."
    )
    script_file = ImportedCharField(
        max_length=255, blank=True, help_text="The script file, for usages found in a script."
    )

    objects = UsageQuerySet.as_manager()

    class Meta:
        verbose_name = "key usage"
        verbose_name_plural = "key usages"
        ordering = ["flow_id", "id"]
        indexes = [
            models.Index(fields=["tenant", "alias"], name="whereused_usage_alias"),
            models.Index(fields=["tenant", "certainty"], name="whereused_usage_certainty"),
            # What scripts pass to keystore APIs (their `alias`, as written) is matched when
            # where-used is asked, ignoring case as Cloud Integration's keystore does: so a key
            # created after the import is found without importing again. An index on the
            # expression, of script rows only, costs the import no column.
            models.Index(
                "tenant",
                Lower("alias"),
                condition=models.Q(usage=Usage.NAMED_IN_SCRIPT.value),
                name="whereused_usage_script_alias",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.component_name or self.component_id}: {self.usage} ({self.alias_label})"

    @property
    def alias_label(self) -> str:
        return self.alias if self.alias != ANY_KEY else "any key"


# What a usage row says about its component: written by the import, read back by the report.
USAGE_FIELDS = (
    "component_id",
    "component_name",
    "component_type",
    "direction",
    "usage",
    "certainty",
    "alias",
    "property_key",
    "system",
    "address",
    "outbound",
    "reason",
    "script_file",
)
