"""The renewals app: New SAP Keys, activation, history, the scheduler and its mails."""

from django.apps import AppConfig


class RenewalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals"
    verbose_name = "SAP key renewal"
