"""Write a tenant's whole keystore to one password-protected PKCS#12 file (a backup)."""

from django.core.management.base import BaseCommand, CommandError

from keystore import services
from keystore.management.commands import get_tenant, password_from_env, write_output
from keystore.passwords import export_password_problems


class Command(BaseCommand):
    help = (
        "Back up a tenant's keystore: every key pair and trusted certificate in one PKCS#12 "
        "file (AES-256). The password is read from an environment variable and must pass the "
        "password validators. Restore with import_keystore --overwrite."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--password-env",
            required=True,
            metavar="VAR",
            help="name of the environment variable that holds the password for the file",
        )
        parser.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        password = password_from_env(options["password_env"])
        problems = export_password_problems(password)
        if problems:
            raise CommandError(f"The password in {options['password_env']}: {' '.join(problems)}")
        try:
            download = services.backup_keystore(tenant, password)
        except services.KeystoreError as error:
            raise CommandError(str(error))
        write_output(self, options["output"], download.content)
