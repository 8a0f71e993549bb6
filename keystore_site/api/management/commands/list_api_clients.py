"""List a tenant's API clients (never their secrets)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from keystore.management.commands import get_tenant
from keystore.timefmt import utc
from keystore_site.api.models import ApiClient


class Command(BaseCommand):
    help = "List the API clients of a tenant: name, role, client id, created, last used, revoked."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        rows = [
            {
                "name": client.name,
                "role": client.role,
                "client_id": client.client_id,
                "created_at": utc(client.created_at, label=True),
                "created_by": client.created_by,
                "last_used_at": utc(client.last_used_at, label=True),
                "revoked_at": utc(client.revoked_at, label=True),
            }
            for client in ApiClient.objects.filter(tenant=tenant).order_by("name")
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write(f"Tenant {tenant.slug} has no API clients.")
        for row in rows:
            state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
            self.stdout.write(
                f"{row['name']}  {row['role']}  {row['client_id']}  {state}  "
                f"last used {row['last_used_at'] or 'never'}"
            )
