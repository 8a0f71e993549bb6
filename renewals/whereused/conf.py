"""Settings of the where-used app, typed and defaulted in one place (read on every use).

WHEREUSED_RESTART_CALLABLE  dotted path of a callable taking one IntegrationFlow, e.g.
                            "mycompany.cpi.restart_flow", which asks the runtime to restart (or
                            redeploy) the flow's bundle; default None (restarts are only recorded).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

RestartCallable = Callable[..., object]


def restart_callable() -> RestartCallable | None:
    """The configured callable, or None when restarts are only recorded."""
    path = getattr(settings, "WHEREUSED_RESTART_CALLABLE", None)
    if path is None or path == "":
        return None
    if callable(path):
        return path
    if not isinstance(path, str):
        raise ImproperlyConfigured(
            "WHEREUSED_RESTART_CALLABLE must be a dotted path to a callable, or None."
        )
    try:
        found = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"WHEREUSED_RESTART_CALLABLE {path!r} cannot be imported: {error}"
        )
    if not callable(found):
        raise ImproperlyConfigured(f"WHEREUSED_RESTART_CALLABLE {path!r} is not callable.")
    return found
