"""list_channels [--tenant T] [--json]: the channels (every tenant's without --tenant) with
their service and host, never their URLs."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from keystore.management.commands import get_tenant
from renewals.channels import services
from renewals.channels.models import Channel


class Command(BaseCommand):
    help = "List channels: tenant, name, service, host, events, state (never the URL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", help="tenant slug (default: every tenant)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        channels = Channel.objects.select_related("tenant").order_by("tenant__slug", "name", "pk")
        if options["tenant"]:
            channels = channels.for_tenant(get_tenant(options["tenant"]))
        rows = [services.channel_facts(channel) for channel in channels]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No channels.")
        for row in rows:
            events = ",".join(row["events"]) if isinstance(row["events"], list) else ""
            self.stdout.write(
                f"{row['tenant']}  {row['name']}  {row['service']}  {row['host']}  "
                f"events={events}  {row['state']}"
            )
