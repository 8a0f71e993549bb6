"""Business filters over tenants, entries and audit events, named in the domain's words."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone

from keystore import permissions


class TenantQuerySet(models.QuerySet):
    def visible_to(self, user, perm: str | None = None) -> TenantQuerySet:
        return self.filter(pk__in=permissions.tenant_ids(user, perm or permissions.READ))


class TenantScopedQuerySet(models.QuerySet):
    """Rows that belong to a tenant; visibility follows the tenant's permissions."""

    def visible_to(self, user, perm: str | None = None):
        if getattr(user, "is_superuser", False) and user.is_active:
            return self
        return self.filter(tenant_id__in=permissions.tenant_ids(user, perm or permissions.READ))

    def for_tenant(self, tenant):
        return self.filter(tenant=tenant)


class EntryQuerySet(TenantScopedQuerySet):
    def with_alias(self, alias: str) -> EntryQuerySet:
        """The entry with this alias as Java keystores and Cloud Integration see it: ignoring
        case, by the same expression as the database's unique constraint."""
        return self.alias(alias_folded=Lower("alias")).filter(alias_folded=Lower(Value(alias)))

    def key_pairs(self) -> EntryQuerySet:
        return self.filter(entry_type="key_pair")

    def certificates(self) -> EntryQuerySet:
        return self.filter(entry_type="certificate")

    def sap_owned(self) -> EntryQuerySet:
        return self.filter(owner="sap")

    def tenant_owned(self) -> EntryQuerySet:
        return self.filter(owner="tenant")

    def expired(self, now: datetime | None = None) -> EntryQuerySet:
        return self.filter(valid_until__lte=now or timezone.now())

    def expiring(self, within: timedelta, now: datetime | None = None) -> EntryQuerySet:
        """Still valid now, but no longer valid at now + within."""
        now = now or timezone.now()
        return self.filter(valid_until__gt=now, valid_until__lte=now + within)

    def expiring_between(
        self, after: timedelta, within: timedelta | None, now: datetime | None = None
    ) -> EntryQuerySet:
        """Valid at now + after, no longer valid at now + within (None: valid for longer)."""
        now = now or timezone.now()
        rows = self.filter(valid_until__gt=now + after)
        return rows if within is None else rows.filter(valid_until__lte=now + within)


class AuditQuerySet(TenantScopedQuerySet):
    pass
