"""How "Restart" reaches a deployment's integration runtime.

WHEREUSED_RESTART_CALLABLE  dotted path of a callable taking one IntegrationFlow, e.g.
                            "mycompany.cpi.restart_flow", which asks the runtime to restart (or
                            redeploy) the flow's bundle. Returning means it worked; raising means
                            it did not, and the flow keeps its "restart required" mark.
                            Default None: the site only records who restarted and when (the
                            administrator restarts the flow in Cloud Integration by hand).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

RestartCallable = Callable[..., object]


def restart_callable() -> RestartCallable | None:
    """The configured callable, or None when restarts are only recorded (read on every use)."""
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


def describe() -> str:
    """For pages: what "Restart" does in this deployment."""
    if restart_callable() is None:
        return (
            "Restart records who restarted the flow and when; restart (or redeploy) the flow "
            "in Cloud Integration yourself."
        )
    return "Restart asks the integration runtime to restart the flow, then records it."
