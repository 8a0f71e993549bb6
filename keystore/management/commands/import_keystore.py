"""Merge a whole keystore file (PKCS#12 or JKS) into a tenant's keystore."""

import json

from django.core.management.base import BaseCommand, CommandError

from keystore import merging, services
from keystore.management.commands import get_tenant, password_from_env, read_input_file


class Command(BaseCommand):
    help = (
        "Import every entry of a PKCS#12 or JKS keystore under its own alias and print what was "
        "added, overwritten or rejected (and why). The password is read from an environment "
        "variable so that it does not show in the process list or the shell history."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", metavar="FILE")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--password-env",
            required=True,
            metavar="VAR",
            help="name of the environment variable that holds the keystore password",
        )
        how = parser.add_mutually_exclusive_group()
        how.add_argument(
            "--overwrite", action="store_true", help="write over existing tenant entries"
        )
        how.add_argument(
            "--replace",
            action="store_true",
            help="also remove the tenant-owned entries the file does not hold (Cloud "
            "Integration's importOption=replace; SAP-owned entries stay)",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        password = password_from_env(options["password_env"])
        data = read_input_file(options["file"])
        try:
            summary = merging.import_keystore(
                tenant,
                data,
                password,
                overwrite=options["overwrite"],
                replace=options["replace"],
            )
        except services.KeystoreError as error:
            raise CommandError(str(error))
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), indent=2))
        else:
            self._print(summary)
        if not summary.added and not summary.overwritten:
            raise CommandError(
                "Nothing was imported: the keystore holds no entry."
                if not summary.outcomes
                else "Nothing was imported: every entry was rejected."
            )

    def _print(self, summary: merging.ImportSummary) -> None:
        for title, outcomes in (("Added", summary.added), ("Overwritten", summary.overwritten)):
            self.stdout.write(f"{title} ({len(outcomes)}):")
            for outcome in outcomes:
                self.stdout.write(f"  {outcome.alias}")
        if summary.removed:
            self.stdout.write(f"Removed ({len(summary.removed)}):")
            for outcome in summary.removed:
                self.stdout.write(f"  {outcome.alias}")
        self.stdout.write(f"Rejected ({len(summary.rejected)}):")
        for outcome in summary.rejected:
            self.stdout.write(f"  {outcome.alias}: {outcome.reason}")
