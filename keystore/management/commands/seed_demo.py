"""Create the demo tenants, keystore entries and users (idempotent), and print the logins."""

from django.core.management.base import BaseCommand

from keystore import demo


class Command(BaseCommand):
    help = (
        "Create the demo: tenants 'demo' and 'acme', an SAP-like PKI, entries that are valid, "
        "expiring and expired, and the users admin, developer and reader. Safe to run again."
    )

    def handle(self, *args, **options) -> None:
        result = demo.seed()
        if result.created:
            self.stdout.write("Created: " + ", ".join(result.created))
        else:
            self.stdout.write("The demo exists already; nothing was changed.")
        self.stdout.write(demo.login_table(result.logins))
