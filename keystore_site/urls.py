"""URL configuration: everything lives under the admin site."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from keystore.throttle import ThrottledAdminAuthenticationForm

admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.site_header = "Keystore Monitor"
admin.site.site_title = "Keystore Monitor"
admin.site.index_title = "Tenant keystores"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]
