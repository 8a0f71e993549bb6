"""Take a renewed SAP key delivered as PKCS#12 into New SAP Keys."""

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import password_from_env, read_input_file
from keystore.services import KeystoreError
from renewals import activation
from renewals.management.commands import get_tenant, iso


class Command(BaseCommand):
    help = (
        "Import a renewed SAP key (PKCS#12) for an existing SAP-owned key pair into New SAP "
        "Keys. The password is read from the environment variable named by --password-env."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--alias", required=True)
        parser.add_argument(
            "--password-env", required=True, help="name of the variable holding the password"
        )
        parser.add_argument(
            "--replace", action="store_true", help="replace a new key that is waiting already"
        )

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        password = password_from_env(options["password_env"])
        data = read_input_file(options["file"])
        try:
            pending = activation.import_sap_key(
                tenant, options["alias"], data, password, replace=options["replace"]
            )
        except KeystoreError as error:
            raise CommandError(str(error))
        self.stdout.write(
            f"New SAP key for {pending.alias} in {tenant.slug}: valid until "
            f"{iso(pending.valid_until)}, SHA-256 {pending.fingerprint_sha256}; automatic "
            f"activation at {iso(pending.auto_activation_at)}."
        )
