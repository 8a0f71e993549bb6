"""Show the SAP Key History of an alias."""

import json

from django.core.management.base import BaseCommand

from renewals.management.commands import backup_row, get_tenant
from renewals.models import SapKeyBackup


class Command(BaseCommand):
    help = "List the backups of ALIAS in SAP Key History, newest Active Until first."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        alias = options["alias"]
        rows = [
            backup_row(backup)
            for backup in SapKeyBackup.objects.for_alias(tenant, alias)
            .select_related("tenant")
            .order_by("-active_until")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(f"SAP Key History of {alias} in {tenant.slug} is empty.")
            return
        for row in rows:
            self.stdout.write(
                f"active {row['active_from']} .. {row['active_until']}  "
                f"activated by {row['activated_by']}  key valid until {row['valid_until']}  "
                f"SHA-256 {row['fingerprint_sha256']}"
            )
