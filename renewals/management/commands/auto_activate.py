"""Run the automatic-activation scan once (what the scheduler runs every few minutes)."""

from django.core.management.base import BaseCommand, CommandError

from renewals.management.commands import iso, parse_instant
from renewals.scan import auto_activate_due


class Command(BaseCommand):
    help = (
        "Activate the new SAP keys whose planned window has come and every new SAP key whose "
        "current key expires within a day, announce near windows, and send due reminders. "
        "--now rehearses the scan at another time (ISO-8601, UTC if no zone)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--now", default=None, help="judge due keys as of this time")

    def handle(self, *args, **options) -> None:
        now = parse_instant(options["now"], "--now")[0] if options["now"] else None
        # The same scan as the scheduled task, expiry alerts included.
        result = auto_activate_due(now, expiry_alerts=True)
        for activation in result.activated:
            self.stdout.write(
                f"activated {activation.tenant.slug}/{activation.alias} "
                f"(SHA-256 {activation.new_fingerprint})"
                + (" in its planned window" if activation.kind == "planned" else "")
            )
        for tenant, alias, reason in result.planned_refused:
            self.stdout.write(f"planned activation refused {tenant}/{alias}: {reason}")
        for report in result.probed_after:
            self.stdout.write(
                f"probed {report.plan.tenant.slug}/{report.plan.alias} with the active key: "
                f"{len(report.succeeded)} succeeded, {len(report.failed)} failed"
            )
        for notification in result.window_notices:
            self.stdout.write(
                f"announced the window of {notification.tenant.slug}/{notification.alias}"
            )
        for tenant, alias, reason in result.skipped:
            self.stdout.write(f"skipped {tenant}/{alias}: {reason}")
        for notification in result.reminded:
            self.stdout.write(
                f"reminded {notification.tenant.slug}/{notification.alias} "
                f"({notification.threshold_days} days before automatic activation)"
            )
        for notification in result.alerted:
            self.stdout.write(
                f"alerted {notification.tenant.slug}/{notification.alias} "
                f"({notification.threshold_days} days before expiry)"
            )
        if not (
            result.activated
            or result.skipped
            or result.reminded
            or result.failed
            or result.alerted
            or result.planned_refused
            or result.window_notices
            or result.probed_after
        ):
            self.stdout.write(f"Nothing due as of {iso(result.now)}.")
        if result.failed:
            for tenant, alias, error in result.failed:
                self.stderr.write(f"failed {tenant}/{alias}: {error}")
            raise CommandError(f"{len(result.failed)} automatic activations failed.")
