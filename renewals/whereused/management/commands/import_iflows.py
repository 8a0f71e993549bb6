"""Import integration flow exports (ZIP files, or folders of them) into a tenant's where-used index.

The same function as the admin's "Import integration flows" page. One line per file:
`OK  name: bundle X, N usages (replaced)` or `FAIL name: message`, then the file's warnings and
`    unset parameters: {{a}}, {{b}}` when its parameters.prop leaves references unset; files are
read one at a time. Exit status 1 if any file failed (the others are imported all the same).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.importing import FlowImportResult, import_flow_exports


def expand(paths: list[str]) -> list[tuple[str, Path] | FlowImportResult]:
    """What to import, in the order given: (name, file) pairs, folders expanded to their *.zip
    files (sorted), and a failure in place of a folder without ZIP files."""
    entries: list[tuple[str, Path] | FlowImportResult] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            zips = sorted(
                child
                for child in path.iterdir()
                if child.suffix.lower() == ".zip" and child.is_file()
            )
            if not zips:
                entries.append(FlowImportResult(name, False, "no .zip files in this folder"))
            entries += [(str(child), child) for child in zips]
        else:
            # A missing or unreadable file is reported by the import, in its place.
            entries.append((name, path))
    return entries


class Command(BaseCommand):
    help = (
        "Import integration flow export ZIP files (or folders of them) into a tenant's "
        "where-used index."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="ZIP file or folder")
        parser.add_argument("--tenant", required=True, help="tenant slug")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        entries = expand(options["paths"])
        files = [entry for entry in entries if not isinstance(entry, FlowImportResult)]
        try:
            # Paths, not contents: the parser opens each file only when its turn comes.
            imported = iter(import_flow_exports(tenant, files))
        except WhereUsedError as error:
            raise CommandError(str(error))
        results = [
            entry if isinstance(entry, FlowImportResult) else next(imported) for entry in entries
        ]
        for result in results:
            if result.ok:
                self.stdout.write(f"OK  {result.name}: {result.message}")
                for warning in result.warnings:
                    self.stdout.write(f"    warning: {warning}")
                if result.unresolved_parameters:
                    names = ", ".join(f"{{{{{name}}}}}" for name in result.unresolved_parameters)
                    self.stdout.write(f"    unset parameters: {names}")
            else:
                self.stdout.write(f"FAIL {result.name}: {result.message}")
        total = len(results)
        failed = sum(1 for result in results if not result.ok)
        if failed:
            raise CommandError(f"{failed} of {total} files failed.")
        self.stdout.write(f"{total} files imported into tenant {tenant.slug}.")
