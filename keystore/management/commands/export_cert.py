"""Write an entry's public content (certificate, root, chain) to a file or to standard output."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_entry, get_tenant


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
        target = Path(options["output"])
        try:
            target.write_bytes(download.content)
        except OSError as error:
            raise CommandError(f"Cannot write {target}: {error.strerror or error}.")
        self.stdout.write(f"Wrote {target} ({len(download.content)} bytes).")

    def _write_stdout(self, content: bytes, stream) -> None:
        stream.flush()
        binary = getattr(stream, "buffer", None)
        if binary is None:
            raise CommandError("Standard output does not take binary data here; use -o FILE.")
        binary.write(content)
        binary.flush()
