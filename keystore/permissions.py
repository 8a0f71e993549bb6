"""The one answer to "may this user do X on this tenant?".

Roles are held per tenant: each tenant has one group per role, and that group holds django-guardian
object permissions on the tenant (direct foreign-key permission models). Every changelist queryset,
change view, action, download, command and custom admin URL asks this module.

The permission map of a user is read once per user object (two queries) and kept on it, so a page
asks the database the same number of times however many rows it shows.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404

READ = "NodeManager.read"
DEPLOY = "NodeManager.deploysecuritycontent"
READ_SECURITY = "NodeManager.readsecuritycontent"
READ_CREDENTIALS = "NodeManager.readcredentials"
ALL_PERMISSIONS = (READ, DEPLOY, READ_SECURITY, READ_CREDENTIALS)

ADMINISTRATOR = "Administrator"
INTEGRATION_DEVELOPER = "IntegrationDeveloper"
READ_ONLY = "ReadOnly"
ROLES: dict[str, tuple[str, ...]] = {
    ADMINISTRATOR: ALL_PERMISSIONS,
    INTEGRATION_DEVELOPER: (READ, READ_CREDENTIALS),
    READ_ONLY: (READ,),
}

_CACHE_ATTR = "_keystore_tenant_perms"


def role_group_name(role: str, tenant) -> str:
    return f"AuthGroup.{role} [{tenant.slug}]"


def _perm_map(user) -> dict[int, frozenset[str]]:
    """tenant id -> permission codenames of this user, read once per user object."""
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    from keystore.models import Tenant, TenantGroupObjectPermission, TenantUserObjectPermission

    result: dict[int, set[str]] = {}
    if user is None or not user.is_authenticated or not user.is_active:
        pass
    elif user.is_superuser:
        for tenant_id in Tenant.objects.values_list("pk", flat=True):
            result[tenant_id] = set(ALL_PERMISSIONS)
    else:
        direct = TenantUserObjectPermission.objects.filter(user=user).values_list(
            "content_object_id", "permission__codename"
        )
        via_groups = TenantGroupObjectPermission.objects.filter(
            group__in=user.groups.all()
        ).values_list("content_object_id", "permission__codename")
        for tenant_id, codename in [*direct, *via_groups]:
            result.setdefault(tenant_id, set()).add(codename)
    frozen = {tenant_id: frozenset(perms) for tenant_id, perms in result.items()}
    if user is not None:
        setattr(user, _CACHE_ATTR, frozen)
    return frozen


def forget(user) -> None:
    """Drop the cached map after a role change."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def _tenant_id(tenant) -> int:
    return tenant if isinstance(tenant, int) else tenant.pk


def may(user, perm: str, tenant) -> bool:
    return perm in _perm_map(user).get(_tenant_id(tenant), frozenset())


def require(user, perm: str, tenant) -> None:
    """403 for a role without `perm` on a tenant the user sees; 404 for a tenant the user does
    not see at all, like a missing object, so that sequential ids reveal nothing."""
    if may(user, perm, tenant):
        return
    if not may(user, READ, tenant):
        raise Http404("No such object.")
    raise PermissionDenied("You do not have the permission for this tenant.")


def tenant_ids(user, perm: str = READ) -> set[int]:
    return {tenant_id for tenant_id, perms in _perm_map(user).items() if perm in perms}


def may_anywhere(user, perm: str = READ) -> bool:
    return bool(tenant_ids(user, perm))


def permissions_on(user, tenant) -> frozenset[str]:
    return _perm_map(user).get(_tenant_id(tenant), frozenset())


def _permission_objects() -> dict[str, Permission]:
    from django.contrib.contenttypes.models import ContentType

    from keystore.models import Tenant

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


def ensure_roles(tenants: Iterable | None = None) -> None:
    """Create each tenant's role groups with exactly their permissions; safe to run again."""
    from keystore.models import Tenant, TenantGroupObjectPermission, TenantRole

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


def assign_role(user, tenant, role: str, *, actor=None) -> None:
    """Make the user hold exactly this role on the tenant (replacing another role there);
    the change is audited in the same transaction."""
    from keystore.models import AuditAction, TenantRole
    from keystore.services import record_audit

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


def remove_roles(user, tenant) -> None:
    from keystore.models import TenantRole

    for tenant_role in TenantRole.objects.filter(tenant=tenant).select_related("group"):
        user.groups.remove(tenant_role.group)
    forget(user)


def roles_of(user, tenant) -> list[str]:
    from keystore.models import TenantRole

    return list(
        TenantRole.objects.filter(tenant=tenant, group__user=user).values_list("role", flat=True)
    )


def users_with(perm: str, tenant):
    """Active users who hold the permission on the tenant (for mails)."""
    from django.db.models import Q

    from keystore.models import TenantGroupObjectPermission, TenantUserObjectPermission

    user_model = get_user_model()
    group_ids = TenantGroupObjectPermission.objects.filter(
        content_object=tenant, permission__codename=perm
    ).values("group_id")
    user_ids = TenantUserObjectPermission.objects.filter(
        content_object=tenant, permission__codename=perm
    ).values("user_id")
    return (
        user_model.objects.filter(is_active=True)
        .filter(Q(groups__in=group_ids) | Q(pk__in=user_ids))
        .distinct()
        .order_by("username")
    )
