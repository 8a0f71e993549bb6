"""Fixtures of the renewal tests: an SAP CA (from the shared test PKI), the SAP key pair it
issued, and a new SAP key waiting for that alias."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import pki as pki_factory

SAP_ALIAS = "sap_cloudintegrationcertificate"


@pytest.fixture
def sap_ca(sap_pki):
    """(issuing CA key, [issuing CA, root]): the CA that issued the SAP entry."""
    return sap_pki.inter_key, [sap_pki.inter, sap_pki.root]


@pytest.fixture
def provide(sap_ca):
    """provide(tenant, alias=SAP_ALIAS, **kwargs) -> PendingSapKey, from the test SAP CA."""
    from renewals.activation import provision_sap_key

    def provide_key(tenant, alias: str = SAP_ALIAS, **kwargs):
        kwargs.setdefault("valid_days", 385)
        kwargs.setdefault("private_key", pki_factory.make_key())
        kwargs.setdefault("ca", sap_ca)
        return provision_sap_key(tenant, alias, **kwargs)

    return provide_key


@pytest.fixture
def pending(sap_entry, provide):
    """A new SAP key waiting for sap_cloudintegrationcertificate (current key: 20 days left)."""
    return provide(sap_entry.tenant)


@pytest.fixture
def expiry(sap_entry):
    """When the current SAP key expires; scans are run relative to it."""
    return sap_entry.valid_until


@pytest.fixture
def day():
    return timedelta(days=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The matrix makes five users per test; real password hashing would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
