"""Role administration: each tenant's role groups with exactly their permissions, and who holds
which role. The answers ("may this user ...") are keystore.permissions; this module changes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from keystore.audit import record_audit
from keystore.models import AuditAction, Tenant
from keystore.permissions import ALL_PERMISSIONS, ROLES, forget, roles_of
from keystore.rolemodels import TenantGroupObjectPermission, TenantRole

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from keystore.audit import Actor


def role_group_name(role: str, tenant: Tenant) -> str:
    return f"AuthGroup.{role} [{tenant.slug}]"


def _permission_objects() -> dict[str, Permission]:
    content_type = ContentType.objects.get_for_model(Tenant)
    perms = {
        perm.codename: perm
        for perm in Permission.objects.filter(
            content_type=content_type, codename__in=ALL_PERMISSIONS
        )
    }
    missing = set(ALL_PERMISSIONS) - perms.keys()
    for codename in missing:
        perms[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": codename}
        )
    return perms


def ensure_roles(tenants: Iterable[Tenant] | None = None) -> None:
    """Create each tenant's role groups with exactly their permissions; safe to run again."""

    perms = _permission_objects()
    for tenant in tenants if tenants is not None else Tenant.objects.all():
        for role, codenames in ROLES.items():
            with transaction.atomic():
                tenant_role = TenantRole.objects.filter(tenant=tenant, role=role).first()
                if tenant_role is None:
                    group, _ = Group.objects.get_or_create(name=role_group_name(role, tenant))
                    tenant_role = TenantRole.objects.create(tenant=tenant, role=role, group=group)
                group = tenant_role.group
                wanted = {perms[codename].pk for codename in codenames}
                have = set(
                    TenantGroupObjectPermission.objects.filter(
                        group=group, content_object=tenant
                    ).values_list("permission_id", flat=True)
                )
                TenantGroupObjectPermission.objects.filter(
                    group=group, content_object=tenant, permission_id__in=have - wanted
                ).delete()
                TenantGroupObjectPermission.objects.bulk_create(
                    [
                        TenantGroupObjectPermission(
                            group=group, content_object=tenant, permission_id=perm_id
                        )
                        for perm_id in wanted - have
                    ]
                )


def assign_role(user: User, tenant: Tenant, role: str, *, actor: Actor = None) -> None:
    """Make the user hold exactly this role on the tenant (replacing another role there);
    the change is audited in the same transaction."""
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    ensure_roles([tenant])
    with transaction.atomic():
        before = roles_of(user, tenant)
        for tenant_role in TenantRole.objects.filter(tenant=tenant).select_related("group"):
            if tenant_role.role == role:
                user.groups.add(tenant_role.group)
            else:
                user.groups.remove(tenant_role.group)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        if before != [role]:
            record_audit(
                tenant,
                "",
                AuditAction.ROLE,
                actor,
                detail=f"{user.get_username()}: {', '.join(before) or 'no role'} -> {role}",
            )
    forget(user)


def remove_roles(user: User, tenant: Tenant) -> None:
    for tenant_role in TenantRole.objects.filter(tenant=tenant).select_related("group"):
        user.groups.remove(tenant_role.group)
    forget(user)
