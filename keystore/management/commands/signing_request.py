"""Write a tenant key pair's certificate signing request (PKCS#10, PEM) for a CA to sign."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_entry, get_tenant, write_output


class Command(BaseCommand):
    help = "Write a key pair's certificate signing request (PEM) to a file or standard output."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "-o", "--output", default="-", metavar="FILE", help="file to write (default: stdout)"
        )

    def handle(self, *args, **options) -> None:
        entry = get_entry(get_tenant(options["tenant"]), options["alias"])
        try:
            download = services.signing_request(entry)
        except services.KeystoreError as error:
            raise CommandError(str(error))
        if options["output"] == "-":
            self.stdout.write(download.content.decode("ascii"), ending="")
            return
        write_output(self, options["output"], download.content)
