"""Probe the renewal plan's backends (every HTTPS or TLS address) with the new SAP key, or with
the active key (--active, after activation), in parallel; text or JSON. Exit 1 when a probe
failed or nothing could be probed.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.plans import probing
from renewals.plans.services import PlanError, probe_json


class Command(BaseCommand):
    help = "Run the TLS connectivity test against every backend of a renewal plan."

    def add_arguments(self, parser) -> None:
        parser.add_argument("alias")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--active", action="store_true", help="with the active key (after activation)"
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds per probe")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            report = probing.probe_backends(
                tenant, options["alias"], active=options["active"], timeout=options["timeout"]
            )
        except PlanError as error:
            raise CommandError(str(error))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "alias": report.plan.alias,
                        "key": report.key,
                        "backends": [
                            {
                                "system": backend.system,
                                "address": backend.address,
                                "status": backend.status,
                                "probe": probe_json(backend),
                            }
                            for backend in report.probed
                        ],
                        "not_probed": [
                            {"system": backend.system, "address": backend.address}
                            for backend in report.without_tls
                        ],
                    },
                    indent=2,
                )
            )
        else:
            for backend in report.probed:
                verdict = "ok" if backend.probe_ok else "FAILED"
                self.stdout.write(
                    f"{backend.label} {backend.address}: {verdict}: {backend.probe_message}"
                )
            for backend in report.without_tls:
                self.stdout.write(f"{backend.label}: no HTTPS or TLS address, not probed")
        if report.failed:
            raise CommandError(f"{len(report.failed)} of {len(report.probed)} probes failed.")
