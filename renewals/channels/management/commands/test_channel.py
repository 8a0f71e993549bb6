"""test_channel NAME --tenant T: send a test message to a channel now and say whether it
arrived (exit status 1 when not)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.channels import services
from renewals.channels.models import Channel


class Command(BaseCommand):
    help = "Send a test message to a tenant's channel."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--tenant", required=True, help="tenant slug")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        channel = Channel.objects.active().named(tenant, options["name"]).first()
        if channel is None:
            raise CommandError(f"No channel named {options['name']!r} in tenant {tenant.slug!r}.")
        try:
            result = services.send_test(channel)
        except services.ChannelError as error:
            raise CommandError(str(error))
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(result.message)
