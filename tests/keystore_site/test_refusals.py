"""The refusal page: in the site's frame, it names what was refused, the permission, the roles
that hold it, the tenant, the user's own roles there and who grants roles; a tenant the user may
not read is never named; each refusal is one log line without a traceback."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from keystore import roles, services
from keystore.crypto import to_der
from keystore.models import KeystoreEntry
from tests.conftest import client_for, make_user


@pytest.fixture
def entry(tenant, pki) -> KeystoreEntry:
    return services.import_certificate(tenant, "partner_root", to_der(pki.root))


@pytest.fixture
def boss(tenant):
    """The tenant's administrator, whom the page names."""
    return make_user("boss_a", tenant=tenant, role="Administrator")


@pytest.fixture
def mixed(tenant, other_tenant):
    """Administrator in another tenant, reader in this one: passes the "anywhere" check and is
    refused for this tenant."""
    user = make_user("mixed", tenant=other_tenant, role="Administrator")
    roles.assign_role(user, tenant, "ReadOnly")
    return user


def refused_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_page_names_permission_roles_tenant_and_who_grants(mixed, boss, entry, caplog):
    superuser = make_user("root_user")
    superuser.is_superuser = True
    superuser.save()
    client = client_for(mixed)
    url = reverse("admin:keystore_keystoreentry_rename", args=[entry.pk])
    with caplog.at_level(logging.INFO):
        response = client.post(url, {"new_alias": "stolen"}, HTTP_REFERER="http://testserver/x/")

    assert response.status_code == 403
    page = response.content.decode()
    # In the site's frame, with a way back.
    assert "Keystore Monitor" in page and "Log out" in page
    assert 'href="http://testserver/x/"' in page
    assert "NodeManager.deploysecuritycontent" in page
    assert "AuthGroup.Administrator" in page and "AuthGroup.IntegrationDeveloper" not in page
    assert "Tenant A (tenant-a)" in page
    assert "<code>AuthGroup.ReadOnly</code>" in page  # the user's own role there
    assert "boss_a" in page and "root_user" in page
    assert "Traceback" not in page
    # Nothing changed.
    assert KeystoreEntry.objects.get(pk=entry.pk).alias == "partner_root"
    # One line, no traceback, nothing from django.request.
    [record] = refused_records(caplog)
    assert record.name == "keystore.refusals" and record.exc_info is None
    line = record.getMessage()
    assert "mixed" in line and "NodeManager.deploysecuritycontent" in line
    assert "tenant-a" in line and "AuthGroup.ReadOnly" in line


def test_a_refusal_in_no_tenant_names_the_permission(users, entry, caplog):
    client = client_for(users["ReadOnly"])
    with caplog.at_level(logging.INFO):
        response = client.get(reverse("admin:keystore_keystoreentry_rename", args=[entry.pk]))
    assert response.status_code == 403
    page = response.content.decode()
    assert "You may not change keystore content in any tenant." in page
    assert "NodeManager.deploysecuritycontent" in page and "AuthGroup.Administrator" in page
    [record] = refused_records(caplog)
    assert record.exc_info is None and "\n" not in record.getMessage()


def test_a_forged_tenant_is_not_named(users, tenant, other_tenant, caplog):
    """An administrator of tenant A posts an upload naming tenant B, which they cannot read."""
    client = client_for(users["Administrator"])
    with caplog.at_level(logging.INFO):
        response = client.post(
            reverse("admin:keystore_keystoreentry_add_certificate"),
            {"tenant": other_tenant.pk, "alias": "x"},
        )
    assert response.status_code == 403
    page = response.content.decode()
    assert other_tenant.name not in page and other_tenant.slug not in page
    assert "a tenant you hold no role in" in page
    assert not KeystoreEntry.objects.filter(tenant=other_tenant).exists()
    [record] = refused_records(caplog)
    assert other_tenant.slug not in record.getMessage()
