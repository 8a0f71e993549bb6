"""Where an alias is used in a tenant's imported integration flows (the same report as the
admin's where-used page): text, or JSON with --json. --pending describes the new SAP key waiting
for the alias; the flows that use the alias are the same.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from keystore.models import EntryType, KeyMaterial, KeystoreEntry
from renewals.models import PendingSapKey
from renewals.whereused.report import WhereUsedReport, report_json, where_used


def report_lines(report: WhereUsedReport, pending: bool) -> list[str]:
    counts = report.counts
    key = "new SAP key waiting for activation" if pending else "current key"
    lines = [
        f"Where-used of {report.alias} in tenant {report.tenant.slug} ({key}): "
        f"{counts.uses} components use it, {counts.may_use} may use it; "
        f"{counts.backends} backends, {counts.flows} flows."
    ]
    for _key, title, backends in report.sections:
        lines.append("")
        lines.append(f"{title}:")
        if not backends:
            lines.append("  none")
        for backend in backends:
            address = f"  {backend.address}" if backend.system and backend.address else ""
            lines.append(f"  {backend.label}{address}")
            for flow in backend.flows:
                restart = "  [restart required]" if flow.restart_required else ""
                lines.append(f"    {flow.bundle_name} ({flow.bundle_id}){restart}")
                for component in flow.components:
                    via = f" via {component.property_key}" if component.property_key else ""
                    script = f" in {component.script_file}" if component.script_file else ""
                    reason = f" ({component.reason})" if component.reason else ""
                    lines.append(
                        f"      {component.label} ({component.kind or 'component'}): "
                        f"{component.usage}, {component.alias_label}{via}{script}{reason}"
                    )
    restart_flows = report.flows_to_restart_after_activation
    if restart_flows:
        lines.append("")
        lines.append(
            "Restart after activation: " + ", ".join(flow.bundle_name for flow in restart_flows)
        )
    return lines


class Command(BaseCommand):
    help = "Show where an alias is used in a tenant's imported integration flows."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--pending", action="store_true", help="the new SAP key waiting for the alias"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        alias = options["alias"]
        pending = options["pending"]
        material: KeyMaterial
        if pending:
            new_key = PendingSapKey.objects.filter(tenant=tenant, entry__alias=alias).first()
            if new_key is None:
                raise CommandError(
                    f"No new SAP key is waiting for {alias!r} in tenant {tenant.slug!r}."
                )
            material, key_pair = new_key, True
        else:
            entry = KeystoreEntry.objects.filter(tenant=tenant, alias=alias).first()
            if entry is None:
                raise CommandError(f"No entry with alias {alias!r} in tenant {tenant.slug!r}.")
            material, key_pair = entry, entry.entry_type == EntryType.KEY_PAIR
        report = where_used(tenant, alias, key_pair=key_pair)
        if options["json"]:
            self.stdout.write(json.dumps(report_json(report, material, pending), indent=2))
            return
        for line in report_lines(report, pending):
            self.stdout.write(line)
