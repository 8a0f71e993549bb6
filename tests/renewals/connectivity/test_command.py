"""`manage.py connectivity_test` against real TLS servers: report, JSON, exit status, records.

Exit status: 0 for success, 2 for a test that ran and failed (recorded), 1 for bad input (nothing
attempted, nothing recorded). Errors are CommandError lines, never tracebacks.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import services
from renewals import activation
from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
from tests import pki as pki_factory
from tests.renewals.tlsservers import TLSServer, make_pki, make_server_pki, refused_port

HOST = "127.0.0.1"
pytestmark = pytest.mark.usefixtures("allow_test_servers")


@pytest.fixture(scope="module")
def server_pki():
    return make_server_pki("Backend")


@pytest.fixture(scope="module")
def client_pki():
    return make_pki("Client")


@pytest.fixture
def keystore(tenant, server_pki, client_pki):
    """Tenant A trusts the backend's root and holds the key pair `client_key`."""
    services.import_certificate(tenant, "backend_root", pki_factory.der(server_pki.root))
    data = pki_factory.make_pkcs12_single(
        "client_key", client_pki.leaf_key, client_pki.chain, "secret-pw"
    )
    return services.import_key_pair(tenant, "client_key", data, "secret-pw")


@pytest.fixture
def mtls(server_pki, client_pki):
    with TLSServer(
        server_pki.chain[:2],
        server_pki.leaf_key,
        require_client_cert=True,
        client_cas=[client_pki.root],
    ) as server:
        yield server


def connectivity_test(*args: str) -> str:
    out = io.StringIO()
    call_command("connectivity_test", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_success_exits_zero_and_prints_a_report(keystore, mtls, tenant):
    out = connectivity_test(
        HOST, str(mtls.port), "--tenant", "tenant-a", "--alias", "client_key", "--timeout", "5"
    )
    run = ConnectivityTestRun.objects.get()
    assert run.outcome == "success", run.message
    assert run.actor is None and run.actor_label == "system"
    assert run.key_used == KeyUsed.CURRENT
    assert out.startswith("Outcome:      SUCCESS\n")
    assert f"TLS version:  {run.tls_version}" in out
    assert f"Cipher:       {run.cipher}" in out
    assert "1. CN=localhost" in out and "2. CN=Backend Intermediate CA" in out
    assert "Client certificate requested: yes" in out
    assert "Client certificate accepted:  yes" in out
    assert f"Client cert:  SHA-256 {keystore.fingerprint_sha256}" in out
    assert "PRIVATE KEY" not in out


def test_json_output(keystore, mtls):
    out = connectivity_test(
        HOST, str(mtls.port), "--tenant", "tenant-a", "--alias", "client_key", "--json"
    )
    data = json.loads(out)
    assert data["success"] is True
    assert data["outcome"] == "success"
    assert data["key_used"] == "current"
    assert data["key_fingerprint"] == keystore.fingerprint_sha256
    assert data["client_certificate_accepted"] is True
    assert [cert["subject"] for cert in data["server_chain"]] == [
        "CN=localhost",
        "CN=Backend Intermediate CA",
    ]
    assert "der_b64" not in data["server_chain"][0]


def test_failed_test_exits_two_after_the_report(keystore, tenant):
    out = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command(
            "connectivity_test", HOST, str(refused_port()), "--tenant", "tenant-a", stdout=out
        )
    assert error.value.returncode == 2
    assert str(error.value) == "The connectivity test failed: connection refused."
    assert "FAILED: connection refused" in out.getvalue()
    assert ConnectivityTestRun.objects.get().outcome == "connection refused"


def test_client_certificate_rejected_with_json_exits_two(keystore, server_pki):
    other = make_pki("Unrelated")
    with TLSServer(
        server_pki.chain[:2], server_pki.leaf_key, require_client_cert=True, client_cas=[other.root]
    ) as server:
        out = io.StringIO()
        with pytest.raises(CommandError) as error:
            call_command(
                "connectivity_test",
                HOST,
                str(server.port),
                "--tenant=tenant-a",
                "--alias=client_key",
                "--json",
                stdout=out,
            )
    assert error.value.returncode == 2
    data = json.loads(out.getvalue())
    assert data["outcome"] == "client certificate rejected"
    assert data["client_certificate_accepted"] is False


def test_no_verify_and_untrusted_server(tenant, server_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        with pytest.raises(CommandError) as error:
            connectivity_test(HOST, str(server.port), "--tenant", "tenant-a")
        assert error.value.returncode == 2
        out = connectivity_test(HOST, str(server.port), "--tenant", "tenant-a", "--no-verify")
    assert "Validation:   server certificate not validated" in out
    assert list(ConnectivityTestRun.objects.order_by("id").values_list("outcome", flat=True)) == [
        "server certificate untrusted",
        "success",
    ]


def test_pending_uses_the_new_sap_key(tenant, sap_entry, server_pki):
    new_ca = pki_factory.make_pki("SAP Renewal")
    pending = activation.provision_sap_key(
        tenant,
        sap_entry.alias,
        ca=(new_ca.inter_key, [new_ca.inter, new_ca.root]),
        private_key=pki_factory.make_key("ec", fresh=True),
    )
    services.import_certificate(tenant, "backend_root", pki_factory.der(server_pki.root))
    with TLSServer(
        server_pki.chain[:2],
        server_pki.leaf_key,
        require_client_cert=True,
        client_cas=[new_ca.root],
    ) as server:
        out = connectivity_test(
            HOST, str(server.port), "--tenant", "tenant-a", "--alias", sap_entry.alias, "--pending"
        )
    run = ConnectivityTestRun.objects.get()
    assert run.outcome == "success", run.message
    assert run.key_used == KeyUsed.PENDING
    assert run.key_fingerprint == pending.fingerprint_sha256
    assert "New SAP key (pending)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope"], "Unknown tenant 'nope'."),
        (["--tenant", "tenant-a", "--alias", "missing"], "no entry with alias 'missing'"),
        (["--tenant", "tenant-a", "--alias", "backend_root"], "without a private key"),
        (["--tenant", "tenant-a", "--pending"], "Choose an alias to test its new SAP key."),
        (["--tenant", "tenant-a", "--timeout", "0"], "The timeout must be more than 0"),
        (["--tenant", "tenant-a", "--timeout", "soon"], "The timeout must be more than 0"),
        (["--tenant", "tenant-a", "--timeout", "21"], "at most 20 seconds"),
    ],
)
def test_bad_input_exits_one_without_connecting(keystore, monkeypatch, args, message):
    monkeypatch.setattr(tlsprobe, "probe", pytest.fail)
    with pytest.raises(CommandError, match=message) as error:
        connectivity_test("backend.example", "443", *args)
    assert error.value.returncode == 1
    assert not ConnectivityTestRun.objects.exists()


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        ("backend.example", "0", "The port must be a whole number from 1 to 65535, not '0'."),
        ("backend.example", "https", "The port must be a whole number from 1 to 65535"),
        ("backend.example", "99999", "The port must be a whole number from 1 to 65535"),
        ("https://backend.example", "443", "without a scheme"),
        ("", "443", "Enter a host name."),
    ],
)
def test_bad_target_exits_one_without_connecting(tenant, monkeypatch, host, port, message):
    monkeypatch.setattr(tlsprobe, "probe", pytest.fail)
    with pytest.raises(CommandError, match=message) as error:
        connectivity_test(host, port, "--tenant", "tenant-a")
    assert error.value.returncode == 1
    assert not ConnectivityTestRun.objects.exists()
