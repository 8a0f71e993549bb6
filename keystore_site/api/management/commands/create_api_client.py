"""Create an API client of a tenant (its secret is printed once and stored only as a hash)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from keystore import permissions
from keystore.management.commands import get_tenant
from keystore_site.api import clients


class Command(BaseCommand):
    help = (
        "Create an API client for the Cloud Integration API of a tenant, holding one role. "
        "Prints client_id, client_secret (shown once), token_url and api_url."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--role", required=True, choices=list(permissions.ROLES))
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            client, secret = clients.create_api_client(tenant, options["name"], options["role"])
        except clients.ApiClientError as error:
            raise CommandError(str(error))
        answer = {
            "name": client.name,
            "tenant": tenant.slug,
            "role": client.role,
            "client_id": client.client_id,
            "client_secret": secret,
            "token_url": clients.token_url(),
            "api_url": clients.api_url(),
        }
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2))
            return
        width = max(len(key) for key in answer)
        for key, value in answer.items():
            self.stdout.write(f"{key.ljust(width)}  {value}")
        self.stdout.write("The secret is shown this once; keep it in your secret store.")
