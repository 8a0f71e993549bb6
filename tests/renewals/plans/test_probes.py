"""Renewal plans, step 3 of issue 17: probing the plan's backends against real TLS servers on
127.0.0.1 (one trusting the new root, one only the old root, one silent), in parallel, with the
new key before activation and the active key after it; the command, the admin button and the
limits of #9 for a user's probes."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from keystore import services as keystore_services
from renewals.activation import activate_pending_key, provision_sap_key
from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
from renewals.plans import probing, services
from renewals.plans.models import BackendStatus, PlanBackend
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.renewals import flowfactory as flows
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.plans.conftest import import_flows
from tests.renewals.tlsservers import TLSServer, make_server_pki, silent_listener

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_test_servers")]


@pytest.fixture(scope="module")
def server_pki():
    return make_server_pki("Backend")


@pytest.fixture
def server_trusted(tenant, server_pki):
    return keystore_services.import_certificate(
        tenant, "backend_root", pki_factory.der(server_pki.root)
    )


@pytest.fixture(scope="module")
def new_ca():
    """The CA of the renewed key: its root is the "new root" backends must trust."""
    return pki_factory.make_pki("SAP Renewal")


def mtls(server_pki, client_cas) -> TLSServer:
    return TLSServer(
        server_pki.chain[:2], server_pki.leaf_key, require_client_cert=True, client_cas=client_cas
    )


def channel(number: int, system: str, address: str):
    return flows.channel(
        f"MessageFlow_{number}",
        f"To {system}",
        "SOAP",
        props={"authentication": "Client Certificate", "privateKeyAlias": SAP_ALIAS},
        receiver=system,
        address=address,
    )


def provide_from(tenant, new_ca):
    return provision_sap_key(
        tenant,
        SAP_ALIAS,
        valid_days=385,
        ca=(new_ca.inter_key, [new_ca.inter, new_ca.root]),
        private_key=pki_factory.make_key("ec", fresh=True),
    )


def backends() -> dict[str, PlanBackend]:
    return {backend.system: backend for backend in PlanBackend.objects.all()}


def test_new_root_verified_old_root_and_silent_show_the_failure(
    tenant, sap_entry, sap_pki, server_pki, server_trusted, new_ca, admin_user
):
    with (
        mtls(server_pki, [new_ca.root]) as new_root,
        mtls(server_pki, [sap_pki.root]) as old_root,
        silent_listener() as (_host, silent_port),
    ):
        import_flows(
            tenant,
            channel(1, "NEW_ROOT", f"https://127.0.0.1:{new_root.port}/soap"),
            channel(2, "OLD_ROOT", f"https://127.0.0.1:{old_root.port}/soap"),
            channel(3, "SILENT", f"https://127.0.0.1:{silent_port}/soap"),
            channel(4, "MAILBOX", "sftp://files.example:22/in"),
        )
        pending = provide_from(tenant, new_ca)
        started = time.monotonic()
        report = probing.probe_backends(tenant, SAP_ALIAS, timeout=2, actor=None)
        elapsed = time.monotonic() - started
        found = backends()
        assert found["NEW_ROOT"].status == BackendStatus.VERIFIED, found["NEW_ROOT"].probe_message
        assert found["NEW_ROOT"].probe_ok is True
        assert found["OLD_ROOT"].status == BackendStatus.TO_INFORM
        assert found["OLD_ROOT"].probe_ok is False
        assert "client certificate" in found["OLD_ROOT"].probe_message.lower()
        assert found["SILENT"].probe_ok is False
        assert "did not" in found["SILENT"].probe_message or "time" in (
            found["SILENT"].probe_message.lower()
        )
        assert [b.system for b in report.without_tls] == ["MAILBOX"]
        # The administrators hear of the failures once, with the exact words.
        from renewals.models import NotificationKind, SentNotification

        [failed] = SentNotification.objects.filter(kind=NotificationKind.PROBE_FAILED)
        assert "2 backend(s)" in failed.subject
        assert "OLD_ROOT" in failed.body and "SILENT" in failed.body
        assert "NEW_ROOT" not in failed.body
        # The silent one waits its whole timeout; the others ran beside it, not after it.
        assert elapsed < 2 * 2
        runs = ConnectivityTestRun.objects.filter(key_used=KeyUsed.PENDING)
        assert runs.count() == 3
        assert set(runs.values_list("key_fingerprint", flat=True)) == {pending.fingerprint_sha256}

        # After activation the active key (the new one) is probed; statuses stay as evidence.
        activate_pending_key(tenant, SAP_ALIAS, actor=admin_user)
        with pytest.raises(services.PlanError, match="probe the active key"):
            probing.probe_backends(tenant, SAP_ALIAS, timeout=2)
        out = StringIO()
        with pytest.raises(CommandError, match="2 of 3 probes failed"):
            call_command(
                "probe_backends",
                SAP_ALIAS,
                "--tenant",
                tenant.slug,
                "--active",
                "--timeout",
                "1",
                "--json",
                stdout=out,
            )
    data = json.loads(out.getvalue())
    assert data["key"] == "active"
    by_system = {b["system"]: b for b in data["backends"]}
    assert by_system["NEW_ROOT"]["probe"]["ok"] is True
    assert by_system["OLD_ROOT"]["probe"]["ok"] is False
    assert data["not_probed"] == [{"system": "MAILBOX", "address": "sftp://files.example:22/in"}]
    assert backends()["NEW_ROOT"].status == BackendStatus.VERIFIED


def test_probes_run_in_parallel(tenant, sap_entry, server_trusted, new_ca):
    """Six silent backends, one second each: together about one second, never six."""
    with (
        silent_listener() as (_h, p1),
        silent_listener() as (_h2, p2),
        silent_listener() as (_h3, p3),
        silent_listener() as (_h4, p4),
        silent_listener() as (_h5, p5),
        silent_listener() as (_h6, p6),
    ):
        import_flows(
            tenant,
            *(
                channel(number, f"S{number}", f"https://127.0.0.1:{port}/")
                for number, port in enumerate((p1, p2, p3, p4, p5, p6), start=1)
            ),
        )
        provide_from(tenant, new_ca)
        started = time.monotonic()
        report = probing.probe_backends(tenant, SAP_ALIAS, timeout=1)
        elapsed = time.monotonic() - started
    assert len(report.failed) == 6
    assert elapsed < 3, elapsed


def test_a_users_probes_stay_within_the_connectivity_limits(
    tenant, sap_entry, server_trusted, new_ca, users, settings
):
    settings.CONNECTIVITY_TESTS_PER_MINUTE = 2
    import_flows(
        tenant,
        *(channel(number, f"S{number}", f"https://127.0.0.1:{9}/") for number in (1, 2, 3)),
    )
    provide_from(tenant, new_ca)
    with pytest.raises(services.PlanError, match="more than the 2 a user may start"):
        probing.probe_backends(tenant, SAP_ALIAS, actor=users["IntegrationDeveloper"])
    assert ConnectivityTestRun.objects.count() == 0
    with pytest.raises(services.PlanError, match="not allowed to run connectivity tests"):
        probing.probe_backends(tenant, SAP_ALIAS, actor=users["ReadOnly"])


def test_nothing_to_probe_is_said(tenant, sap_entry, new_ca):
    import_flows(tenant, channel(1, "FILES", "sftp://files.example:22/in"))
    provide_from(tenant, new_ca)
    with pytest.raises(services.PlanError, match="no HTTPS or TLS address|No backend"):
        probing.probe_backends(tenant, SAP_ALIAS)


def test_admin_button(tenant, sap_entry, sap_pki, server_pki, server_trusted, new_ca, users):
    with mtls(server_pki, [new_ca.root]) as server:
        import_flows(tenant, channel(1, "ERP", f"https://127.0.0.1:{server.port}/"))
        pending = provide_from(tenant, new_ca)
        plan_id = services.plan_of(tenant, SAP_ALIAS).pk
        url = reverse("admin:plans_renewalplan_probe", args=[plan_id])
        assert client_for(users["ReadOnly"]).post(url).status_code == 403
        page = client_for(users["IntegrationDeveloper"]).post(url, follow=True)
    html = page.content.decode()
    assert "Probed 1 backends with the new key: 1 succeeded." in html
    assert backends()["ERP"].status == BackendStatus.VERIFIED
    assert pending.fingerprint_sha256 == ConnectivityTestRun.objects.get().key_fingerprint


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("https://erp.example/sap", ("erp.example", 443)),
        ("https://erp.example:8443/x?y=1", ("erp.example", 8443)),
        ("tls://mq.example:5671", ("mq.example", 5671)),
        ("tls://mq.example", None),
        ("http://erp.example/", None),
        ("sftp://files.example:22/", None),
        ("{{receiver_url}}", None),
        ("https://{{host}}/x", None),
        ("https://erp.example:99999/", None),
    ],
)
def test_tls_target(address, target):
    assert probing.tls_target(address) == target


def test_the_scan_probes_once_with_the_active_key_after_an_activation(
    tenant,
    sap_entry,
    server_pki,
    server_trusted,
    new_ca,
    admin_user,
    django_capture_on_commit_callbacks,
):
    """After a manual activation the next scan probes the plan's backends with the active key,
    once: the server trusting the new root succeeds, the one trusting only the old root fails
    and the administrators are told."""
    from renewals.models import NotificationKind, SentNotification
    from renewals.plans.evidence import checklist
    from renewals.plans.models import RenewalPlan
    from renewals.scan import auto_activate_due

    with (
        mtls(server_pki, [new_ca.root]) as new_root,
        mtls(server_pki, [sap_entry_root(sap_entry)]) as old_root,
    ):
        import_flows(
            tenant,
            channel(1, "NEW_ROOT", f"https://127.0.0.1:{new_root.port}/soap"),
            channel(2, "OLD_ROOT", f"https://127.0.0.1:{old_root.port}/soap"),
        )
        pending = provide_from(tenant, new_ca)
        activate_pending_key(tenant, SAP_ALIAS, actor=admin_user)
        with django_capture_on_commit_callbacks(execute=True):
            result = auto_activate_due()
        [report] = result.probed_after
        assert report.key == probing.ACTIVE
        found = backends()
        assert found["NEW_ROOT"].probe_ok is True and found["NEW_ROOT"].probe_key == "active"
        assert found["OLD_ROOT"].probe_ok is False
        assert pending.fingerprint_sha256 == (
            ConnectivityTestRun.objects.filter(host="127.0.0.1").latest("pk").key_fingerprint
        )
        [failed] = SentNotification.objects.filter(kind=NotificationKind.PROBE_FAILED)
        assert "active key" in failed.body and "OLD_ROOT" in failed.body
        plan = RenewalPlan.objects.get(occasion=pending.material_id)
        probes = [item for item in checklist(plan).items if item.kind == "probe"]
        assert sorted(item.done for item in probes) == [False, True]
        runs = ConnectivityTestRun.objects.count()
        # Once: the next scan leaves the plan alone.
        assert auto_activate_due().probed_after == []
        assert ConnectivityTestRun.objects.count() == runs


def sap_entry_root(sap_entry):
    from cryptography import x509

    return x509.load_pem_x509_certificates(sap_entry.chain_pem.encode())[-1]
