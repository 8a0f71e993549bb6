"""The keystore app: tenants, entries, roles and their upkeep signals."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save


def _ensure_roles_after_migrate(sender, **kwargs) -> None:
    from keystore import roles

    roles.ensure_roles()


def _ensure_roles_for_new_tenant(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw:
        from keystore import roles

        roles.ensure_roles([instance])


class KeystoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "keystore"
    verbose_name = "Keystore"

    def ready(self) -> None:
        from keystore import lockouts  # noqa: F401  connects the lockout audit receiver

        post_migrate.connect(_ensure_roles_after_migrate, sender=self)
        post_save.connect(
            _ensure_roles_for_new_tenant, sender="keystore.Tenant", dispatch_uid="tenant-roles"
        )
