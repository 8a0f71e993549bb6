"""The demo keystore: two tenants, an SAP-like PKI, tenant entries in every state, three users.

`seed()` is the one way in (the `seed_demo` and `run_demo` commands call it). It is idempotent:
tenants, entries and users are looked up before anything is made, so a second run adds no row
and keeps every fingerprint.

The SAP keys come from the SAP stand-in CA (keystore.sapca), so that a renewed SAP key (New SAP
Keys) comes from the same CA as the key it replaces, as at SAP.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from keystore import crypto, permissions, roles, services
from keystore.models import KeystoreEntry, Tenant
from keystore.sapca import issue, issue_sap_key, name, new_key, sap_ca, self_signed_ca

DEMO_TENANT = ("demo", "Demo tenant")
ACME_TENANT = ("acme", "ACME Corp")

SAP_KEY_ALIAS = "sap_cloudintegrationcertificate"

#: How long the seeded SAP key is still valid: inside the 60 days in which SAP renews it.
SAP_KEY_DAYS_LEFT = 20

DEMO_URL = "http://127.0.0.1:8000/admin/"

#: username -> role on the demo tenant.
DEMO_USERS = (
    ("admin", permissions.ADMINISTRATOR),
    ("developer", permissions.INTEGRATION_DEVELOPER),
    ("reader", permissions.READ_ONLY),
)


# -- certificates ----------------------------------------------------------------------------


# -- the seed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    tenant: str
    email: str


@dataclass
class SeedResult:
    tenants: list[Tenant]
    created: list[str] = field(default_factory=list)  # "tenant/alias" rows made by this run
    logins: list[DemoLogin] = field(default_factory=list)


def _tenant(slug: str, name: str) -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
    return tenant


def _missing(tenant: Tenant, alias: str) -> bool:
    return not KeystoreEntry.objects.filter(tenant=tenant, alias=alias).exists()


def _seed_sap_key(tenant: Tenant, now: datetime, result: SeedResult, ca) -> None:
    if not _missing(tenant, SAP_KEY_ALIAS):
        return
    key, chain = issue_sap_key(
        tenant,
        ca=ca,
        not_before=now - timedelta(days=365 - SAP_KEY_DAYS_LEFT),
        not_after=now + timedelta(days=SAP_KEY_DAYS_LEFT),
    )
    services.create_sap_entry(tenant, SAP_KEY_ALIAS, key, chain)
    result.created.append(f"{tenant.slug}/{SAP_KEY_ALIAS}")


def _seed_customer_key_pair(tenant: Tenant, alias: str, now: datetime, result: SeedResult) -> None:
    """A tenant key pair issued by the customer's own CA (Customer Root CA -> Issuing CA)."""
    if not _missing(tenant, alias):
        return
    root_key, root = self_signed_ca(
        "Customer Root CA (demo)",
        "Demo Customer",
        not_before=now - timedelta(days=3 * 365),
        not_after=now + timedelta(days=7 * 365),
    )
    issuing_key = new_key()
    issuing = issue(
        name("Customer Issuing CA (demo)", "Demo Customer"),
        issuing_key,
        issuer=(root, root_key),
        ca=True,
        not_before=now - timedelta(days=365),
        not_after=now + timedelta(days=4 * 365),
    )
    key = new_key()
    leaf = issue(
        name(f"{alias.replace('_', '-')}.{tenant.slug}.example", "Demo Customer"),
        key,
        issuer=(issuing, issuing_key),
        not_before=now - timedelta(hours=1),
        not_after=now + timedelta(days=365),
    )
    data = crypto.to_pkcs12(alias, key, [leaf, issuing, root], "demo-seed")
    services.import_key_pair(tenant, alias, data, "demo-seed")
    result.created.append(f"{tenant.slug}/{alias}")


def _seed_trusted_certificate(
    tenant: Tenant,
    alias: str,
    common_name: str,
    *,
    not_before: datetime,
    not_after: datetime,
    result: SeedResult,
) -> None:
    if not _missing(tenant, alias):
        return
    _key, cert = self_signed_ca(
        common_name, "Partner AG", not_before=not_before, not_after=not_after
    )
    # Expired certificates are refused for users; the demo wants one to show how it looks.
    services.import_certificate(tenant, alias, crypto.to_der(cert), allow_expired=True)
    result.created.append(f"{tenant.slug}/{alias}")


def _demo_password(username: str) -> str:
    return os.environ.get("DEMO_PASSWORD") or f"{username}-demo-pass"


def _seed_user(username: str, role: str, tenant: Tenant) -> DemoLogin:
    password = _demo_password(username)
    email = f"{username}@{tenant.slug}.example"
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": email, "is_staff": True}
    )
    # Only touch the hash when it does not fit, so a second run changes nothing.
    if created or not user.check_password(password):
        user.set_password(password)
        user.save(update_fields=["password"])
    if not user.is_active:
        user.is_active = True
        user.save(update_fields=["is_active"])
    roles.assign_role(user, tenant, role)
    return DemoLogin(username, password, role, tenant.slug, email)


def _seed_renewals(tenant: Tenant) -> None:
    """Let the renewals app add one New SAP Key and its demo flows, when it offers a demo hook
    (the keystore app does not import renewals)."""
    try:
        renewals_demo = importlib.import_module("renewals.demo")
    except ModuleNotFoundError as error:
        if error.name not in {"renewals.demo", "renewals"}:
            raise  # renewals.demo exists but is broken: say so
        return
    for hook in ("seed_pending_key", "seed_flows"):
        if hasattr(renewals_demo, hook):
            getattr(renewals_demo, hook)(tenant)


def seed(*, now: datetime | None = None) -> SeedResult:
    """Create (or keep) the whole demo; returns the tenants, what was made and the logins."""
    now = now or timezone.now()
    with transaction.atomic():
        demo = _tenant(*DEMO_TENANT)
        acme = _tenant(*ACME_TENANT)
        result = SeedResult(tenants=[demo, acme])
        ca = sap_ca()

        _seed_sap_key(demo, now, result, ca)
        _seed_customer_key_pair(demo, "erp_client", now, result)
        _seed_trusted_certificate(
            demo,
            "partner_root_ca",
            "Partner Root CA (demo)",
            not_before=now - timedelta(days=2 * 365),
            not_after=now + timedelta(days=8 * 365),
            result=result,
        )
        _seed_trusted_certificate(
            demo,
            "old_partner_root",
            "Old Partner Root CA (demo)",
            not_before=now - timedelta(days=5 * 365),
            not_after=now - timedelta(days=30),
            result=result,
        )
        _seed_trusted_certificate(
            demo,
            "backend_ca_expiring",
            "Backend CA (demo)",
            not_before=now - timedelta(days=3 * 365),
            not_after=now + timedelta(days=10),
            result=result,
        )

        _seed_sap_key(acme, now, result, ca)
        _seed_trusted_certificate(
            acme,
            "acme_partner_root",
            "ACME Partner Root CA (demo)",
            not_before=now - timedelta(days=365),
            not_after=now + timedelta(days=5 * 365),
            result=result,
        )

        result.logins = [_seed_user(username, role, demo) for username, role in DEMO_USERS]
        _seed_renewals(demo)
    return result


def login_table(logins: list[DemoLogin], url: str = DEMO_URL) -> str:
    """The demo logins as printed by seed_demo and run_demo (demo passwords, meant to be seen)."""
    rows = [("username", "password", "role", "tenant")] + [
        (login.username, login.password, login.role, login.tenant) for login in logins
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"Log in at {url}"]
    lines += [
        "  " + "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip()
        for row in rows
    ]
    lines.append(
        "These users see the demo tenant. To see every tenant (demo and acme) and assign "
        "roles, create a superuser: python manage.py createsuperuser"
    )
    return "\n".join(lines)
