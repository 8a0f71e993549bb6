"""The keystore app's settings, typed and defaulted in one place (override in Django settings)."""

from __future__ import annotations

from django.conf import settings


def expiry_warning_days() -> int:
    """Entries expiring within this many days are shown amber."""
    return int(getattr(settings, "KEYSTORE_EXPIRY_WARNING_DAYS", 30))


def kek_texts() -> list[str]:
    """KEYSTORE_KEK as a list of URL-safe base64 keys (a comma-separated string is split)."""
    configured = getattr(settings, "KEYSTORE_KEK", None) or []
    if isinstance(configured, str):
        configured = configured.split(",")
    return [text.strip() for text in configured if str(text).strip()]
