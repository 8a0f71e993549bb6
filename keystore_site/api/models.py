"""API clients: the service keys of Cloud Integration. Each belongs to one tenant and holds one
role there, with the same permissions as a user of that role.

An API client acts through a user of its own (not staff, no usable password: it cannot log in to
the site), which holds the client's role group on the tenant, so that keystore.permissions and
every service function treat it as they treat people, and the audit log names it. Its OAuth
application (django-oauth-toolkit) holds the client id and the hashed secret; revoking deletes
the application, and with it every token, at once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from keystore.models import Tenant
from keystore.permissions import ROLES
from keystore.querysets import TenantScopedQuerySet


class ApiClientQuerySet(TenantScopedQuerySet["ApiClient"]):
    pass


class ApiClient(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_clients")
    name = models.CharField(max_length=64)
    role = models.CharField(max_length=32, choices=[(role, role) for role in ROLES])
    # None once revoked: the application's deletion ended its tokens.
    application = models.OneToOneField(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_client",
    )
    client_id = models.CharField("client ID", max_length=100, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_client"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiClientQuerySet.as_manager()

    class Meta:
        verbose_name = "API client"
        verbose_name_plural = "API clients"
        ordering = ["tenant__slug", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="one_api_client_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}" if self.tenant_id else self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
