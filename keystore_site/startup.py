"""Refuse to start with one line when the configuration is wrong (a malformed KEYSTORE_KEK, a
DJANGO_DEBUG that is neither on nor off, a missing secret), instead of a traceback or, worse,
a site that starts and fails on its first private key."""

from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured

#: gunicorn's "worker failed to boot": the arbiter stops instead of restarting the worker forever.
WORKER_BOOT_ERROR = 3


def load_settings_or_exit(exit_code: int = 1) -> None:
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018  reading one setting loads them all
    except ImproperlyConfigured as error:
        print(f"Keystore Monitor will not start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None
