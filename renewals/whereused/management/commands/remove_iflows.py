"""Remove integration flows (by bundle ID) from a tenant's where-used index, with their usages.

The same function as the admin's "Remove from the where-used index" action, for flows undeployed
or deleted in the tenant. One line per bundle: `OK  bundle: ... removed with its N key usages` or
`FAIL bundle: message`. Exit status 1 if any bundle was not in the index (the others are removed
all the same). Importing a flow again brings it back.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.importing import remove_flows


class Command(BaseCommand):
    help = "Remove integration flows (by bundle ID) from a tenant's where-used index."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "bundle_ids", nargs="+", metavar="BUNDLE_ID", help="Bundle-SymbolicName of the flow"
        )
        parser.add_argument("--tenant", required=True, help="tenant slug")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            results = remove_flows(tenant, options["bundle_ids"])
        except WhereUsedError as error:
            raise CommandError(str(error))
        for result in results:
            status = "OK  " if result.ok else "FAIL"
            self.stdout.write(f"{status} {result.bundle_id}: {result.message}")
        failed = sum(1 for result in results if not result.ok)
        if failed:
            raise CommandError(f"{failed} of {len(results)} bundles were not removed.")
        self.stdout.write(f"{len(results)} flows removed from tenant {tenant.slug}.")
