"""Put a CA-signed certificate (the answer to signing_request) in place for a tenant key pair."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_entry, get_tenant, read_input_file


class Command(BaseCommand):
    help = (
        "Replace a key pair's certificate with the one a CA signed for it (PEM, DER or PKCS#7, "
        "with or without the chain); the private key stays."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--alias", required=True)

    def handle(self, *args, **options) -> None:
        entry = get_entry(get_tenant(options["tenant"]), options["alias"])
        data = read_input_file(options["file"])
        try:
            entry, warnings = services.apply_signing_response(entry, data)
        except services.KeystoreError as error:
            raise CommandError(str(error))
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(
            f"{entry.alias}: {entry.subject}, issued by {entry.issuer}, "
            f"valid until {entry.valid_until:%Y-%m-%d %H:%M} UTC, chain of {entry.chain_length}, "
            f"SHA-256 {entry.fingerprint_sha256}"
        )
