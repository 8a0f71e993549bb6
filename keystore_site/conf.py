"""The site's own settings (beside Django's), typed and defaulted in one place, read on every
use so that tests can override them."""

from __future__ import annotations

import os

from django.conf import settings


def metrics_token() -> str:
    """The bearer token of /metrics: settings.METRICS_TOKEN, else the METRICS_TOKEN environment
    variable ("" = no token accepted)."""
    value = getattr(settings, "METRICS_TOKEN", None)
    if value is None:
        value = os.environ.get("METRICS_TOKEN", "")
    return str(value).strip()


def trusted_proxy_count() -> int:
    """How many proxies of ours stand in front of the site (DJANGO_TRUSTED_PROXY_COUNT)."""
    return int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
