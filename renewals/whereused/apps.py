"""The where-used app: the per-tenant index of integration flows and the keys they use."""

from django.apps import AppConfig


class WhereUsedConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals.whereused"
    label = "whereused"
    verbose_name = "Where-used (integration flows)"
