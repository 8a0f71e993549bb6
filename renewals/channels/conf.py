"""Settings of the channels, typed and defaulted in one place (read on every use, so tests can
override them with `settings`).

CHANNELS_MAX_ATTEMPTS   how often a channel message is tried before it is given up; default 8.
CHANNELS_RETRY_BACKOFF  timedelta, default 5 minutes: the wait after a channel's first failed
                        attempt, doubled after each further one (5, 10, 20 ... minutes, at
                        most CHANNELS_RETRY_BACKOFF_MAX, default 6 hours), so eight attempts
                        span about ten hours of a chat service's outage; the scan retries a
                        message only once its wait is over.
CHANNELS_TIMEOUT        seconds to connect and to read per delivery; default 5. Whatever a
                        channel URL says (apprise's cto/rto), a delivery after an activation's
                        commit never waits longer.

Which addresses a channel URL may point to follows the connectivity test's rules (#9,
renewals.connectivity.addresses): loopback, link-local, the cloud metadata address and the
unspecified addresses are refused unless CONNECTIVITY_ALLOWED_NETWORKS allows them.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_BACKOFF = timedelta(minutes=5)
DEFAULT_RETRY_BACKOFF_MAX = timedelta(hours=6)
DEFAULT_TIMEOUT = 5.0


def max_attempts() -> int:
    value = getattr(settings, "CHANNELS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured("CHANNELS_MAX_ATTEMPTS must be a whole number of at least 1.")
    return value


def _duration(name: str, default: timedelta) -> timedelta:
    value = getattr(settings, name, default)
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ImproperlyConfigured(f"{name} must be a timedelta >= 0.")
    return value


def retry_backoff(failed_attempts: int) -> timedelta:
    """The wait before the next attempt after `failed_attempts` failures (at least one)."""
    base = _duration("CHANNELS_RETRY_BACKOFF", DEFAULT_RETRY_BACKOFF)
    ceiling = _duration("CHANNELS_RETRY_BACKOFF_MAX", DEFAULT_RETRY_BACKOFF_MAX)
    # Doubling past 2**20 only overflows; the ceiling is reached long before.
    return min(base * 2 ** min(max(failed_attempts, 1) - 1, 20), ceiling)


def timeout() -> float:
    value = getattr(settings, "CHANNELS_TIMEOUT", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise ImproperlyConfigured("CHANNELS_TIMEOUT must be a number of seconds from 0 to 60.")
    return float(value)


def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: `manage.py check` names a bad setting before a delivery needs it."""
    errors: list[checks.CheckMessage] = []
    for read in (max_attempts, lambda: retry_backoff(1), timeout):
        try:
            read()
        except ImproperlyConfigured as error:
            errors.append(checks.Error(str(error), id="channels.E001"))
    return errors
