"""Activate the new SAP key of an alias (the same function as the admin's Activate button)."""

from django.core.management.base import BaseCommand, CommandError

from keystore.services import KeystoreError
from renewals import activation
from renewals.management.commands import get_tenant, iso


class Command(BaseCommand):
    help = (
        "Activate the new SAP key waiting for ALIAS: the current key goes to SAP Key History, "
        "the new key becomes active."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--override-reason",
            default="",
            metavar="TEXT",
            help="why to activate although the renewal plan's 'require' gate holds backends "
            "that are not settled (kept as evidence)",
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            result = activation.activate_pending_key(
                tenant, options["alias"], override_reason=options["override_reason"]
            )
        except KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"Activated the new SAP key for {result.alias} in {tenant.slug} "
            f"(SHA-256 {result.new_fingerprint}); the previous key is in SAP Key History, "
            f"active until {iso(result.at)}."
        )
        if result.unsettled:
            self.stdout.write(
                "Not confirmed, verified or marked not affected in the renewal plan: "
                + ", ".join(result.unsettled)
                + "."
            )
        if result.root_changed:
            self.stdout.write("The new key has another root certificate: backends must trust it.")
