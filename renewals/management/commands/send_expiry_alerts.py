"""Send the due expiry alerts of all keystore entries once (the scheduled scan does it too)."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from renewals.alerts import send_expiry_alerts
from renewals.management.commands import iso, parse_instant


class Command(BaseCommand):
    help = (
        "Mail the tenant administrators the expiry alerts that are due (RENEWALS_EXPIRY_ALERT_DAYS "
        "days before an entry expires, each once per key). --now rehearses another time "
        "(ISO-8601, UTC if no zone)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--now", default=None, help="judge due alerts as of this time")

    def handle(self, *args, **options) -> None:
        now = parse_instant(options["now"], "--now")[0] if options["now"] else None
        try:
            recorded = send_expiry_alerts(now)
        except (ImproperlyConfigured, DatabaseError) as error:
            raise CommandError(f"Expiry alerts could not be sent: {error}")
        for notification in recorded:
            self.stdout.write(
                f"alerted {notification.tenant.slug}/{notification.alias} "
                f"({notification.threshold_days} days before expiry) to "
                f"{notification.recipients or 'nobody (no administrator has a mail address)'}"
            )
        if not recorded:
            self.stdout.write(f"No expiry alert due as of {iso(now) if now else 'now'}.")
