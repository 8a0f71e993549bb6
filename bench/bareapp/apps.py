"""App config of the bare baseline app (installed by bench.settings only)."""

from django.apps import AppConfig


class BareAppConfig(AppConfig):
    name = "bench.bareapp"
    label = "bareapp"
    verbose_name = "Benchmark baseline"
    default_auto_field = "django.db.models.BigAutoField"
