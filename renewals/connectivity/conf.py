"""Settings of the connectivity test, typed and defaulted in one place (read on every use, so
tests can override them with `settings`).

CONNECTIVITY_TESTS_PER_MINUTE         tests one user may start per minute; default 20.
CONNECTIVITY_MAX_CONCURRENT_PER_USER  tests one user may have running at once; default 1.
CONNECTIVITY_MAX_CONCURRENT           tests running at once on the whole site (all workers);
                                      default 2, half of the 4 web workers the README deploys,
                                      so tests never occupy every worker.
CONNECTIVITY_ALLOWED_NETWORKS         CIDRs the test may reach although they are refused by
                                      default (loopback, link-local, cloud metadata,
                                      unspecified); a list of strings, or one comma-separated
                                      string. Default none. settings.py reads it from the
                                      environment variable of the same name.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from renewals.connectivity.addresses import Network, parse_networks

DEFAULT_TESTS_PER_MINUTE = 20
DEFAULT_MAX_CONCURRENT_PER_USER = 1
DEFAULT_MAX_CONCURRENT = 2


def _count(name: str, default: int) -> int:
    value = getattr(settings, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number of at least 1, not {value!r}.")
    return value


def tests_per_minute() -> int:
    """Tests one user may start per minute: a connectivity page must not become a port scanner."""
    return _count("CONNECTIVITY_TESTS_PER_MINUTE", DEFAULT_TESTS_PER_MINUTE)


def max_concurrent_per_user() -> int:
    return _count("CONNECTIVITY_MAX_CONCURRENT_PER_USER", DEFAULT_MAX_CONCURRENT_PER_USER)


def max_concurrent() -> int:
    """Tests running at once on the site: each holds a web worker for up to its timeout."""
    return _count("CONNECTIVITY_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT)


def allowed_networks() -> tuple[Network, ...]:
    value = getattr(settings, "CONNECTIVITY_ALLOWED_NETWORKS", ()) or ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple | set | frozenset):
        raise ImproperlyConfigured(
            f"CONNECTIVITY_ALLOWED_NETWORKS must be a list of CIDR strings, not {value!r}."
        )
    try:
        return parse_networks(value)
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: `manage.py check` and `runserver` name a bad setting before a test needs it."""
    errors: list[checks.CheckMessage] = []
    for read in (tests_per_minute, max_concurrent_per_user, max_concurrent, allowed_networks):
        try:
            read()
        except ImproperlyConfigured as error:
            errors.append(checks.Error(str(error), id="connectivity.E001"))
    return errors
