"""rotate_kek: re-encrypt every private key under the first key in KEYSTORE_KEK."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.sealing import SealingError


class Command(BaseCommand):
    help = (
        "Re-encrypt every sealed private key under the first KEYSTORE_KEK key. Put the new key "
        "first and keep the old ones listed until this has run; then remove the old ones."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, **options):
        try:
            result = services.reseal_all_private_keys(batch_size=options["batch_size"])
        except SealingError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"Resealed {result.resealed} private keys; {result.already_current} were already "
            "sealed with the current KEK."
        )

        # Channel URLs (issue 18) are sealed under the same KEKs: the same command reseals them.
        from renewals.channels.services import reseal_all_channel_urls

        try:
            channels = reseal_all_channel_urls(batch_size=options["batch_size"])
        except SealingError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"Resealed {channels.resealed} channel URLs; {channels.already_current} were "
            "already sealed with the current KEK."
        )
