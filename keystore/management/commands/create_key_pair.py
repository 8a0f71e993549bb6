"""Create a key pair (new private key, self-signed certificate) in a tenant's keystore."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_tenant


class Command(BaseCommand):
    help = (
        "Create a key pair with a self-signed certificate; get it signed by a CA with "
        "signing_request and import_signing_response."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--subject",
            required=True,
            help="distinguished name, e.g. 'CN=orders.example.com, O=Example AG, C=DE'",
        )
        parser.add_argument(
            "--key-type", default="rsa-2048", choices=sorted(services.KEY_TYPES), dest="key_type"
        )
        parser.add_argument("--valid-days", type=int, default=365, dest="valid_days", metavar="N")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            entry = services.create_key_pair(
                tenant,
                options["alias"],
                options["subject"],
                key_type=options["key_type"],
                valid_days=options["valid_days"],
            )
        except services.KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"{entry.alias}: {entry.key_type} {entry.key_size}, {entry.subject}, self-signed, "
            f"valid until {entry.valid_until:%Y-%m-%d %H:%M} UTC, "
            f"SHA-256 {entry.fingerprint_sha256}"
        )
