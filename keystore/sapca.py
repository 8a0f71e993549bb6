"""The SAP stand-in CA: where the renewed keys of `provision_sap_key` come from, since no real
SAP delivers keys to this site.

The issuing CA is kept as an SAP-owned key pair (`sap_demo_issuing_ca`) in an internal tenant on
which nobody has a role, made on first use. `sap_ca()` returns it and `issue_sap_key()` uses it,
so that a renewed SAP key comes from the same CA as the key it replaces, as at SAP. The demo
seed and the `provision_sap_key` command use it; renewals.activation takes the CA as a
parameter and never reaches for it. The certificate helpers here serve the demo's other PKIs too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone

from keystore import crypto, services
from keystore.models import KeystoreEntry, Tenant

SAP_CA_TENANT = ("sap-demo-ca", "SAP demo CA (internal)")
SAP_CA_ALIAS = "sap_demo_issuing_ca"
SAP_ROOT_CN = "SAP Global Root CA (demo)"
SAP_ISSUING_CN = "SAP Cloud Platform Client CA (demo)"

IssuingCa = tuple[crypto.PrivateKey, list[x509.Certificate]]


# -- certificates ----------------------------------------------------------------------------


def new_key() -> crypto.PrivateKey:
    return crypto.generate_key_pair("rsa", 2048)


def name(common_name: str, organization: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"))
    return x509.Name(attributes)


def issue(
    subject: x509.Name,
    key: crypto.PrivateKey,
    *,
    not_before: datetime,
    not_after: datetime,
    issuer: tuple[x509.Certificate, crypto.PrivateKey] | None = None,
    ca: bool = False,
    dns_name: str | None = None,
) -> x509.Certificate:
    names = x509.SubjectAlternativeName([x509.DNSName(dns_name)]) if dns_name else None
    return crypto.issue_certificate(
        subject,
        key,
        not_before=not_before,
        not_after=not_after,
        issuer=issuer,
        ca=ca,
        alternative_names=names,
    )


def self_signed_ca(
    common_name: str, organization: str, *, not_before: datetime, not_after: datetime
) -> tuple[crypto.PrivateKey, x509.Certificate]:
    key = new_key()
    subject = name(common_name, organization)
    return key, issue(subject, key, not_before=not_before, not_after=not_after, ca=True)


# -- the SAP stand-in CA -------------------------------------------------------------------------


def sap_ca(create: bool = True) -> tuple[crypto.PrivateKey, list[x509.Certificate]]:
    """The demo SAP issuing CA: its private key and its chain [issuing CA, root].

    Made once and kept; with `create=False` a missing CA is an error instead.
    """
    entry = KeystoreEntry.objects.filter(tenant__slug=SAP_CA_TENANT[0], alias=SAP_CA_ALIAS).first()
    if entry is None:
        if not create:
            raise services.KeystoreError(
                "The demo SAP CA does not exist yet; run `manage.py seed_demo` first."
            )
        entry = _create_sap_ca(timezone.now())
    return entry.open_key_pair_key(), entry.certificate_chain()


def _create_sap_ca(now: datetime) -> KeystoreEntry:
    with transaction.atomic():
        tenant, _ = Tenant.objects.get_or_create(
            slug=SAP_CA_TENANT[0], defaults={"name": SAP_CA_TENANT[1]}
        )
        root_key, root = self_signed_ca(
            SAP_ROOT_CN,
            "SAP SE",
            not_before=now - timedelta(days=5 * 365),
            not_after=now + timedelta(days=15 * 365),
        )
        issuing_key = new_key()
        issuing = issue(
            name(SAP_ISSUING_CN, "SAP SE"),
            issuing_key,
            issuer=(root, root_key),
            ca=True,
            not_before=now - timedelta(days=2 * 365),
            not_after=now + timedelta(days=8 * 365),
        )
        # The root's key is not kept: only the issuing CA signs SAP keys.
        return services.create_sap_entry(
            tenant, SAP_CA_ALIAS, issuing_key, [issuing, root], label="SAP demo CA"
        )


def sap_key_subject(tenant: Tenant) -> x509.Name:
    """The subject of a tenant's SAP key; a renewed key keeps it."""
    return name(
        f"{tenant.slug}.integration.demo.sap.example", "SAP SE", unit="SAP Cloud Platform Clients"
    )


def issue_sap_key(
    tenant: Tenant,
    *,
    not_after: datetime,
    not_before: datetime | None = None,
    ca: tuple[crypto.PrivateKey, list[x509.Certificate]] | None = None,
) -> tuple[crypto.PrivateKey, list[x509.Certificate]]:
    """A new SAP key pair for the tenant from the demo SAP CA: (private key, chain leaf first).

    `ca` is what `sap_ca()` returned, to open the CA's key once for many keys.
    """
    ca_key, ca_chain = ca or sap_ca()
    key = new_key()
    leaf = issue(
        sap_key_subject(tenant),
        key,
        issuer=(ca_chain[0], ca_key),
        not_before=not_before or timezone.now() - timedelta(hours=1),
        not_after=not_after,
        dns_name=f"{tenant.slug}.integration.demo.sap.example",
    )
    return key, [leaf, *ca_chain]
