"""Plan the activation of a waiting SAP key in the agreed window, or cancel it (the plan page's
Plan activation): the scan activates the key at that time through the same activation as a
manual one. Times are ISO-8601; without a zone they are UTC.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.management.commands import iso, parse_instant
from renewals.plans import window
from renewals.plans.services import PlanError


class Command(BaseCommand):
    help = (
        "Plan the activation of the new SAP key waiting for ALIAS at --at (the agreed downtime "
        "window), or --cancel the planned one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        when = parser.add_mutually_exclusive_group(required=True)
        when.add_argument("--at", help="the planned activation time, ISO-8601 (UTC if no zone)")
        when.add_argument("--cancel", action="store_true", help="cancel the planned activation")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        alias = options["alias"]
        try:
            if options["cancel"]:
                plan = window.cancel_activation(tenant, alias)
            else:
                at = parse_instant(options["at"], "--at")[0]
                plan = window.schedule_activation(tenant, alias, at)
        except PlanError as error:
            raise CommandError(str(error))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "alias": plan.alias,
                        "tenant": tenant.slug,
                        "planned_activation": iso(plan.planned_activation),
                    }
                )
            )
        elif plan.planned_activation is None:
            self.stdout.write(f"Cancelled the planned activation of {alias} in {tenant.slug}.")
        else:
            self.stdout.write(
                f"Planned the activation of {alias} in {tenant.slug} for "
                f"{iso(plan.planned_activation)}; the scan activates it then."
            )
