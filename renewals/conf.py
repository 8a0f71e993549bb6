"""Settings of the renewals app, typed and defaulted in one place (read on every use, so tests
can override them with `settings`).

RENEWALS_AUTO_ACTIVATE_BEFORE  timedelta, default 1 day: a pending key is activated automatically
                               when the current key with its alias expires within this time.
RENEWALS_REMINDER_DAYS         days before the automatic activation at which the tenant's
                               administrators get a reminder; default (14, 7, 2, 1).
RENEWALS_EXPIRY_ALERT_DAYS     days before an entry's certificate expires at which the tenant's
                               administrators get an expiry alert (every entry, SAP- or
                               tenant-owned); default (30, 14, 7, 1); an empty list switches
                               the alerts off.
RENEWALS_SCAN_MINUTES          how often the scheduler scans, in minutes; default 15. The scan
                               activates keys whose current key expires within a day, so it must
                               run far more often than daily: a daily scan could notice a due key
                               up to a day late, after the old key has expired.
RENEWALS_SITE_URL              e.g. "https://keystore.example.com"; when set, mails link to the
                               New SAP Keys screen. Default "" (no link).
RENEWALS_PROVISION_VALID_DAYS  validity of keys made by provision_sap_key; default 365.
RENEWALS_MAIL_MAX_ATTEMPTS     how often a mail is tried before it is given up; default 5.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_AUTO_ACTIVATE_BEFORE = timedelta(days=1)
DEFAULT_REMINDER_DAYS = (14, 7, 2, 1)
DEFAULT_EXPIRY_ALERT_DAYS = (30, 14, 7, 1)
DEFAULT_SCAN_MINUTES = 15
DEFAULT_PROVISION_VALID_DAYS = 365
DEFAULT_MAIL_MAX_ATTEMPTS = 5


def auto_activate_before() -> timedelta:
    value = getattr(settings, "RENEWALS_AUTO_ACTIVATE_BEFORE", DEFAULT_AUTO_ACTIVATE_BEFORE)
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ImproperlyConfigured("RENEWALS_AUTO_ACTIVATE_BEFORE must be a timedelta >= 0.")
    return value


def reminder_days() -> tuple[int, ...]:
    """Reminder thresholds in days, largest first, without duplicates."""
    value = getattr(settings, "RENEWALS_REMINDER_DAYS", DEFAULT_REMINDER_DAYS)
    try:
        days = sorted({int(day) for day in value}, reverse=True)
    except (TypeError, ValueError):
        raise ImproperlyConfigured("RENEWALS_REMINDER_DAYS must be a list of whole days.")
    if any(day < 1 for day in days):
        raise ImproperlyConfigured("RENEWALS_REMINDER_DAYS must hold positive numbers of days.")
    return tuple(days)


def expiry_alert_days() -> tuple[int, ...]:
    """Expiry alert thresholds in days, largest first, without duplicates (may be empty)."""
    value = getattr(settings, "RENEWALS_EXPIRY_ALERT_DAYS", DEFAULT_EXPIRY_ALERT_DAYS)
    try:
        days = sorted({int(day) for day in value}, reverse=True)
    except (TypeError, ValueError):
        raise ImproperlyConfigured("RENEWALS_EXPIRY_ALERT_DAYS must be a list of whole days.")
    if any(day < 1 for day in days):
        raise ImproperlyConfigured("RENEWALS_EXPIRY_ALERT_DAYS must hold positive numbers of days.")
    return tuple(days)


def scan_minutes() -> int:
    value = getattr(settings, "RENEWALS_SCAN_MINUTES", DEFAULT_SCAN_MINUTES)
    if not isinstance(value, int) or not 1 <= value <= 720:
        raise ImproperlyConfigured("RENEWALS_SCAN_MINUTES must be a whole number from 1 to 720.")
    return value


def site_url() -> str:
    return str(getattr(settings, "RENEWALS_SITE_URL", "") or "").rstrip("/")


def provision_valid_days() -> int:
    return int(getattr(settings, "RENEWALS_PROVISION_VALID_DAYS", DEFAULT_PROVISION_VALID_DAYS))


def mail_max_attempts() -> int:
    return int(getattr(settings, "RENEWALS_MAIL_MAX_ATTEMPTS", DEFAULT_MAIL_MAX_ATTEMPTS))


def scan_lifetime() -> timedelta:
    """How long a scan may run before a later one takes it for dead: django-q2's task timeout
    (Q_CLUSTER["timeout"]) and a minute of slack."""
    cluster = getattr(settings, "Q_CLUSTER", {}) or {}
    return timedelta(seconds=int(cluster.get("timeout") or 300) + 60)
