"""The connectivity app: recorded TLS connectivity tests ("Connectivity test (TLS)")."""

from django.apps import AppConfig
from django.core import checks


class ConnectivityConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals.connectivity"
    label = "connectivity"
    verbose_name = "Connectivity tests (TLS)"

    def ready(self) -> None:
        from renewals.connectivity.conf import check_settings

        checks.register(check_settings)
