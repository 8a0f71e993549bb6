"""The API app (label "api"): API clients and the OData views."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "keystore_site.api"
    label = "api"
    verbose_name = "Cloud Integration API"
