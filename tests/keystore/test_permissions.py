"""Per-tenant roles through guardian object permissions, answered by one module."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keystore import permissions, roles
from keystore.models import Tenant, TenantGroupObjectPermission, TenantRole
from tests.conftest import make_user

EXPECTED = {
    "ReadOnly": {permissions.READ},
    "IntegrationDeveloper": {permissions.READ, permissions.READ_CREDENTIALS},
    "Administrator": set(permissions.ALL_PERMISSIONS),
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_role_grants_exactly_its_permissions_on_its_tenant_only(role, tenant, other_tenant):
    user = make_user("u1", tenant=tenant, role=role)
    assert set(permissions.permissions_on(user, tenant)) == EXPECTED[role]
    assert permissions.permissions_on(user, other_tenant) == frozenset()
    assert user.has_perm(f"keystore.{permissions.READ}", tenant)
    assert not user.has_perm(f"keystore.{permissions.READ}", other_tenant)
    # Object permissions never turn into model-wide ones.
    assert not user.has_perm(f"keystore.{permissions.READ}")


def test_a_user_can_hold_different_roles_on_different_tenants(tenant, other_tenant):
    third = Tenant.objects.create(name="C", slug="c")
    user = make_user("mixed")
    roles.assign_role(user, tenant, "Administrator")
    roles.assign_role(user, other_tenant, "ReadOnly")
    assert permissions.may(user, permissions.DEPLOY, tenant)
    assert not permissions.may(user, permissions.DEPLOY, other_tenant)
    assert permissions.may(user, permissions.READ, other_tenant)
    assert permissions.tenant_ids(user) == {tenant.pk, other_tenant.pk}
    assert third.pk not in permissions.tenant_ids(user)
    assert user.is_staff


def test_assigning_a_new_role_replaces_the_old_one(tenant):
    user = make_user("switch", tenant=tenant, role="Administrator")
    roles.assign_role(user, tenant, "ReadOnly")
    assert permissions.roles_of(user, tenant) == ["ReadOnly"]
    assert not permissions.may(user, permissions.DEPLOY, tenant)


def test_unknown_role_is_refused(tenant):
    user = make_user("x")
    with pytest.raises(ValueError, match="Unknown role"):
        roles.assign_role(user, tenant, "Superhero")


def test_roles_are_created_idempotently(tenant):
    before = (
        TenantRole.objects.count(),
        Group.objects.count(),
        TenantGroupObjectPermission.objects.count(),
    )
    roles.ensure_roles()
    roles.ensure_roles()
    after = (
        TenantRole.objects.count(),
        Group.objects.count(),
        TenantGroupObjectPermission.objects.count(),
    )
    assert before == after
    assert TenantRole.objects.filter(tenant=tenant).count() == 3
    assert TenantGroupObjectPermission.objects.filter(content_object=tenant).count() == 4 + 2 + 1


def test_drifted_role_permissions_are_repaired(tenant):
    reader_group = TenantRole.objects.get(tenant=tenant, role="ReadOnly").group
    deploy = TenantGroupObjectPermission.objects.filter(
        content_object=tenant, permission__codename=permissions.DEPLOY
    ).first()
    TenantGroupObjectPermission.objects.create(
        group=reader_group, content_object=tenant, permission=deploy.permission
    )
    roles.ensure_roles([tenant])
    codenames = set(
        TenantGroupObjectPermission.objects.filter(group=reader_group).values_list(
            "permission__codename", flat=True
        )
    )
    assert codenames == {permissions.READ}


def test_inactive_and_anonymous_users_may_nothing(tenant):
    from django.contrib.auth.models import AnonymousUser

    user = make_user("gone", tenant=tenant, role="Administrator")
    user.is_active = False
    permissions.forget(user)
    assert not permissions.may(user, permissions.READ, tenant)
    assert not permissions.may(AnonymousUser(), permissions.READ, tenant)


def test_superuser_may_everything(tenant):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.test", "pw")
    assert permissions.permissions_on(root, tenant) == frozenset(permissions.ALL_PERMISSIONS)


def test_mail_recipients_are_the_tenants_administrators(users, tenant, other_tenant):
    assert [u.username for u in permissions.users_with(permissions.DEPLOY, tenant)] == ["admin_a"]
    assert [u.username for u in permissions.users_with(permissions.DEPLOY, other_tenant)] == [
        "admin_b"
    ]


def test_permission_map_costs_the_same_queries_for_many_tenants(users, tenant):
    user = users["ReadOnly"]
    for index in range(20):
        roles.assign_role(
            user, Tenant.objects.create(name=f"t{index}", slug=f"t{index}"), "ReadOnly"
        )
    permissions.forget(user)
    with CaptureQueriesContext(connection) as queries:
        ids = permissions.tenant_ids(user)
        for tenant_id in ids:
            permissions.may(user, permissions.READ, tenant_id)
    assert len(ids) == 21
    assert len(queries) == 2


def test_role_changes_are_audited_once(tenant):
    from keystore.models import AuditEvent

    user = make_user("audited")
    roles.assign_role(user, tenant, "ReadOnly")
    roles.assign_role(user, tenant, "ReadOnly")
    roles.assign_role(user, tenant, "Administrator")
    details = list(
        AuditEvent.objects.filter(tenant=tenant, action="role")
        .order_by("id")
        .values_list("detail", flat=True)
    )
    assert details == ["audited: no role -> ReadOnly", "audited: ReadOnly -> Administrator"]
