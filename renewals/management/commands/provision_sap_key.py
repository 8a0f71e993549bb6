"""Stand in for SAP: provide a renewed key for an SAP-owned key pair (into New SAP Keys)."""

from django.core.management.base import BaseCommand, CommandError

from keystore import sapca
from keystore.services import KeystoreError
from renewals import activation
from renewals.management.commands import get_tenant, iso


class Command(BaseCommand):
    help = (
        "Provide a renewed key pair for an existing SAP-owned key pair: same alias, new key, "
        "issued by the SAP stand-in CA (keystore.sapca). It goes to New SAP Keys and the "
        "administrators get a mail."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--valid-days", type=int, default=None, help="default 365")
        parser.add_argument(
            "--replace", action="store_true", help="replace a new key that is waiting already"
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            pending = activation.provision_sap_key(
                tenant,
                options["alias"],
                valid_days=options["valid_days"],
                replace=options["replace"],
                ca=sapca.sap_ca(),
            )
        except KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"New SAP key for {pending.alias} in {tenant.slug}: valid until "
            f"{iso(pending.valid_until)}, SHA-256 {pending.fingerprint_sha256}; automatic "
            f"activation at {iso(pending.auto_activation_at)}."
        )
