"""django-q2 entry points of the renewals app, and the schedule that runs them (thin callers).

The schedule is declared here and upserted by name from a post_migrate handler and from the
`ensure_schedules` command, never from AppConfig.ready(). The cluster settings (Q_CLUSTER) keep
`timeout` below `retry`, bound the attempts and switch catch-up off: a scan replayed after
downtime, or retried while another runs, does no harm because it derives its work from the
database and every activation and mail happens once.
"""

from __future__ import annotations

from datetime import datetime

from django.db import DEFAULT_DB_ALIAS
from django.utils.dateparse import parse_datetime

from renewals import conf
from renewals.scan import auto_activate_due

AUTO_ACTIVATION_SCHEDULE = "renewals.auto_activation"
AUTO_ACTIVATION_FUNC = "renewals.tasks.run_auto_activation_scan"


def run_auto_activation_scan(now: str | None = None) -> dict:
    """The scheduled scan (automatic activation, reminders and the expiry alerts of all
    entries); `now` (ISO-8601) exists for rehearsals. Returns a summary for the task result
    (plain data, so the broker can store it)."""
    as_of: datetime | None = parse_datetime(now) if now else None
    return auto_activate_due(as_of, expiry_alerts=True).as_dict()


def ensure_schedules(using: str = DEFAULT_DB_ALIAS):
    """Create or update the recurring scan, found by its name; safe to run any number of times."""
    from django_q.models import Schedule

    schedule, _created = Schedule.objects.db_manager(using).update_or_create(
        name=AUTO_ACTIVATION_SCHEDULE,
        defaults={
            "func": AUTO_ACTIVATION_FUNC,
            "args": None,
            "kwargs": None,
            "schedule_type": Schedule.MINUTES,
            "minutes": conf.scan_minutes(),
            "repeats": -1,
            "cron": None,
        },
    )
    return schedule
