"""Settings of the renewal plans, typed and defaulted in one place (read on every use, so tests
can override them with `settings`).

RENEWALS_PLAN_GATE   "warn" (default: activation shows the backends not confirmed or verified)
                     or "require" (manual and planned activations are refused until every
                     affected backend is settled, unless an administrator overrides).
RENEWALS_PLAN_LINK_DAYS  how long a backend administrator's signed link is valid; default 30.
RENEWALS_PLAN_WINDOW_NOTICE_HOURS  how long before a planned activation its window is announced
                     to the administrators and the contacts; default 24.
RENEWALS_PLAN_PROBE_WORKERS  how many probes of a plan run at once; default 32 (threads waiting
                     on handshakes; a user's probes also stay within the connectivity limits).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

WARN = "warn"
REQUIRE = "require"
GATES = (WARN, REQUIRE)


def default_gate() -> str:
    value = getattr(settings, "RENEWALS_PLAN_GATE", WARN)
    if value not in GATES:
        raise ImproperlyConfigured(f"RENEWALS_PLAN_GATE must be one of {', '.join(GATES)}.")
    return str(value)


def link_days() -> int:
    value = getattr(settings, "RENEWALS_PLAN_LINK_DAYS", 30)
    if not isinstance(value, int) or not 1 <= value <= 365:
        raise ImproperlyConfigured("RENEWALS_PLAN_LINK_DAYS must be whole days from 1 to 365.")
    return value


def probe_workers() -> int:
    value = getattr(settings, "RENEWALS_PLAN_PROBE_WORKERS", 32)
    if not isinstance(value, int) or not 1 <= value <= 128:
        raise ImproperlyConfigured("RENEWALS_PLAN_PROBE_WORKERS must be from 1 to 128.")
    return value


def window_notice() -> timedelta:
    value = getattr(settings, "RENEWALS_PLAN_WINDOW_NOTICE_HOURS", 24)
    if not isinstance(value, int) or not 0 <= value <= 24 * 30:
        raise ImproperlyConfigured(
            "RENEWALS_PLAN_WINDOW_NOTICE_HOURS must be whole hours from 0 to 720."
        )
    return timedelta(hours=value)
