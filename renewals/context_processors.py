"""Template context for every admin page: the "new SAP keys are waiting" banner.

Counts the pending keys of the tenants the user may read, in one query (the user's permission
map is cached on the user object), once per request.
"""

from __future__ import annotations

from django.urls import reverse

_CACHE_ATTR = "_new_sap_keys_context"


def new_sap_keys(request) -> dict:
    cached = getattr(request, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    context: dict = {}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        from renewals.models import PendingSapKey

        count = PendingSapKey.objects.visible_to(user).count()
        if count:
            context = {
                "new_sap_keys_count": count,
                "new_sap_keys_url": reverse("admin:renewals_pendingsapkey_changelist"),
                "new_sap_keys_text": (
                    "1 new SAP key is waiting for activation"
                    if count == 1
                    else f"{count} new SAP keys are waiting for activation"
                ),
            }
    setattr(request, _CACHE_ATTR, context)
    return context
