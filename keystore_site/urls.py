"""URL configuration: everything lives under the admin site, except /metrics (Prometheus).

The admin index is routed to keystore_site.dashboard.index first, which renders Django's index
with the dashboard above the app list; `admin:index` still names the same URL."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from keystore_site import dashboard, metrics

admin.site.site_header = "Keystore Monitor"
admin.site.site_title = "Keystore Monitor"
admin.site.index_title = "Tenant keystores"

# A refusal in the site's frame that names the permission, the roles and the tenant.
handler403 = "keystore_site.refusals.permission_denied"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.admin_view(dashboard.index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("metrics", metrics.metrics_view, name="metrics"),
]
