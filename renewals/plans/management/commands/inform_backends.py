"""Mail each contact of the renewal plan's backends a signed link (the same as the plan page's
Inform backends): to the renewal pack, the planned window and Confirm imported. The links point
at RENEWALS_SITE_URL.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals import conf as renewals_conf
from renewals.plans import backendlinks
from renewals.plans.services import PlanError


class Command(BaseCommand):
    help = "Mail the backends' contacts of the new SAP key's renewal plan a signed link each."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            result = backendlinks.inform_backends(
                tenant, options["alias"], base_url=renewals_conf.site_url()
            )
        except PlanError as error:
            raise CommandError(str(error))
        for backend, mail in result.informed:
            self.stdout.write(f"informed {backend.label}: link mailed to {mail}")
        for backend in result.without_contact:
            self.stdout.write(f"no contact for {backend.label}: not informed")
