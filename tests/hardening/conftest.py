"""Shared pieces of the hardening tests (tests/hardening): hypothesis profiles, the figures the
tests report (races run, faults injected, inputs tried), a snapshot of every row a renewal
touches, and markers that find a private key in any dump, page or log.

Hypothesis profiles (select with HARDENING_PROFILE=<name>; default "hardening-ci"):

* ``hardening-ci``: the suite's budget, derandomized so CI runs the same examples every time.
* ``hardening-thorough``: ten times the examples and longer step sequences, random seeds; for a
  night run (``HARDENING_PROFILE=hardening-thorough pytest tests/hardening``).

HARDENING_FUZZ_INPUTS raises the number of fuzz inputs per parser above the 10,000 minimum;
HARDENING_FUZZ_SEED picks other inputs (the default keeps CI runs alike).
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests import pki as pki_factory

# The renewal fixtures (an SAP CA, `provide`, a waiting key) are shared, not copied.
from tests.renewals.conftest import SAP_ALIAS, expiry, pending, provide, sap_ca  # noqa: F401

PROFILE_ENV = "HARDENING_PROFILE"
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

hypothesis_settings.register_profile(
    "hardening-ci",
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
hypothesis_settings.register_profile(
    "hardening-thorough",
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)


def hypothesis_profile() -> hypothesis_settings:
    """The profile named by HARDENING_PROFILE; it is not loaded globally, so other test
    directories keep hypothesis' defaults."""
    return hypothesis_settings.get_profile(os.environ.get(PROFILE_ENV, "hardening-ci"))


MIN_FUZZ_INPUTS = 10_000


def fuzz_inputs() -> int:
    return max(MIN_FUZZ_INPUTS, int(os.environ.get("HARDENING_FUZZ_INPUTS", "0") or 0))


def fuzz_seed() -> int:
    return int(os.environ.get("HARDENING_FUZZ_SEED", "20250601"))


# -- figures -----------------------------------------------------------------------------------

FIGURES: Counter = Counter()


@pytest.fixture
def figures() -> Counter:
    """Counts that docs/reliability.md quotes; printed at the end of the run."""
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "hardening figures")
        for name, count in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {count:,}")


# -- the state of the renewal tables -----------------------------------------------------------


def _plain(value):
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


def _rows(queryset, *fields) -> list[tuple]:
    # pk first: rows are unique, so sorting never compares a None with a datetime.
    return sorted(
        tuple(_plain(value) for value in row) for row in queryset.values_list("pk", *fields)
    )


def renewal_state() -> dict[str, list[tuple]]:
    """Every row an activation, a revert or a scan may touch, with the sealed key bytes: two
    equal snapshots mean nothing changed, not even a reseal."""
    from keystore.models import AuditEvent, KeystoreEntry
    from renewals.models import PendingSapKey, SapKeyBackup, SentNotification

    material = ("alias", "fingerprint_sha256", "version", "kek_id", "sealed_private_key")
    return {
        "entries": _rows(
            KeystoreEntry.objects, *material, "chain_pem", "active_since", "modified_by_label"
        ),
        "pending": _rows(PendingSapKey.objects, *material, "entry_id", "source"),
        "history": _rows(SapKeyBackup.objects, *material, "active_until", "activated_by_label"),
        "audit": _rows(AuditEvent.objects, "alias", "action", "old_fingerprint", "new_fingerprint"),
        "mails": _rows(
            SentNotification.objects, "kind", "alias", "fingerprint", "sent_at", "attempts"
        ),
    }


# -- private key markers -----------------------------------------------------------------------


def _private_value(key) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        number = key.private_numbers().d
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        number = key.private_numbers().private_value
    elif isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    else:
        raise TypeError(f"no markers for {type(key).__name__}")
    # Minimal length, as DER writes it: a fixed width would add leading zeros for a short value.
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def _second_half_lines(der: bytes) -> list[bytes]:
    """64-character Base64 lines (as PEM writes them) of the second half of a DER key: the
    first half of an RSA key is its public modulus, which certificates show too."""
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return [line for line in lines[len(lines) // 2 : -1] if len(line) == 64]


def secret_markers(key) -> list[bytes]:
    """Byte strings found wherever `key` is written out in any usual form: a PEM header, the
    private value raw, in hex (both cases) and in Base64, PKCS#8 and traditional PEM lines."""
    value = _private_value(key)[:32]
    markers = [
        b"PRIVATE KEY-----",
        value,
        value.hex().encode(),
        value.hex().upper().encode(),
        base64.b64encode(value)[:40],
    ]
    formats = [serialization.PrivateFormat.PKCS8]
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        formats.append(serialization.PrivateFormat.TraditionalOpenSSL)
    for private_format in formats:
        der = key.private_bytes(
            serialization.Encoding.DER, private_format, serialization.NoEncryption()
        )
        markers += _second_half_lines(der)
    return markers


def leaked(blob: bytes | str, keys) -> list[str]:
    """Which of `keys` show up in `blob`, as "key #n: marker" lines (empty when none)."""
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else bytes(blob)
    found = []
    for number, key in enumerate(keys):
        for marker in secret_markers(key):
            if marker in data:
                found.append(f"key #{number}: {marker[:24]!r}")
    return found


# -- a tenant with one of everything, and every URL of the site ----------------------------------


@dataclass
class AdminWorld:
    """Tenant A holds one row of every kind the admin shows; tenant B one entry."""

    users: dict
    superuser: object
    tenant: object
    other_tenant: object
    objects: dict[str, object]  # "app_label.model_name" -> a row of tenant A (or global)
    keys: list  # every private key in the database

    def object_for(self, label: str):
        return self.objects.get(label)


@pytest.fixture
def admin_world(
    users,
    tenant,
    other_tenant,
    key_pair_entry,
    cert_entry,
    sap_entry,
    provide,  # noqa: F811 (the shared fixture imported above)
    pki,
):
    from django.contrib.auth.models import Group
    from django.utils import timezone
    from django_q.models import Schedule

    from keystore import services
    from keystore.models import AuditEvent
    from renewals.activation import activate_pending_key
    from renewals.connectivity.models import ConnectivityTestRun
    from renewals.models import ScanRun, SentNotification
    from renewals.plans.models import RenewalPlan, TenantPlanSettings
    from renewals.tasks import ensure_schedules
    from renewals.whereused.importing import import_flow_exports
    from tests.conftest import make_user
    from tests.renewals import flowfactory as flows

    admin = users["Administrator"]
    first = provide(tenant)
    activate_pending_key(tenant, SAP_ALIAS, actor=admin)
    waiting = provide(tenant)
    backup = sap_entry.backups.get()
    services.import_certificate(other_tenant, "b_root", pki_factory.der(pki.root))
    xml = flows.iflw(
        flows.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": SAP_ALIAS},
        )
    )
    [imported] = import_flow_exports(tenant, [("flow.zip", flows.flow_zip("com.example.a", xml))])
    assert imported.ok, imported.message
    run = ConnectivityTestRun.objects.create(
        tenant=tenant,
        actor=admin,
        actor_label="admin_a",
        started_at=timezone.now(),
        host="erp.example.com",
        port=443,
        timeout=5,
        verify_server=True,
        use_system_trust=False,
        key_used="none",
        outcome="server certificate untrusted",
        message="The server's certificate is not trusted.",
        server_chain=[
            {
                "subject": pki.root.subject.rfc4514_string(),
                "issuer": pki.root.issuer.rfc4514_string(),
                "not_before": pki.root.not_valid_before_utc.isoformat(),
                "not_after": pki.root.not_valid_after_utc.isoformat(),
                "fingerprint_sha256": "00:11",
                "self_signed": True,
                "der_b64": base64.b64encode(pki_factory.der(pki.root)).decode(),
            }
        ],
    )
    ensure_schedules()
    from keystore_site.api.clients import create_api_client

    api_client, _secret = create_api_client(tenant, "matrix-script", "ReadOnly")
    objects = {
        "api.apiclient": api_client,
        "keystore.tenant": tenant,
        "keystore.keystoreentry": key_pair_entry,
        "keystore.auditevent": AuditEvent.objects.filter(tenant=tenant).first(),
        "renewals.pendingsapkey": waiting,
        "renewals.sapkeybackup": backup,
        "renewals.sentnotification": SentNotification.objects.filter(tenant=tenant).first(),
        "renewals.scanrun": ScanRun.objects.create(started_at=timezone.now(), as_of=timezone.now()),
        "whereused.integrationflow": imported.flow_id,
        "plans.renewalplan": RenewalPlan.objects.get(occasion=waiting.material_id),
        "plans.tenantplansettings": TenantPlanSettings.objects.create(tenant=tenant),
        "connectivity.connectivitytestrun": run,
        "auth.user": admin,
        "auth.group": Group.objects.first(),
        "django_q.schedule": Schedule.objects.first(),
    }
    keys = [pki.leaf_key, first.open_private_key(), waiting.open_private_key()]
    keys += [backup.open_private_key(), sap_entry.open_private_key()]
    superuser = make_user("root_user")
    superuser.is_superuser = True
    superuser.save()
    return AdminWorld(users, superuser, tenant, other_tenant, objects, keys)


@dataclass(frozen=True)
class Route:
    pattern: str  # the whole route, e.g. "admin/keystore/keystoreentry/<int:pk>/rename/"
    name: str | None  # "admin:keystore_keystoreentry_rename"
    arguments: tuple[str, ...]  # the names of its parameters
    model: str | None  # "keystore.keystoreentry" for a ModelAdmin's URLs


def site_routes() -> list[Route]:
    """Every URL pattern of the site, found by walking the URL configuration (admin included)."""
    from django.contrib import admin
    from django.urls import URLPattern, URLResolver, get_resolver

    prefixes = {
        f"{model._meta.app_label}_{model._meta.model_name}_": model._meta.label_lower
        for model in admin.site._registry
    }

    def walk(patterns, prefix: str, namespace: str):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry.url_patterns, prefix + str(entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                name = f"{namespace}{entry.name}" if entry.name else None
                bare = entry.name or ""
                model = next((label for p, label in prefixes.items() if bare.startswith(p)), None)
                arguments = tuple(entry.pattern.regex.groupindex)
                yield Route(prefix + str(entry.pattern), name, arguments, model)

    return list(walk(get_resolver().url_patterns, "/", ""))
