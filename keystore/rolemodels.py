"""Who holds which role on which tenant: the role groups and the object permissions they hold
(django-guardian's direct foreign-key models, one pair for the tenant).

Apart from keystore.models so that keystore.permissions can read them without importing the
keystore's models, whose querysets ask keystore.permissions (no import circle). The tenant is
named by string for the same reason; keystore.models imports these classes so Django finds them.
"""

from __future__ import annotations

from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class TenantUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey("keystore.Tenant", on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        app_label = "keystore"


class TenantGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey("keystore.Tenant", on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        app_label = "keystore"


class TenantRole(models.Model):
    """The group that carries one role on one tenant (its object permissions live on the group)."""

    tenant = models.ForeignKey("keystore.Tenant", on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=32)
    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="tenant_role")

    class Meta:
        app_label = "keystore"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "role"], name="one_group_per_tenant_role")
        ]

    def __str__(self) -> str:
        return f"{self.role} [{self.tenant.slug}]"
