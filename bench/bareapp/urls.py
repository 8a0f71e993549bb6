"""The site's URLs plus the bare baselines the benchmark compares with (bench settings only)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from keystore_site.urls import urlpatterns as site_urlpatterns

#: The columns the API's entity list is made of (keystore_site.api.entities), read the plain way.
API_COLUMNS = (
    "alias",
    "key_type",
    "key_size",
    "valid_from",
    "valid_until",
    "serial",
    "signature_algorithm",
    "elliptic_curve",
    "subject",
    "issuer",
    "fingerprint_sha1",
    "fingerprint_sha256",
    "fingerprint_sha512",
    "entry_type",
    "owner",
    "modified_by_label",
    "modified_at",
    "created_by__username",
    "created_at",
)


def bare_entries(request: HttpRequest, tenant_id: int) -> JsonResponse:
    """A bare Django JsonResponse of the same rows' columns: no authentication, no OData."""
    from keystore.models import KeystoreEntry

    rows = list(
        KeystoreEntry.objects.filter(tenant_id=tenant_id).order_by("alias").values(*API_COLUMNS)
    )
    return JsonResponse({"d": {"results": rows}})


urlpatterns = [
    path("bare/entries/<int:tenant_id>", bare_entries),
    *site_urlpatterns,
]
