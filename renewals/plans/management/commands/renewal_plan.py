"""The renewal plan of the key waiting for an alias (or the alias's latest plan): text, or JSON
with --json (`alias`, `planned_activation`, `gate`, `backends` with `system`, `address`,
`usage`, `status`, `contact`, `confirm_url`, `probe`). --rebuild reads the backends from
where-used again first.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.plans import services


class Command(BaseCommand):
    help = "Show (or rebuild) the renewal plan of the new SAP key waiting for an alias."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--rebuild", action="store_true", help="read the backends from where-used again"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        alias = options["alias"]
        try:
            if options["rebuild"]:
                plan = services.rebuild_plan(tenant, alias)
            else:
                plan = services.plan_of(tenant, alias)
        except services.PlanError as error:
            raise CommandError(str(error))
        data = services.plan_json(plan)
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(
            f"Renewal plan of {alias} in tenant {tenant.slug}: {plan.get_state_display()}; "
            f"planned activation {data['planned_activation'] or 'none'}; gate {data['gate']}."
        )
        words = services.nothing_to_do(plan, services.flow_index(tenant))
        if words:
            self.stdout.write(words)
        for backend in data["backends"]:
            contact = backend["contact"]
            who = f"{contact['name']} <{contact['email']}>" if contact else "no contact"
            address = f"  {backend['address']}" if backend["system"] else backend["address"]
            self.stdout.write(
                f"  {backend['system']}{address}: {backend['usage']}, {backend['status']}, {who}"
            )
