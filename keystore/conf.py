"""The keystore app's settings, typed and defaulted in one place (override in Django settings)."""

from __future__ import annotations

from django.conf import settings


def expiry_warning_days() -> int:
    """Entries expiring within this many days are shown amber."""
    return int(getattr(settings, "KEYSTORE_EXPIRY_WARNING_DAYS", 30))
