"""The TLS connectivity test end to end: service, records, admin pages and their permissions.

Every test that connects talks to a real endpoint on 127.0.0.1 started here (a Python `ssl`
server, `openssl s_server -Verify` where the binary exists, a silent TCP listener, a closed
port). Tenant key pairs come from tests/pki.py and are stored in the keystore like real entries,
so the key really travels sealed row -> memory -> OpenSSL -> the server, which records the client
certificate it saw.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from keystore import services
from keystore.models import AuditEvent, EntryType, KeystoreEntry
from renewals import activation
from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
from renewals.connectivity.probe import Outcome
from renewals.connectivity.services import (
    ConnectivityError,
    add_server_root_to_keystore,
    normalized_fingerprint,
    run_connectivity_test,
)
from tests import pki as pki_factory
from tests.conftest import ROLE_NAMES, client_for, make_user
from tests.renewals.tlsservers import (
    TLSServer,
    make_pki,
    make_server_pki,
    openssl_s_server,
    refused_port,
    silent_listener,
)

RUNNERS = ("IntegrationDeveloper", "Administrator")  # hold NodeManager.readcredentials on A
HOST = "127.0.0.1"
pytestmark = pytest.mark.usefixtures("allow_test_servers")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# -- servers and keystore content --------------------------------------------------------------


@pytest.fixture(scope="module")
def server_pki():
    """The backend's PKI: leaf for 127.0.0.1/localhost under an intermediate and a root."""
    return make_server_pki("Backend")


@pytest.fixture
def server_trusted(tenant, server_pki):
    """The backend's root as a trusted certificate of tenant A."""
    return services.import_certificate(tenant, "backend_root", pki_factory.der(server_pki.root))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(data: bytes) -> str:
    return normalized_fingerprint(hashlib.sha256(data).hexdigest())


def mtls_server(server_pki, client_cas, **kwargs) -> TLSServer:
    """Sends leaf + intermediate; requires a client certificate that chains to `client_cas`."""
    return TLSServer(
        server_pki.chain[:2],
        server_pki.leaf_key,
        require_client_cert=True,
        client_cas=client_cas,
        **kwargs,
    )


def client_cert_seen(server: TLSServer) -> bytes | None:
    """The client certificate the server received on its last connection (its thread may still
    be a moment behind the probe, so wait for its handshake to finish)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        last = server.connections[-1] if server.connections else None
        if last is not None and (last.version or last.error):
            return last.peer_cert_der
        time.sleep(0.01)
    raise AssertionError("the server saw no finished handshake")


def run(tenant, port, **kwargs) -> ConnectivityTestRun:
    kwargs.setdefault("timeout", 5)
    return run_connectivity_test(tenant, HOST, port, **kwargs)


@pytest.fixture(scope="module")
def client_pki():
    """The tenant's client key pair: leaf under an intermediate under a root (EC: fast)."""
    return make_pki("Client")


def store_key_pair(tenant, alias: str, key, chain) -> KeystoreEntry:
    data = pki_factory.make_pkcs12_single(alias, key, chain, "secret-pw")
    return services.import_key_pair(tenant, alias, data, "secret-pw")


@pytest.fixture
def client_entry(tenant, client_pki):
    """Key pair `client_key` of tenant A with its whole chain."""
    return store_key_pair(tenant, "client_key", client_pki.leaf_key, client_pki.chain)


@pytest.fixture
def leaf_only_entry(tenant, client_pki):
    """The same key as `client_entry`, stored with its leaf certificate only."""
    return store_key_pair(tenant, "leaf_only", client_pki.leaf_key, [client_pki.leaf])


@pytest.fixture
def partner_root(tenant):
    """A trusted certificate (no private key) of tenant A."""
    return services.import_certificate(tenant, "partner_root", der(make_pki("Partner").root))


@pytest.fixture
def new_sap_ca():
    """The CA of the renewed SAP key: a backend trusting only it accepts only the new key."""
    return pki_factory.make_pki("SAP Renewal")


@pytest.fixture
def pending_key(tenant, sap_entry, new_sap_ca):
    return activation.provision_sap_key(
        tenant,
        sap_entry.alias,
        ca=(new_sap_ca.inter_key, [new_sap_ca.inter, new_sap_ca.root]),
        private_key=pki_factory.make_key("ec", fresh=True),
    )


# -- the service against real servers ----------------------------------------------------------


def test_success_with_key_pair_sends_whole_chain_and_is_recorded(
    tenant, client_entry, server_trusted, server_pki, client_pki, users
):
    developer = users["IntegrationDeveloper"]
    with mtls_server(server_pki, [client_pki.root]) as server:
        result = run(tenant, server.port, alias="client_key", actor=developer)
        seen = client_cert_seen(server)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert result.succeeded
    assert result.tls_version == "TLSv1.3"
    assert result.cipher
    assert result.client_certificate_requested is True
    assert result.client_certificate_sent is True
    assert result.client_certificate_accepted is True
    assert seen is not None and fingerprint(seen) == client_entry.fingerprint_sha256
    # The record, read back from the database.
    stored = ConnectivityTestRun.objects.get()
    assert stored.pk == result.pk
    assert (stored.tenant, stored.actor, stored.actor_label) == (tenant, developer, "developer")
    assert (stored.host, stored.port, stored.alias) == (HOST, server.port, "client_key")
    assert stored.key_used == KeyUsed.CURRENT
    assert stored.key_fingerprint == client_entry.fingerprint_sha256
    assert stored.outcome == "success"
    assert [c["subject"] for c in stored.server_chain] == [
        "CN=localhost",
        "CN=Backend Intermediate CA",
    ]
    assert base64.b64decode(stored.server_chain[0]["der_b64"]) == der(server_pki.leaf)
    assert stored.server_chain[0]["fingerprint_sha256"] == fingerprint(der(server_pki.leaf))
    assert stored.elapsed_ms >= 0


def test_success_against_openssl_s_server_with_verify(
    tenant, client_entry, server_trusted, server_pki, client_pki, admin_client
):
    with openssl_s_server(
        server_pki.chain[:2], server_pki.leaf_key, client_cas=[client_pki.root]
    ) as (host, port):
        result = run_connectivity_test(tenant, host, port, alias="client_key", timeout=5)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert result.client_certificate_accepted is True
    # s_server names its -CAfile subjects as the issuers it accepts; the page shows them.
    assert result.acceptable_ca_names == ["CN=Client Root CA"]
    page = admin_client.get(url("result", result.pk)).content.decode()
    assert '<th scope="row">Issuers the server accepts</th><td>CN=Client Root CA</td>' in page


def test_rejected_when_the_server_trusts_another_ca(
    tenant, client_entry, server_trusted, server_pki
):
    other = pki_factory.make_pki("Unrelated")
    with mtls_server(server_pki, [other.root]) as server:
        result = run(tenant, server.port, alias="client_key")
    assert result.outcome == Outcome.CLIENT_CERT_REJECTED, result.message
    assert result.client_certificate_sent is True
    assert result.client_certificate_accepted is False
    assert "does not trust the issuer" in result.message
    assert ConnectivityTestRun.objects.get().outcome == "client certificate rejected"


def test_rejected_by_openssl_when_it_trusts_another_ca(
    tenant, client_entry, server_trusted, server_pki
):
    other = pki_factory.make_pki("Unrelated")
    with openssl_s_server(server_pki.chain[:2], server_pki.leaf_key, client_cas=[other.root]) as (
        host,
        port,
    ):
        result = run_connectivity_test(tenant, host, port, alias="client_key", timeout=5)
    assert result.outcome == Outcome.CLIENT_CERT_REJECTED, result.message


@pytest.mark.parametrize("server_kind", ["python", "openssl"])
def test_leaf_only_is_rejected_by_a_server_that_knows_only_the_root(
    tenant, leaf_only_entry, client_entry, server_trusted, server_pki, client_pki, server_kind
):
    """The same key: leaf alone is rejected, the whole chain (leaf + intermediate) accepted."""

    def both(host, port):
        return (
            run_connectivity_test(tenant, host, port, alias="leaf_only", timeout=5),
            run_connectivity_test(tenant, host, port, alias="client_key", timeout=5),
        )

    if server_kind == "python":
        with mtls_server(server_pki, [client_pki.root]) as server:
            leaf_only, whole = both(HOST, server.port)
    else:
        with openssl_s_server(
            server_pki.chain[:2], server_pki.leaf_key, client_cas=[client_pki.root]
        ) as (
            host,
            port,
        ):
            leaf_only, whole = both(host, port)
    assert leaf_only.outcome == Outcome.CLIENT_CERT_REJECTED, leaf_only.message
    assert "Only the leaf certificate was sent" in leaf_only.message
    assert whole.outcome == Outcome.SUCCESS, whole.message


def test_server_that_does_not_ask_for_a_certificate(
    tenant, client_entry, server_trusted, server_pki
):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = run(tenant, server.port, alias="client_key")
        seen = client_cert_seen(server)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert result.client_certificate_requested is False
    assert result.client_certificate_sent is False
    assert result.client_certificate_accepted is None
    assert "did not ask for a client certificate" in result.message
    assert seen is None


def test_client_certificate_required_but_none_configured(
    tenant, server_trusted, server_pki, client_pki
):
    with mtls_server(server_pki, [client_pki.root]) as server:
        result = run(tenant, server.port)
    assert result.outcome == Outcome.CLIENT_CERT_REQUIRED, result.message
    assert result.key_used == KeyUsed.NONE
    assert result.key_fingerprint == ""


def test_untrusted_server_certificate_keeps_the_chain(tenant, client_entry, server_pki):
    """Nothing in the tenant's keystore trusts the backend's root."""
    with TLSServer(server_pki.chain, server_pki.leaf_key) as server:
        result = run(tenant, server.port)
    assert result.outcome == Outcome.SERVER_CERT_UNTRUSTED, result.message
    assert [c["self_signed"] for c in result.server_chain] == [False, False, True]
    assert result.server_chain[2]["fingerprint_sha256"] == fingerprint(der(server_pki.root))


def test_trust_comes_from_certificate_entries_only(tenant, server_pki, client_pki):
    """A key pair whose chain happens to contain the backend's root is not a trust anchor."""
    data = pki_factory.make_pkcs12_single(
        "mine", server_pki.inter_key, [server_pki.inter, server_pki.root], "secret-pw"
    )
    services.import_key_pair(tenant, "backend_inter_key", data, "secret-pw")
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        untrusted = run(tenant, server.port)
        services.import_certificate(tenant, "backend_root", der(server_pki.root))
        trusted = run(tenant, server.port)
    assert untrusted.outcome == Outcome.SERVER_CERT_UNTRUSTED
    assert trusted.outcome == Outcome.SUCCESS, trusted.message


def test_validation_off_accepts_an_untrusted_server(tenant, server_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = run(tenant, server.port, verify_server=False, use_system_trust=True)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert (result.verify_server, result.use_system_trust) == (False, False)


def test_expired_server_certificate(tenant):
    now = datetime.now(UTC)
    expired = make_server_pki(
        "Expired", leaf_not_before=now - timedelta(days=30), leaf_not_after=now - timedelta(days=1)
    )
    services.import_certificate(tenant, "expired_root", der(expired.root))
    with TLSServer(expired.chain[:2], expired.leaf_key) as server:
        result = run(tenant, server.port)
    assert result.outcome == Outcome.SERVER_CERT_EXPIRED, result.message


def test_server_certificate_for_another_host(tenant):
    wrong = make_server_pki("Wrong", leaf_cn="other.example", san_dns=["other.example"], san_ip=[])
    services.import_certificate(tenant, "wrong_root", der(wrong.root))
    with TLSServer(wrong.chain[:2], wrong.leaf_key) as server:
        result = run(tenant, server.port)
    assert result.outcome == Outcome.SERVER_CERT_WRONG_HOST, result.message
    assert "other.example" in result.message


def test_refused_port(tenant):
    result = run(tenant, refused_port())
    assert result.outcome == Outcome.CONNECTION_REFUSED
    assert ConnectivityTestRun.objects.get().outcome == "connection refused"


def test_listener_that_never_answers_times_out(tenant):
    with silent_listener() as (host, port):
        started = time.monotonic()
        result = run_connectivity_test(tenant, host, port, timeout=1)
    assert result.outcome == Outcome.TIMEOUT
    assert time.monotonic() - started < 4
    assert result.timeout == 1


def test_pending_key_option_uses_the_new_sap_key(
    tenant, sap_entry, pending_key, new_sap_ca, server_trusted, server_pki
):
    """The backend trusts only the renewed key's CA: only the pending key gets through."""
    with mtls_server(server_pki, [new_sap_ca.root]) as server:
        with_pending = run(tenant, server.port, alias=sap_entry.alias, include_pending=True)
        seen = client_cert_seen(server)
        without = run(tenant, server.port, alias=sap_entry.alias)
    assert with_pending.outcome == Outcome.SUCCESS, with_pending.message
    assert with_pending.key_used == KeyUsed.PENDING
    assert with_pending.key_fingerprint == pending_key.fingerprint_sha256
    assert fingerprint(seen) == pending_key.fingerprint_sha256 != sap_entry.fingerprint_sha256
    assert "new SAP key" in with_pending.key_note
    # Without the option, the current key goes out and this backend refuses it.
    assert without.outcome == Outcome.CLIENT_CERT_REJECTED, without.message
    assert without.key_used == KeyUsed.CURRENT
    assert without.key_fingerprint == sap_entry.fingerprint_sha256


def test_pending_option_without_a_waiting_key_uses_the_current_key_and_says_so(
    tenant, sap_entry, sap_pki, server_trusted, server_pki
):
    with mtls_server(server_pki, [sap_pki.root]) as server:
        result = run(tenant, server.port, alias=sap_entry.alias, include_pending=True)
        seen = client_cert_seen(server)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert result.key_used == KeyUsed.CURRENT
    assert result.include_pending is True
    assert fingerprint(seen) == sap_entry.fingerprint_sha256
    assert result.key_note == (
        f"No new SAP key is waiting for {sap_entry.alias}; its current key was used."
    )


def test_no_key_material_in_the_record_or_on_disk(
    tenant, client_entry, server_trusted, server_pki, client_pki, tmp_path, monkeypatch
):
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    with mtls_server(server_pki, [client_pki.root]) as server:
        run(tenant, server.port, alias="client_key")
    assert os.listdir(base) == []  # the one-time key file and its directory are gone
    row = repr(list(ConnectivityTestRun.objects.values()))
    key_der = client_pki.leaf_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert "PRIVATE KEY" not in row
    assert base64.b64encode(key_der).decode()[:64] not in row
    assert key_der.hex()[:64] not in row


# -- bad input: a clear message, no connection, no record ------------------------------------


@pytest.fixture
def no_connection(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(tlsprobe, "probe", forbidden)


@pytest.mark.parametrize(
    ("host", "port", "options", "fragment"),
    [
        ("", 443, {}, "Enter a host name"),
        ("https://backend.example", 443, {}, "without a scheme"),
        ("backend.example/path", 443, {}, "without a path"),
        ("bad host", 443, {}, "must not contain spaces"),
        ("backend.example:443", 443, {}, "Enter the port separately"),
        ("backend.example", 0, {}, "from 1 to 65535"),
        ("backend.example", 65536, {}, "from 1 to 65535"),
        ("backend.example", 443, {"timeout": 0}, "The timeout must be"),
        ("backend.example", 443, {"timeout": 21}, "The timeout must be"),
        ("backend.example", 443, {"timeout": float("nan")}, "The timeout must be"),
        ("backend.example", 443, {"alias": "no_such_alias"}, "no entry with alias"),
        ("backend.example", 443, {"alias": "partner_root"}, "without a private key"),
        ("backend.example", 443, {"alias": "b_key"}, "no entry with alias 'b_key'"),
        ("backend.example", 443, {"alias": " client_key"}, "white space"),
        ("backend.example", 443, {"alias": "x" * 300}, "longer than 250"),
        ("backend.example", 443, {"include_pending": True}, "Choose an alias"),
    ],
)
def test_bad_input_is_refused_before_connecting(
    tenant,
    other_tenant,
    client_entry,
    partner_root,
    client_pki,
    no_connection,
    host,
    port,
    options,
    fragment,
):
    store_key_pair(other_tenant, "b_key", client_pki.leaf_key, client_pki.chain)
    with pytest.raises(ConnectivityError, match=fragment):
        run_connectivity_test(tenant, host, port, **options)
    assert not ConnectivityTestRun.objects.exists()


def test_users_without_readcredentials_cannot_run_tests(tenant, users, no_connection):
    for role in ("none", "ReadOnly", "other_admin"):
        with pytest.raises(ConnectivityError, match="not allowed to run connectivity tests"):
            run_connectivity_test(tenant, "backend.example", 443, actor=users[role])
    assert not ConnectivityTestRun.objects.exists()


# -- adding the server's root ----------------------------------------------------------------


@pytest.fixture
def untrusted_run(tenant, server_pki):
    """A recorded test against a backend that sends its whole chain, root included."""
    with TLSServer(server_pki.chain, server_pki.leaf_key) as server:
        result = run(tenant, server.port)
    assert result.outcome == Outcome.SERVER_CERT_UNTRUSTED
    return result


def test_add_root_then_the_test_succeeds(tenant, users, server_pki):
    admin_user = users["Administrator"]
    with TLSServer(server_pki.chain, server_pki.leaf_key) as server:
        before = run(tenant, server.port, actor=admin_user)
        entry = add_server_root_to_keystore(
            before,
            2,
            "backend_root",
            before.server_chain[2]["fingerprint_sha256"].replace(":", "").lower(),
            actor=admin_user,
        )
        after = run(tenant, server.port, actor=admin_user)
    assert before.outcome == Outcome.SERVER_CERT_UNTRUSTED
    assert entry.entry_type == EntryType.CERTIFICATE
    assert entry.certificate() == server_pki.root
    assert entry.modified_by == admin_user
    assert AuditEvent.objects.filter(alias="backend_root", action="add").count() == 1
    assert after.outcome == Outcome.SUCCESS, after.message


def test_a_root_at_the_top_of_a_stored_chain_counts_as_in_the_keystore(
    untrusted_run, users, tenant, server_pki
):
    bundle = pki_factory.pem(server_pki.inter, server_pki.root)
    services.import_certificate(tenant, "backend_chain", bundle)
    fp = untrusted_run.server_chain[2]["fingerprint_sha256"]
    with pytest.raises(ConnectivityError, match="already, as 'backend_chain'"):
        add_server_root_to_keystore(untrusted_run, 2, "root", fp, actor=users["Administrator"])
    assert KeystoreEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("index", "confirmed", "fragment"),
    [
        (2, "00:11:22", "does not match"),
        (2, "", "does not match"),
        (0, "leaf", "Only the root certificate"),
        (7, "x", "no such certificate"),
        (-1, "x", "no such certificate"),
    ],
)
def test_add_root_refusals_change_nothing(untrusted_run, users, index, confirmed, fragment):
    if confirmed == "leaf":
        confirmed = untrusted_run.server_chain[0]["fingerprint_sha256"]
    before = set(KeystoreEntry.objects.values_list("alias", flat=True))
    with pytest.raises(ConnectivityError, match=fragment):
        add_server_root_to_keystore(
            untrusted_run, index, "backend_root", confirmed, actor=users["Administrator"]
        )
    assert set(KeystoreEntry.objects.values_list("alias", flat=True)) == before


def test_add_root_twice_and_without_permission(untrusted_run, users):
    fp = untrusted_run.server_chain[2]["fingerprint_sha256"]
    with pytest.raises(ConnectivityError, match="not allowed to add certificates"):
        add_server_root_to_keystore(
            untrusted_run, 2, "backend_root", fp, actor=users["IntegrationDeveloper"]
        )
    assert not KeystoreEntry.objects.exists()
    admin_user = users["Administrator"]
    with pytest.raises(ConnectivityError, match="reserved for SAP"):
        add_server_root_to_keystore(untrusted_run, 2, "sap_root", fp, actor=admin_user)
    add_server_root_to_keystore(untrusted_run, 2, "backend_root", fp, actor=admin_user)
    # A second click (or another alias) does not add the same root again.
    with pytest.raises(ConnectivityError, match="already, as 'backend_root'"):
        add_server_root_to_keystore(untrusted_run, 2, "again", fp, actor=admin_user)
    assert list(KeystoreEntry.objects.values_list("alias", flat=True)) == ["backend_root"]


# -- admin pages -------------------------------------------------------------------------------
# Each permission-matrix test walks all five roles (tests/conftest.py `users`) in one test, so
# the users are made once per page rather than once per role.


def url(name: str, *args) -> str:
    return reverse(f"admin:connectivity_connectivitytestrun_{name}", args=args)


def form_data(tenant, port, **extra) -> dict:
    data = {"tenant": tenant.pk, "host": HOST, "port": port, "timeout": "5", "entry": ""}
    data.update(extra)
    return data


def assert_no_key_material(html: str) -> None:
    assert "PRIVATE KEY" not in html
    assert "sealed_private_key" not in html


@pytest.fixture
def admin_client(tenant):
    """An Administrator of tenant A only (cheaper than the five users of the matrix)."""
    return client_for(make_user("admin_only", tenant=tenant, role="Administrator"))


def test_run_page_get_matrix(users, tenant, other_tenant, client_entry):
    for role in ROLE_NAMES:
        response = client_for(users[role]).get(url("run"))
        if role not in (*RUNNERS, "other_admin"):
            assert response.status_code == 403, role
            continue
        assert response.status_code == 200, role
        form = response.context["form"]
        tenants = set(form.fields["tenant"].queryset)
        assert tenants == ({other_tenant} if role == "other_admin" else {tenant}), role
        offered = str(form.fields["entry"].choices)
        assert ("tenant-a / client_key" in offered) is (role != "other_admin"), role
        assert form["verify_server"].value() is True
        assert_no_key_material(response.content.decode())


def test_run_page_post_matrix(users, tenant, client_entry):
    port = refused_port()
    for role in ROLE_NAMES:
        before = ConnectivityTestRun.objects.count()
        response = client_for(users[role]).post(
            url("run"), form_data(tenant, port, entry=client_entry.pk, verify_server="on")
        )
        if role not in RUNNERS:
            assert response.status_code == 403, role
            assert ConnectivityTestRun.objects.count() == before, role
            continue
        run_row = ConnectivityTestRun.objects.latest("id")
        assert response.status_code == 302, role
        assert response["Location"] == url("result", run_row.pk)
        assert run_row.actor == users[role]
        assert (run_row.alias, run_row.key_used, run_row.outcome) == (
            "client_key",
            "current",
            "connection refused",
        )
    assert set(ConnectivityTestRun.objects.values_list("actor_label", flat=True)) == {
        "developer",
        "admin_a",
    }


def test_page_runs_a_real_test_and_shows_the_result(
    users, tenant, client_entry, server_trusted, server_pki, client_pki
):
    client = client_for(users["IntegrationDeveloper"])
    with mtls_server(server_pki, [client_pki.root]) as server:
        response = client.post(
            url("run"),
            form_data(tenant, server.port, entry=client_entry.pk, verify_server="on"),
            follow=True,
        )
    assert response.status_code == 200
    html = response.content.decode()
    run_row = ConnectivityTestRun.objects.get()
    assert run_row.outcome == "success", run_row.message
    assert response.redirect_chain[-1][0] == url("result", run_row.pk)
    assert 'id="connectivity-outcome"' in html and "Success" in html
    assert run_row.tls_version in html and run_row.cipher in html
    assert "CN=Backend Intermediate CA" in html
    assert fingerprint(der(server_pki.leaf)) in html
    assert "Current key. The current key of client_key was used." in html
    assert url("server_cert", run_row.pk, 1) in html
    assert 'id="add-root-form"' not in html  # developers do not deploy
    assert_no_key_material(html)


def test_page_with_new_sap_key(
    admin_client, tenant, sap_entry, pending_key, new_sap_ca, server_trusted, server_pki
):
    page = admin_client.get(url("run"))
    assert "(new SAP key waiting)" in page.content.decode()
    with mtls_server(server_pki, [new_sap_ca.root]) as server:
        response = admin_client.post(
            url("run"),
            form_data(
                tenant,
                server.port,
                entry=sap_entry.pk,
                include_pending="on",
                verify_server="on",
            ),
            follow=True,
        )
        seen = client_cert_seen(server)
    run_row = ConnectivityTestRun.objects.get()
    assert run_row.outcome == "success", run_row.message
    assert run_row.key_used == KeyUsed.PENDING
    assert fingerprint(seen) == pending_key.fingerprint_sha256
    assert "waiting in New SAP Keys) was used" in response.content.decode()


PAGE_MISTAKES = [
    ({"host": "https://backend.example"}, "without a scheme"),
    ({"host": ""}, "This field is required"),
    ({"port": "0"}, "from 1 to 65535"),
    ({"port": "70000"}, "from 1 to 65535"),
    ({"port": "abc"}, "from 1 to 65535"),
    ({"timeout": "0"}, "The timeout must be from 1 to 20 seconds"),
    ({"timeout": "21"}, "The timeout must be from 1 to 20 seconds"),
    ({"entry": "partner_root"}, "Select a valid choice"),  # a certificate is no choice at all
    ({"entry": "999999"}, "Select a valid choice"),
    ({"include_pending": "on"}, "Choose an alias to test its new SAP key"),
]


def test_page_bad_input_shows_a_message_and_connects_nowhere(
    admin_client, tenant, client_entry, partner_root, no_connection
):
    for changes, fragment in PAGE_MISTAKES:
        if changes.get("entry") == "partner_root":
            changes = {"entry": partner_root.pk}
        response = admin_client.post(url("run"), {**form_data(tenant, 443), **changes})
        assert response.status_code == 200, changes
        assert fragment in response.content.decode(), changes
    assert not ConnectivityTestRun.objects.exists()


def test_page_refuses_a_key_pair_of_another_tenant(tenant, other_tenant, client_pki, no_connection):
    """A superuser sees both tenants' key pairs; the chosen one must belong to the tenant."""
    superuser = make_user("root")
    superuser.is_superuser = True
    superuser.save()
    b_key = store_key_pair(other_tenant, "b_key", client_pki.leaf_key, client_pki.chain)
    response = client_for(superuser).post(url("run"), form_data(tenant, 443, entry=b_key.pk))
    assert response.status_code == 200
    assert "Choose a key pair of tenant tenant-a." in response.content.decode()
    assert not ConnectivityTestRun.objects.exists()


def test_other_tenants_admin_cannot_post_for_tenant_a(users, tenant, no_connection):
    response = client_for(users["other_admin"]).post(url("run"), form_data(tenant, 443))
    assert response.status_code == 403
    assert not ConnectivityTestRun.objects.exists()


def refused(role: str) -> int:
    """403 for a role of the run's tenant without the permission; 404, like a missing run, for
    users who do not see the tenant at all."""
    return 404 if role in ("none", "other_admin") else 403


def test_result_page_matrix(users, untrusted_run):
    for role in ROLE_NAMES:
        response = client_for(users[role]).get(url("result", untrusted_run.pk))
        if role not in RUNNERS:
            assert response.status_code == refused(role), role
            continue
        assert response.status_code == 200, role
        html = response.content.decode()
        assert "Failed: Server certificate untrusted" in html
        assert "CN=Backend Root CA" in html
        assert ('id="add-root-form"' in html) is (role == "Administrator"), role
        assert_no_key_material(html)
    missing = client_for(users["Administrator"]).get(url("result", untrusted_run.pk + 1000))
    assert missing.status_code == 404


def test_server_certificate_download_matrix(users, untrusted_run, server_pki):
    for role in ROLE_NAMES:
        client = client_for(users[role])
        response = client.get(url("server_cert", untrusted_run.pk, 2))
        if role not in RUNNERS:
            assert response.status_code == refused(role), role
            continue
        assert response.status_code == 200, role
        assert response["Content-Type"] == "application/pkix-cert"
        assert response["Content-Disposition"].endswith('_rootCA.cer"')
        assert x509.load_der_x509_certificate(response.content) == server_pki.root
        leaf = client.get(url("server_cert", untrusted_run.pk, 0))
        assert x509.load_der_x509_certificate(leaf.content) == server_pki.leaf
        assert client.get(url("server_cert", untrusted_run.pk, 3)).status_code == 404
        assert client.post(url("server_cert", untrusted_run.pk, 0)).status_code == 405


def test_add_root_post_matrix(users, untrusted_run, server_pki):
    fp = untrusted_run.server_chain[2]["fingerprint_sha256"]
    data = {"index": 2, "fingerprint": fp, "alias": "backend_root", "confirm": "on"}
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        response = client_for(users[role]).post(url("add_root", untrusted_run.pk), data)
        assert response.status_code == refused(role), role
        assert not KeystoreEntry.objects.exists(), role
    client = client_for(users["Administrator"])
    assert client.get(url("add_root", untrusted_run.pk)).status_code == 405
    response = client.post(url("add_root", untrusted_run.pk), data)
    assert response.status_code == 302
    assert response["Location"] == url("result", untrusted_run.pk)
    added = KeystoreEntry.objects.get(alias="backend_root")
    assert added.certificate() == server_pki.root
    assert added.tenant == untrusted_run.tenant
    page = client.get(url("result", untrusted_run.pk)).content.decode()
    assert "In the keystore as <strong>backend_root</strong>" in page
    assert 'id="add-root-form"' not in page
    # A repeated POST (double click) adds nothing more.
    again = client.post(url("add_root", untrusted_run.pk), data)
    assert again.status_code == 200
    assert "in the keystore of tenant-a already" in again.content.decode()
    assert KeystoreEntry.objects.count() == 1


ADD_ROOT_MISTAKES = [
    ({"confirm": ""}, "Confirm that you have compared the fingerprint"),
    ({"fingerprint": "AA:BB"}, "does not match"),
    ({"index": "0"}, "Only the root certificate"),
    ({"alias": "sap_backend"}, "reserved for SAP"),
    ({"alias": ""}, "This field is required"),
]


def test_add_root_mistakes_show_a_message_and_change_nothing(admin_client, untrusted_run):
    for changes, fragment in ADD_ROOT_MISTAKES:
        data = {
            "index": 2,
            "fingerprint": untrusted_run.server_chain[2]["fingerprint_sha256"],
            "alias": "backend_root",
            "confirm": "on",
            **changes,
        }
        response = admin_client.post(url("add_root", untrusted_run.pk), data)
        assert response.status_code == 200, changes
        assert fragment in response.content.decode(), changes
    assert not KeystoreEntry.objects.exists()


def make_run(tenant, host: str, **fields) -> ConnectivityTestRun:
    values = {
        "tenant": tenant,
        "actor_label": "system",
        "started_at": timezone.now(),
        "host": host,
        "port": 443,
        "timeout": 10,
        "verify_server": True,
        "use_system_trust": False,
        "key_used": KeyUsed.NONE,
        "outcome": "timeout",
        "message": "m",
        **fields,
    }
    return ConnectivityTestRun(**values)


def test_changelist_matrix(users, tenant, other_tenant):
    ConnectivityTestRun.objects.bulk_create(
        [make_run(tenant, "a.example"), make_run(other_tenant, "b.example")]
    )
    for role in ROLE_NAMES:
        response = client_for(users[role]).get(url("changelist"))
        if role in ("none", "ReadOnly"):
            assert response.status_code == 403, role
            continue
        assert response.status_code == 200, role
        hosts = {row.host for row in response.context["cl"].result_list}
        assert hosts == ({"b.example"} if role == "other_admin" else {"a.example"}), role
        html = response.content.decode()
        assert 'id="connectivity-test-link"' in html and url("run") in html
        assert url("add") not in html


def test_change_url_leads_to_the_result_matrix(users, untrusted_run):
    for role in ROLE_NAMES:
        response = client_for(users[role]).get(url("change", untrusted_run.pk))
        if role not in RUNNERS:
            assert response.status_code == refused(role), role
            continue
        assert response.status_code == 302, role
        assert response["Location"] == url("result", untrusted_run.pk)


def test_admin_index_shows_the_app_to_readcredentials_holders(users):
    for role in ROLE_NAMES:
        response = client_for(users[role]).get(reverse("admin:index"))
        assert response.status_code == 200, role
        shown = url("changelist") in response.content.decode()
        assert shown is (role in (*RUNNERS, "other_admin")), role


def test_changelist_query_count_does_not_grow_with_rows(admin_client, tenant):
    chain = [{"subject": "CN=x", "der_b64": "AAAA"}] * 3

    def add(count: int) -> None:
        ConnectivityTestRun.objects.bulk_create(
            make_run(tenant, f"h{i}.example", server_chain=chain) for i in range(count)
        )

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url("changelist")).status_code == 200
        return len(captured)

    add(2)
    few = queries()
    add(20)
    assert queries() == few


def test_run_again_link_prefills_the_form(admin_client, tenant, client_entry):
    first = run(tenant, refused_port(), alias="client_key", timeout=3)
    page = admin_client.get(url("result", first.pk)).context
    form = admin_client.get(page["run_again_url"]).context["form"]
    assert form["host"].value() == HOST
    assert str(form["port"].value()) == str(first.port)
    assert str(form["entry"].value()) == str(client_entry.pk)
    assert form["verify_server"].value() is True
    assert form["include_pending"].value() is False


def test_connectivity_tests_are_rate_limited_per_user(tenant, users, settings, monkeypatch):
    from renewals.connectivity import probe as tlsprobe
    from renewals.connectivity import services as connectivity_services
    from renewals.connectivity.models import ConnectivityTestRun

    settings.CONNECTIVITY_TESTS_PER_MINUTE = 2
    monkeypatch.setattr(
        tlsprobe,
        "probe",
        lambda *args, **kwargs: tlsprobe.ProbeResult(
            outcome=tlsprobe.Outcome.CONNECTION_REFUSED, message="refused"
        ),
    )
    developer = users["IntegrationDeveloper"]
    for _ in range(2):
        connectivity_services.run_connectivity_test(tenant, "127.0.0.1", 9, actor=developer)
    with pytest.raises(connectivity_services.ConnectivityError, match="wait a minute"):
        connectivity_services.run_connectivity_test(tenant, "127.0.0.1", 9, actor=developer)
    assert ConnectivityTestRun.objects.count() == 2
    # Another user is not limited by the first one's tests.
    connectivity_services.run_connectivity_test(
        tenant, "127.0.0.1", 9, actor=users["Administrator"]
    )
