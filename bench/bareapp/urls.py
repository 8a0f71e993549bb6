"""The site's URLs plus the bare baselines the benchmark compares with (bench settings only)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from keystore_site.urls import urlpatterns as site_urlpatterns


def bare_entries(request: HttpRequest, tenant_id: int) -> JsonResponse:
    """A bare Django JsonResponse of the same rows' columns: no authentication, no OData."""
    from keystore.models import KeystoreEntry
    from keystore_site.api.entities import SYSTEM_COLUMNS

    # The very columns the API reads, so that the ratio prices the API's own work.
    rows = list(
        KeystoreEntry.objects.filter(tenant_id=tenant_id).order_by("alias").values(*SYSTEM_COLUMNS)
    )
    return JsonResponse({"d": {"results": rows}})


urlpatterns = [
    path("bare/entries/<int:tenant_id>", bare_entries),
    *site_urlpatterns,
]
