"""Add a backup from SAP Key History back to New SAP Keys (revert)."""

from django.core.management.base import BaseCommand, CommandError

from keystore.services import KeystoreError
from renewals import activation
from renewals.management.commands import get_tenant, iso, parse_instant
from renewals.models import SapKeyBackup


class Command(BaseCommand):
    help = (
        "Add the backup of ALIAS that was active until --active-until back to New SAP Keys; "
        "activate it afterwards with activate_sap_key. Backends that already use the newer "
        "certificate will fail once it is active."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--active-until",
            required=True,
            help="the backup's Active Until, ISO-8601 (UTC if no zone; whole seconds match "
            "within that second)",
        )
        parser.add_argument(
            "--replace", action="store_true", help="replace a new key that is waiting already"
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        alias = options["alias"]
        instant, precision = parse_instant(options["active_until"], "--active-until")
        backups = list(
            SapKeyBackup.objects.for_alias(tenant, alias)
            .active_until_matching(instant, precision)
            .select_related("tenant")
            .order_by("active_until")
        )
        if not backups:
            raise CommandError(
                f"SAP Key History of {alias} in {tenant.slug} has no backup active until "
                f"{options['active_until']}; see sap_key_history {alias} --tenant {tenant.slug}."
            )
        if len(backups) > 1:
            candidates = ", ".join(iso(backup.active_until) for backup in backups)
            raise CommandError(
                f"{len(backups)} backups of {alias} match {options['active_until']}: "
                f"{candidates}; give the exact time."
            )
        backup = backups[0]
        try:
            pending = activation.add_back_to_pending(backup, replace=options["replace"])
        except KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"The backup of {alias} active until {iso(backup.active_until)} is in New SAP Keys "
            f"(SHA-256 {pending.fingerprint_sha256}); activate it with "
            f"activate_sap_key {alias} --tenant {tenant.slug}."
        )
