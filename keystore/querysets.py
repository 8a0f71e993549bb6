"""Business filters over tenants, entries and audit events, named in the domain's words."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self, TypeVar

from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.utils import timezone

from keystore import permissions

if TYPE_CHECKING:
    # The models are named in quotes as the querysets' type arguments (they import this module).
    from keystore.models import AuditEvent, KeystoreEntry, Tenant  # noqa: F401
    from keystore.permissions import AnyUser

_M = TypeVar("_M", bound=models.Model)

#: The expiry buckets of the dashboard, the metrics and the keystore list's filter, as (state,
#: valid for more than N days, valid for at most M days); they do not overlap and together
#: cover every entry.
EXPIRY_BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("expired", None, 0),
    ("within_7_days", 0, 7),
    ("within_30_days", 7, 30),
    ("within_90_days", 30, 90),
    ("later", 90, None),
)


def expiry_bucket_conditions(now: datetime, prefix: str = "") -> dict[str, Q]:
    """One condition per bucket on `<prefix>valid_until` (prefix "entries__" from tenants)."""
    field_name = f"{prefix}valid_until"
    conditions: dict[str, Q] = {}
    for state, after, within in EXPIRY_BUCKETS:
        condition = Q()
        if after is not None:
            condition &= Q(**{f"{field_name}__gt": now + timedelta(days=after)})
        if within is not None:
            condition &= Q(**{f"{field_name}__lte": now + timedelta(days=within)})
        conditions[state] = condition
    return conditions


class TenantQuerySet(models.QuerySet["Tenant"]):
    def visible_to(self, user: AnyUser, perm: str | None = None) -> Self:
        return self.filter(pk__in=permissions.tenant_ids(user, perm or permissions.READ))


class TenantScopedQuerySet(models.QuerySet[_M]):
    """Rows that belong to a tenant; visibility follows the tenant's permissions."""

    def visible_to(self, user: AnyUser, perm: str | None = None) -> Self:
        if user is not None and user.is_superuser and user.is_active:
            return self
        return self.filter(tenant_id__in=permissions.tenant_ids(user, perm or permissions.READ))

    def for_tenant(self, tenant: Tenant | int) -> Self:
        return self.filter(tenant=tenant)


class EntryQuerySet(TenantScopedQuerySet["KeystoreEntry"]):
    def with_alias(self, alias: str) -> Self:
        """The entry with this alias as Java keystores and Cloud Integration see it: ignoring
        case, by the same expression as the database's unique constraint."""
        return self.alias(alias_folded=Lower("alias")).filter(alias_folded=Lower(Value(alias)))

    def with_any_alias(self, aliases: list[str]) -> Self:
        """The entries with any of these aliases, each compared as in `with_alias` (at most a
        few hundred at a time: each alias is a query parameter)."""
        return self.alias(alias_folded=Lower("alias")).filter(
            alias_folded__in=[Lower(Value(alias)) for alias in aliases]
        )

    def key_pairs(self) -> Self:
        return self.filter(entry_type="key_pair")

    def certificates(self) -> Self:
        return self.filter(entry_type="certificate")

    def sap_owned(self) -> Self:
        return self.filter(owner="sap")

    def tenant_owned(self) -> Self:
        return self.filter(owner="tenant")

    def in_expiry_bucket(self, state: str, now: datetime | None = None) -> Self:
        """Entries in one of EXPIRY_BUCKETS ("within_30_days": valid for 8 to 30 more days)."""
        return self.filter(expiry_bucket_conditions(now or timezone.now())[state])

    def expired(self, now: datetime | None = None) -> Self:
        return self.filter(valid_until__lte=now or timezone.now())

    def expiring(self, within: timedelta, now: datetime | None = None) -> Self:
        """Still valid now, but no longer valid at now + within."""
        now = now or timezone.now()
        return self.filter(valid_until__gt=now, valid_until__lte=now + within)


class AuditQuerySet(TenantScopedQuerySet["AuditEvent"]):
    pass
