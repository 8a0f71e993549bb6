"""Revoke an API client: its tokens and credentials stop working at once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from keystore_site.api import clients
from keystore_site.api.models import ApiClient


class Command(BaseCommand):
    help = "Revoke an API client by its client id; its tokens end at once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("client_id")

    def handle(self, *args, **options) -> None:
        client = (
            ApiClient.objects.select_related("tenant")
            .filter(client_id=options["client_id"])
            .first()
        )
        if client is None:
            raise CommandError(f"No API client with client id {options['client_id']!r}.")
        try:
            clients.revoke_api_client(client)
        except clients.ApiClientError as error:
            raise CommandError(str(error))
        self.stdout.write(f"Revoked API client {client.name} of tenant {client.tenant.slug}.")
