"""The connectivity app: recorded TLS connectivity tests ("Connectivity test (TLS)")."""

from django.apps import AppConfig


class ConnectivityConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals.connectivity"
    label = "connectivity"
    verbose_name = "Connectivity tests (TLS)"
