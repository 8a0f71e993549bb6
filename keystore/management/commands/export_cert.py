"""Write an entry's public content (certificate, root, chain) to a file or to standard output."""

import sys

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_entry, get_tenant, write_output


class Command(BaseCommand):
    help = (
        "Export an entry's public content: cer (its certificate, DER), root (the root "
        "certificate, DER), p7b (the whole chain, PKCS#7) or pem (the chain as PEM). "
        "Never a private key."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--format", required=True, choices=services.PUBLIC_FORMATS)
        parser.add_argument(
            "-o", "--output", required=True, metavar="FILE", help="file to write, - for stdout"
        )

    def handle(self, *args, **options) -> None:
        entry = get_entry(get_tenant(options["tenant"]), options["alias"])
        try:
            download = services.public_download(entry, options["format"])
        except services.KeystoreError as error:
            raise CommandError(str(error))
        if options["output"] == "-":
            self._write_stdout(download.content, options.get("stdout") or sys.stdout)
            return
        write_output(self, options["output"], download.content)

    def _write_stdout(self, content: bytes, stream) -> None:
        stream.flush()
        binary = getattr(stream, "buffer", None)
        if binary is None:
            raise CommandError("Standard output does not take binary data here; use -o FILE.")
        binary.write(content)
        binary.flush()
