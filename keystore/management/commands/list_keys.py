"""List the entries of a tenant's keystore as a table or as JSON."""

import json

from django.core.management.base import BaseCommand

from keystore.management.commands import get_tenant
from keystore.models import KeystoreEntry

TABLE_COLUMNS = ("alias", "type", "owner", "valid until", "subject CN")


def entry_as_dict(entry: KeystoreEntry) -> dict:
    return {
        "alias": entry.alias,
        "type": entry.entry_type,
        "owner": entry.owner,
        "subject": entry.subject,
        "issuer": entry.issuer,
        "serial": entry.serial,
        "valid_from": entry.valid_from.isoformat(),
        "valid_until": entry.valid_until.isoformat(),
        "key_type": entry.key_type,
        "key_size": entry.key_size,
        "fingerprint_sha256": entry.fingerprint_sha256,
        "signature_algorithm": entry.signature_algorithm,
    }


class Command(BaseCommand):
    help = "List the entries of a tenant's keystore."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print a JSON list")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        # Facts come from columns; no certificate is parsed here.
        entries = list(KeystoreEntry.objects.for_tenant(tenant).order_by("alias"))
        if options["json"]:
            self.stdout.write(json.dumps([entry_as_dict(entry) for entry in entries], indent=2))
            return
        if not entries:
            self.stdout.write(f"The keystore of tenant {tenant.slug!r} is empty.")
            return
        rows = [TABLE_COLUMNS] + [
            (
                entry.alias,
                entry.get_entry_type_display(),
                entry.get_owner_display(),
                f"{entry.valid_until:%Y-%m-%d %H:%M} UTC",
                entry.subject_cn,
            )
            for entry in entries
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_COLUMNS))]
        for row in rows:
            self.stdout.write("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
