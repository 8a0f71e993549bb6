"""List the New SAP Keys of a tenant."""

import json

from django.core.management.base import BaseCommand

from renewals.management.commands import get_tenant, pending_row
from renewals.models import PendingSapKey


class Command(BaseCommand):
    help = "List the new SAP keys waiting for activation in a tenant."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        rows = [
            pending_row(pending)
            for pending in PendingSapKey.objects.for_tenant(tenant)
            .select_related("tenant", "entry")
            .order_by("alias")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(f"No new SAP keys are waiting in {tenant.slug}.")
            return
        for row in rows:
            self.stdout.write(
                f"{row['alias']}  new key valid {row['valid_from']} .. {row['valid_until']}  "
                f"current key valid until {row['current_valid_until']}  "
                f"automatic activation {row['auto_activation_at']}  "
                f"SHA-256 {row['fingerprint_sha256']}"
            )
