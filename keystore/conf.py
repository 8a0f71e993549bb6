"""The keystore app's settings, typed and defaulted in one place (override in Django settings)."""

from __future__ import annotations

from django.conf import settings


def login_failure_limit() -> int:
    """Failed logins for one user name (or from one address) before the login is locked."""
    return int(getattr(settings, "KEYSTORE_LOGIN_FAILURE_LIMIT", 5))


def login_lockout_seconds() -> int:
    return int(getattr(settings, "KEYSTORE_LOGIN_LOCKOUT_SECONDS", 15 * 60))


def expiry_warning_days() -> int:
    """Entries expiring within this many days are shown amber."""
    return int(getattr(settings, "KEYSTORE_EXPIRY_WARNING_DAYS", 30))
