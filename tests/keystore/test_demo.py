"""The demo seed: what it creates, that a second run changes nothing, and the demo SAP CA."""

from __future__ import annotations

import io
import sys
import types
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from keystore import crypto, demo, permissions, sapca, services
from keystore.models import AuditEvent, KeystoreEntry, Owner, Tenant, TenantRole
from tests import pki as pki_factory

DEMO_ENTRIES = {
    "sap_cloudintegrationcertificate",
    "erp_client",
    "partner_root_ca",
    "old_partner_root",
    "backend_ca_expiring",
}


@pytest.fixture(autouse=True)
def fast_seed(settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    # RSA key generation is most of a seed's time; the test PKI's key pool hands out real keys
    # (six distinct in a row, so no certificate shares a key with its issuer).
    for module in (demo, sapca):
        monkeypatch.setattr(module, "new_key", lambda: pki_factory.make_key("rsa"))


@pytest.fixture
def seeded(db):
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def snapshot() -> dict:
    return {
        "counts": [
            model.objects.count()
            for model in (Tenant, KeystoreEntry, AuditEvent, get_user_model(), Group, TenantRole)
        ],
        "fingerprints": {
            (slug, alias): fingerprint
            for slug, alias, fingerprint in KeystoreEntry.objects.values_list(
                "tenant__slug", "alias", "fingerprint_sha256"
            )
        },
        "passwords": dict(get_user_model().objects.values_list("username", "password")),
        "memberships": sorted(
            get_user_model().groups.through.objects.values_list("user_id", "group_id")
        ),
    }


def entry(slug: str, alias: str) -> KeystoreEntry:
    return KeystoreEntry.objects.get(tenant__slug=slug, alias=alias)


def user(username: str):
    return get_user_model().objects.get(username=username)


def test_seed_twice_changes_nothing(seeded):
    first = snapshot()
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "nothing was changed" in out.getvalue()
    assert snapshot() == first
    assert first["counts"][1] == 8  # 5 demo entries, 2 acme entries, the internal SAP CA


def test_seed_creates_the_tenants_and_entries(seeded):
    assert dict(Tenant.objects.values_list("slug", "name")) == {
        "demo": "Demo tenant",
        "acme": "ACME Corp",
        "sap-demo-ca": "SAP demo CA (internal)",
    }
    aliases = set(KeystoreEntry.objects.filter(tenant__slug="demo").values_list("alias", flat=True))
    assert aliases == DEMO_ENTRIES
    assert entry("acme", "sap_cloudintegrationcertificate").owner == Owner.SAP
    assert "Created: demo/sap_cloudintegrationcertificate" in seeded


@pytest.mark.parametrize("slug", ["demo", "acme"])
def test_the_sap_key_is_issued_by_the_sap_pki_and_expires_in_20_days(seeded, slug):
    sap_key = entry(slug, demo.SAP_KEY_ALIAS)
    assert sap_key.owner == Owner.SAP and sap_key.has_private_key
    left = sap_key.valid_until - timezone.now()
    assert timedelta(days=19) < left <= timedelta(days=20)
    chain = sap_key.certificate_chain()
    crypto.verify_chain(chain)
    assert [crypto.certificate_facts(cert).subject_cn for cert in chain] == [
        f"{slug}.integration.demo.sap.example",
        "SAP Cloud Platform Client CA (demo)",
        "SAP Global Root CA (demo)",
    ]
    assert crypto.private_key_matches(sap_key.open_private_key(), chain[0])
    # Issued by the kept demo SAP CA, which a renewed key will come from as well.
    assert chain[1:] == entry("sap-demo-ca", sapca.SAP_CA_ALIAS).certificate_chain()


def test_the_demo_shows_expired_and_expiring_entries(seeded):
    now = timezone.now()
    entries = KeystoreEntry.objects.filter(tenant__slug="demo")
    assert set(entries.expired(now).values_list("alias", flat=True)) == {"old_partner_root"}
    assert set(entries.expiring(timedelta(days=30), now).values_list("alias", flat=True)) == {
        "backend_ca_expiring",
        "sap_cloudintegrationcertificate",
    }
    expiring = entry("demo", "backend_ca_expiring")
    assert timedelta(days=9) < expiring.valid_until - now <= timedelta(days=10)
    assert entry("demo", "old_partner_root").entry_type == "certificate"
    assert entry("demo", "partner_root_ca").valid_until > now + timedelta(days=365)


def test_the_tenant_key_pair_comes_from_the_customer_ca(seeded):
    erp = entry("demo", "erp_client")
    assert erp.owner == Owner.TENANT and erp.has_private_key
    assert erp.issuer_cn == "Customer Issuing CA (demo)"
    assert erp.chain_length == 3
    crypto.verify_chain(erp.certificate_chain())
    left = erp.valid_until - timezone.now()
    assert timedelta(days=364) < left <= timedelta(days=365)


def test_the_demo_users_hold_their_roles_on_demo_only(seeded):
    tenants = {tenant.slug: tenant for tenant in Tenant.objects.all()}
    admin, developer, reader = user("admin"), user("developer"), user("reader")
    assert permissions.may(admin, permissions.DEPLOY, tenants["demo"])
    assert permissions.may(admin, permissions.READ_SECURITY, tenants["demo"])
    assert permissions.may(developer, permissions.READ_CREDENTIALS, tenants["demo"])
    assert not permissions.may(developer, permissions.DEPLOY, tenants["demo"])
    assert permissions.may(reader, permissions.READ, tenants["demo"])
    assert not permissions.may(reader, permissions.READ_CREDENTIALS, tenants["demo"])
    for someone in (admin, developer, reader):
        assert someone.is_staff and not someone.is_superuser
        assert permissions.tenant_ids(someone) == {tenants["demo"].pk}
        assert someone.email == f"{someone.username}@demo.example"
    assert not get_user_model().objects.filter(is_superuser=True).exists()


def test_seed_demo_prints_working_logins(seeded):
    assert "http://127.0.0.1:8000/admin/" in seeded
    for username, role in (
        ("admin", "Administrator"),
        ("developer", "IntegrationDeveloper"),
        ("reader", "ReadOnly"),
    ):
        line = next(line for line in seeded.splitlines() if line.split()[:1] == [username])
        _name, password, printed_role, tenant = line.split()
        assert (printed_role, tenant) == (role, "demo")
        assert password == f"{username}-demo-pass"
        assert user(username).check_password(password)


def test_demo_password_from_the_environment(seeded, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "from-env-Pass-42")
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert out.getvalue().count("from-env-Pass-42") == 3
    assert all(user(name).check_password("from-env-Pass-42") for name in ("admin", "reader"))


def test_sap_ca_is_kept_and_issues_renewed_keys(db):
    with pytest.raises(services.KeystoreError, match="seed_demo"):
        sapca.sap_ca(create=False)
    ca_key, ca_chain = sapca.sap_ca()
    again_key, again_chain = sapca.sap_ca(create=False)
    assert again_chain == ca_chain
    assert crypto.private_key_to_der(again_key) == crypto.private_key_to_der(ca_key)
    assert KeystoreEntry.objects.filter(alias=sapca.SAP_CA_ALIAS).count() == 1

    tenant = Tenant.objects.create(slug="t", name="T")
    not_after = timezone.now() + timedelta(days=365)
    key, chain = sapca.issue_sap_key(tenant, not_after=not_after)
    crypto.verify_chain(chain)
    assert chain[1:] == ca_chain
    assert chain[0].subject == sapca.sap_key_subject(tenant)
    assert crypto.private_key_matches(key, chain[0])
    assert chain[0].not_valid_after_utc == not_after.replace(microsecond=0)


def test_seed_calls_the_renewals_hook_when_it_exists(db, monkeypatch):
    calls = []
    hook = types.ModuleType("renewals.demo")
    hook.seed_pending_key = calls.append
    monkeypatch.setitem(sys.modules, "renewals.demo", hook)
    demo.seed()
    assert [tenant.slug for tenant in calls] == ["demo"]
