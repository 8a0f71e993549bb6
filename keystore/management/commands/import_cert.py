"""Add a trusted certificate (PEM or DER) to a tenant's keystore."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_tenant, read_input_file


class Command(BaseCommand):
    help = "Add a trusted certificate (PEM or DER file) under an alias."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--alias", required=True)
        parser.add_argument(
            "--overwrite", action="store_true", help="replace an existing tenant entry"
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        data = read_input_file(options["file"])
        try:
            entry = services.import_certificate(
                tenant, options["alias"], data, overwrite=options["overwrite"]
            )
        except services.KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"{entry.alias}: {entry.subject}, valid until {entry.valid_until:%Y-%m-%d %H:%M} UTC, "
            f"SHA-256 {entry.fingerprint_sha256}"
        )
