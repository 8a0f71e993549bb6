"""Shared fixtures: tenants, users in each role, and a real test PKI generated at test time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import pki as pki_factory

ROLE_NAMES = ("none", "ReadOnly", "IntegrationDeveloper", "Administrator", "other_admin")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Five users per test: the production hasher would dominate the suite's time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_cache():
    """Nothing one test leaves in the cache may reach another."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def tenant(db):
    from keystore.models import Tenant

    return Tenant.objects.create(name="Tenant A", slug="tenant-a")


@pytest.fixture
def other_tenant(db):
    from keystore.models import Tenant

    return Tenant.objects.create(name="Tenant B", slug="tenant-b")


def make_user(username: str, *, tenant=None, role: str | None = None, email: str | None = None):
    from django.contrib.auth import get_user_model

    from keystore import roles

    user = get_user_model().objects.create_user(
        username=username,
        password="pw-" + username + "-123!",
        email=email or f"{username}@example.test",
        is_staff=True,
    )
    if tenant is not None and role is not None:
        roles.assign_role(user, tenant, role)
    return user


def import_expired_certificate(tenant, alias: str = "old_partner", *, expired_for: timedelta):
    """A self-signed partner certificate "Old Partner" that expired `expired_for` ago, imported
    into the tenant's keystore (uploads refuse expired certificates unless told otherwise)."""
    from datetime import UTC, datetime

    from keystore import services

    now = datetime.now(UTC)
    cert = pki_factory.make_cert(
        "Old Partner",
        pki_factory.make_key(),
        not_before=now - timedelta(days=400),
        not_after=now - expired_for,
        ca=True,
    )
    return services.import_certificate(tenant, alias, pki_factory.der(cert), allow_expired=True)


@pytest.fixture
def users(tenant, other_tenant):
    """One user per row of the permission matrix, keyed by ROLE_NAMES."""
    return {
        "none": make_user("norole"),
        "ReadOnly": make_user("reader", tenant=tenant, role="ReadOnly"),
        "IntegrationDeveloper": make_user("developer", tenant=tenant, role="IntegrationDeveloper"),
        "Administrator": make_user("admin_a", tenant=tenant, role="Administrator"),
        "other_admin": make_user("admin_b", tenant=other_tenant, role="Administrator"),
    }


@pytest.fixture
def admin_user(users):
    return users["Administrator"]


def client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def pki():
    """Root CA -> intermediate CA -> leaf, RSA 2048, real signatures."""
    return pki_factory.make_pki()


@pytest.fixture
def sap_pki():
    return pki_factory.make_pki(prefix="SAP", leaf_days=20)


@pytest.fixture
def sap_entry(tenant, sap_pki):
    """An SAP-owned key pair `sap_cloudintegrationcertificate` valid for 20 more days."""
    from keystore import services

    return services.create_sap_entry(
        tenant, "sap_cloudintegrationcertificate", sap_pki.leaf_key, sap_pki.chain
    )


@pytest.fixture
def key_pair_entry(tenant, pki):
    from keystore import services

    data = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "secret-pw")
    return services.import_key_pair(tenant, "client_key", data, "secret-pw")


@pytest.fixture
def cert_entry(tenant, pki):
    from keystore import services
    from keystore.crypto import to_der

    return services.import_certificate(tenant, "partner_root", to_der(pki.root))


@pytest.fixture
def soon():
    return timedelta(days=7)
