"""Settings of the renewal plans, typed and defaulted in one place (read on every use, so tests
can override them with `settings`).

RENEWALS_PLAN_GATE   "warn" (default: activation shows the backends not confirmed or verified)
                     or "require" (manual and planned activations are refused until every
                     affected backend is settled, unless an administrator overrides).
"""

from __future__ import annotations

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
