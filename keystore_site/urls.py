"""URL configuration: everything lives under the admin site, except /metrics (Prometheus) and
the Cloud Integration API (/api/v1, /oauth/token).

The admin index is routed to keystore_site.dashboard.index first, which renders Django's index
with the dashboard above the app list; `admin:index` still names the same URL."""

from django.contrib import admin
from django.urls import include, path

from keystore_site import dashboard, metrics
from keystore_site.api import views as api_views

admin.site.site_header = "Keystore Monitor"
admin.site.site_title = "Keystore Monitor"
admin.site.index_title = "Tenant keystores"

# A refusal in the site's frame that names the permission, the roles and the tenant.
handler403 = "keystore_site.refusals.permission_denied"

urlpatterns = [
    # The site root: the admin for people; a CSRF token for API clients that fetch one here
    # (clients cut /api/v1 off the base URL to find it).
    path("", api_views.site_root, name="site_root"),
    path("admin/", admin.site.admin_view(dashboard.index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("metrics", metrics.metrics_view, name="metrics"),
    # The backend administrators' pages (renewal plans): no login, a signed link each.
    path("renewal/", include("renewals.plans.urls")),
    path("", include("keystore_site.api.urls")),
]
