"""add_channel NAME --tenant T --url-env VAR --events a,b,...: a channel of a tenant. The URL
is read from the environment variable VAR, never from the command line (where `ps` and the
shell's history would show its token)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant, password_from_env
from renewals.channels import services
from renewals.channels.events import ALL, EVENT_NAMES


class Command(BaseCommand):
    help = "Add a chat or webhook channel (an apprise URL) to a tenant, for the chosen events."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--url-env",
            required=True,
            metavar="VAR",
            help="the environment variable that holds the apprise URL",
        )
        parser.add_argument(
            "--events",
            required=True,
            help=f"comma-separated: {', '.join(EVENT_NAMES)}, or {ALL}",
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        url = password_from_env(options["url_env"])
        try:
            channel = services.add_channel(tenant, options["name"], url, options["events"])
        except services.ChannelError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"Channel {channel.name} added to tenant {tenant.slug}: {channel.service_name} at "
            f"{channel.host}, events: {channel.events_display}. Its URL is sealed."
        )
