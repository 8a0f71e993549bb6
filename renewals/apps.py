"""The renewals app: New SAP Keys, activation, history, the scheduler and its mails."""

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate


def _ensure_schedules_after_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    from django_q.models import Schedule

    from renewals.tasks import ensure_schedules

    # A partial migrate (e.g. of one app) may run before django_q's tables exist.
    if Schedule._meta.db_table in connections[using].introspection.table_names():
        ensure_schedules(using)


class RenewalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals"
    verbose_name = "SAP key renewal"

    def ready(self) -> None:
        # Only the connection happens here; the schedule row is written after migrations ran.
        post_migrate.connect(
            _ensure_schedules_after_migrate, sender=self, dispatch_uid="renewals-schedules"
        )
