"""The one answer to "may this user do X on this tenant?".

Roles are held per tenant: each tenant has one group per role, and that group holds django-guardian
object permissions on the tenant (direct foreign-key permission models). Every changelist queryset,
change view, action, download, command and custom admin URL asks this module.

The permission map of a user is read once per user object (two queries) and kept on it, so a page
asks the database the same number of times however many rows it shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from keystore.rolemodels import TenantGroupObjectPermission, TenantRole, TenantUserObjectPermission

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User
    from django.db.models import QuerySet

    from keystore.audit import Actor
    from keystore.models import Tenant

    #: Whoever asks: a user, a request's anonymous user, or None (nobody); the last two hold
    #: no permission anywhere.
    AnyUser = User | AnonymousUser | None

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


def _perm_map(user: AnyUser) -> dict[int, frozenset[str]]:
    """tenant id -> permission codenames of this user, read once per user object."""
    cached: dict[int, frozenset[str]] | None = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    result: dict[int, set[str]] = {}
    if user is None or not user.is_authenticated or not user.is_active:
        pass
    elif user.is_superuser:
        # Every tenant has its role groups (keystore.roles.ensure_roles runs on each new one).
        for tenant_id in TenantRole.objects.values_list("tenant_id", flat=True).distinct():
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


def forget(user: AnyUser) -> None:
    """Drop the cached map after a role change."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def _tenant_id(tenant: Tenant | int) -> int:
    return tenant if isinstance(tenant, int) else tenant.pk


def may(user: AnyUser, perm: str, tenant: Tenant | int) -> bool:
    return perm in _perm_map(user).get(_tenant_id(tenant), frozenset())


def actor_may(actor: Actor, perm: str, tenant: Tenant | int) -> bool:
    """For services: `actor` None is the system itself (the scheduler, commands run by the
    operator, the demo seed), which may do anything."""
    return actor is None or may(actor, perm, tenant)


def require_of_actor(
    actor: Actor, perm: str, tenant: Tenant, refusal: type[Exception], doing: str = "do this"
) -> None:
    """The services' one check: raise `refusal` ("You are not allowed to <doing> in tenant
    <slug>.") unless `actor` holds `perm` on the tenant. `actor` None is the system itself (the
    scheduler, commands run by the operator, the demo seed), which may do anything."""
    if not actor_may(actor, perm, tenant):
        raise refusal(f"You are not allowed to {doing} in tenant {tenant.slug}.")


class Refusal(PermissionDenied):
    """A 403 that knows what it needed: the permission and, where one is involved, the tenant
    (its id), so that the refusal page can name them and the roles that hold the permission."""

    def __init__(
        self, message: str, *, perm: str | None = None, tenant: Tenant | int | None = None
    ):
        super().__init__(message)
        self.perm = perm
        self.tenant_id = None if tenant is None else _tenant_id(tenant)


def roles_holding(perm: str) -> list[str]:
    """The roles whose groups hold `perm`, as Cloud Integration names them."""
    return [f"AuthGroup.{role}" for role, perms in ROLES.items() if perm in perms]


def require(user: AnyUser, perm: str, tenant: Tenant | int) -> None:
    """403 for a role without `perm` on a tenant the user sees; 404 for a tenant the user does
    not see at all, like a missing object, so that sequential ids reveal nothing."""
    if may(user, perm, tenant):
        return
    if not may(user, READ, tenant):
        raise Http404("No such object.")
    raise Refusal("You do not have the permission for this tenant.", perm=perm, tenant=tenant)


def require_anywhere(user: AnyUser, perm: str, doing: str) -> None:
    """403 ("You may not <doing> in any tenant.") unless the user holds `perm` in some tenant:
    for pages that let the user choose the tenant."""
    if not may_anywhere(user, perm):
        raise Refusal(f"You may not {doing} in any tenant.", perm=perm)


def tenant_ids(user: AnyUser, perm: str = READ) -> set[int]:
    return {tenant_id for tenant_id, perms in _perm_map(user).items() if perm in perms}


def may_anywhere(user: AnyUser, perm: str = READ) -> bool:
    return bool(tenant_ids(user, perm))


def permissions_on(user: AnyUser, tenant: Tenant | int) -> frozenset[str]:
    return _perm_map(user).get(_tenant_id(tenant), frozenset())


def roles_of(user: User, tenant: Tenant) -> list[str]:
    return list(
        TenantRole.objects.filter(tenant=tenant, group__user=user).values_list("role", flat=True)
    )


def users_with(perm: str, tenant: Tenant) -> QuerySet[User]:
    """Active users who hold the permission on the tenant (for mails)."""
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


def emails_with(perm: str, tenant_ids: Iterable[int]) -> dict[int, list[str]]:
    """tenant id -> mail addresses (sorted, without blanks) of the active users who hold the
    permission there, for many tenants in two queries (a scan mails many tenants)."""
    wanted = list(tenant_ids)
    found: dict[int, set[str]] = {tenant_id: set() for tenant_id in wanted}
    via_groups = TenantGroupObjectPermission.objects.filter(
        content_object_id__in=wanted, permission__codename=perm, group__user__is_active=True
    ).values_list("content_object_id", "group__user__email")
    direct = TenantUserObjectPermission.objects.filter(
        content_object_id__in=wanted, permission__codename=perm, user__is_active=True
    ).values_list("content_object_id", "user__email")
    for tenant_id, email in [*via_groups, *direct]:
        if email:
            found[tenant_id].add(email)
    return {tenant_id: sorted(emails) for tenant_id, emails in found.items()}
