"""Tests for renewals.connectivity.probe against real TLS servers with certificates generated
at test time.

Every probe talks to a genuine endpoint on 127.0.0.1 (Python `ssl` servers, `openssl s_server`,
a silent TCP listener, a closed port), so the classification is checked against what OpenSSL
really sends, not against mocks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import stat
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc5280

from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.addresses import parse_networks
from renewals.connectivity.probe import MAX_TIMEOUT, Outcome, ProbeResult, validate_target
from tests import pki as pki_factory
from tests.renewals.tlsservers import (
    TLSServer,
    make_pki,
    make_server_pki,
    openssl_s_server,
    plain_server,
    refused_port,
    silent_listener,
)

TLS13 = ssl.TLSVersion.TLSv1_3
TLS12 = ssl.TLSVersion.TLSv1_2
VERSIONS = pytest.mark.parametrize("max_version", [TLS13, TLS12], ids=["tls13", "tls12"])
TEST_SERVERS = parse_networks(["127.0.0.1/32"])


def probe(host, port, **kwargs) -> ProbeResult:
    """tlsprobe.probe, allowed to reach the test servers on 127.0.0.1 (refused by default)."""
    kwargs.setdefault("allowed_networks", TEST_SERVERS)
    return tlsprobe.probe(host, port, **kwargs)


@pytest.fixture(scope="module")
def server_pki():
    """Server-side PKI: leaf for localhost/127.0.0.1 issued by an intermediate."""
    return make_server_pki("Server")


@pytest.fixture(scope="module")
def client_pki():
    """Our client key pair: leaf + intermediate + root, like a keystore entry."""
    return make_pki("Client")


@pytest.fixture(scope="module")
def other_pki():
    return make_pki("Other")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Redirect tempfile to a test directory so leftovers of the key file are visible."""
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    return base


def mtls_server(server_pki, client_cas, **kwargs) -> TLSServer:
    """Server sending leaf + intermediate and requiring a client cert trusted via `client_cas`."""
    return TLSServer(
        server_pki.chain[:2],
        server_pki.leaf_key,
        require_client_cert=True,
        client_cas=client_cas,
        **kwargs,
    )


def assert_clean(result: ProbeResult) -> None:
    """Invariants of every result: a sentence for the operator and no key material."""
    assert result.message
    assert "PRIVATE KEY" not in result.message
    assert result.elapsed_ms >= 0


# --------------------------------------------------------------------------- client certificates


@VERSIONS
def test_success_with_full_chain_against_server_trusting_only_root(
    server_pki, client_pki, max_version
):
    with mtls_server(server_pki, [client_pki.root], maximum_version=max_version) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=[client_pki.leaf, client_pki.inter],
            trusted=[server_pki.root],
        )
    assert_clean(result)
    assert result.ok, result.message
    assert result.outcome is Outcome.SUCCESS
    assert result.tls_version == ("TLSv1.3" if max_version is TLS13 else "TLSv1.2")
    assert result.cipher
    assert result.client_certificate_requested is True
    assert result.client_certificate_sent is True
    assert result.client_certificate_accepted is True
    assert "accepted our client certificate 'CN=Client Leaf'" in result.message
    # The server really received and verified our certificate.
    assert server.connections[0].peer_cert_der is not None
    # The server chain is reported leaf first, exactly as sent.
    assert [c.subject for c in result.server_chain] == [
        "CN=localhost",
        "CN=Server Intermediate CA",
    ]
    leaf = result.server_chain[0]
    assert leaf.issuer == "CN=Server Intermediate CA"
    assert leaf.der == server_pki.leaf.public_bytes(serialization.Encoding.DER)
    assert leaf.fingerprint_sha256 == server_pki.leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    assert not leaf.self_signed
    # A TLS 1.3 server that accepts sends a session ticket, which ends the alert window early.
    assert result.elapsed_ms < tlsprobe.ALERT_WINDOW * 1000


@VERSIONS
def test_rejected_when_server_trusts_another_ca(server_pki, client_pki, other_pki, max_version):
    with mtls_server(server_pki, [other_pki.root], maximum_version=max_version) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert_clean(result)
    assert result.outcome is Outcome.CLIENT_CERT_REJECTED
    assert not result.ok
    assert "the server does not trust the issuer of our certificate" in result.message
    assert "unknown_ca" in result.message
    assert result.client_certificate_requested is True
    assert result.client_certificate_sent is True
    assert result.client_certificate_accepted is False
    assert len(result.server_chain) == 2  # still shown although the test failed


@VERSIONS
def test_rejected_when_only_leaf_sent_to_server_knowing_only_root(
    server_pki, client_pki, max_version
):
    with mtls_server(server_pki, [client_pki.root], maximum_version=max_version) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=[client_pki.leaf],
            trusted=[server_pki.root],
        )
    assert_clean(result)
    assert result.outcome is Outcome.CLIENT_CERT_REJECTED
    assert "Only the leaf certificate was sent" in result.message
    assert result.client_certificate_accepted is False


@VERSIONS
def test_client_certificate_required_but_none_sent(server_pki, client_pki, max_version):
    with mtls_server(server_pki, [client_pki.root], maximum_version=max_version) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[server_pki.root])
    assert_clean(result)
    assert result.outcome is Outcome.CLIENT_CERT_REQUIRED
    assert result.message.startswith("The server requires a client certificate, but none was sent")
    assert result.client_certificate_requested is True
    assert result.client_certificate_sent is False


@VERSIONS
def test_server_not_asking_for_client_certificate(server_pki, client_pki, max_version):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key, maximum_version=max_version) as srv:
        result = probe(
            srv.host,
            srv.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert_clean(result)
    assert result.ok, result.message
    assert result.client_certificate_requested is False
    assert result.client_certificate_sent is False
    assert result.client_certificate_accepted is None
    assert "did not ask for a client certificate" in result.message
    # No alert window is needed when no certificate was requested.
    assert result.elapsed_ms < tlsprobe.ALERT_WINDOW * 1000


def test_optional_client_certificate_without_key(server_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key, ask_client_cert=True) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[server_pki.root])
    assert result.ok, result.message
    assert result.client_certificate_requested is True
    assert result.client_certificate_sent is False
    assert "accepted the connection without" in result.message


def test_tls13_server_without_tickets_accepts_after_quiet_window(
    server_pki, client_pki, monkeypatch
):
    monkeypatch.setattr(tlsprobe, "ALERT_WINDOW", 0.3)
    with mtls_server(server_pki, [client_pki.root], num_tickets=0) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.ok, result.message
    assert result.client_certificate_accepted is True
    assert "no rejection within 0.3 seconds" in result.message
    assert result.elapsed_ms >= 300


def test_tls13_server_closing_silently_after_our_certificate(server_pki, client_pki):
    with mtls_server(
        server_pki, [client_pki.root], num_tickets=0, close_after_handshake=True
    ) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.outcome is Outcome.PROTOCOL_FAILURE
    assert "closed the connection straight away without an alert" in result.message
    assert result.client_certificate_sent is True
    assert result.client_certificate_accepted is None
    assert result.tls_version == "TLSv1.3"


def test_mismatched_client_key_is_an_argument_error(server_pki, client_pki, other_pki):
    with pytest.raises(ValueError, match="does not match"):
        probe(
            "127.0.0.1",
            refused_port(),
            client_key=other_pki.leaf_key,
            client_chain=client_pki.chain[:2],
        )


# --------------------------------------------------------------------------- server certificates


def test_untrusted_server_certificate_still_reports_chain(server_pki, other_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[other_pki.root])
    assert_clean(result)
    assert result.outcome is Outcome.SERVER_CERT_UNTRUSTED
    assert "'CN=localhost' is not trusted" in result.message
    assert "add the root certificate" in result.message
    assert [c.subject for c in result.server_chain] == ["CN=localhost", "CN=Server Intermediate CA"]
    assert len(server.connections) == 1  # the chain came from the message hook: no 2nd handshake


def test_untrusted_chain_fetched_by_second_handshake_without_hook(
    server_pki, other_pki, monkeypatch
):
    monkeypatch.setattr(tlsprobe, "_MSG_CALLBACK_SUPPORTED", False)
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[other_pki.root])
    assert result.outcome is Outcome.SERVER_CERT_UNTRUSTED
    # CPython 3.10-3.12 exposes the unverified chain privately; leaf only is the last resort.
    assert [c.subject for c in result.server_chain][:1] == ["CN=localhost"]
    if hasattr(ssl.SSLSocket, "get_unverified_chain") or hasattr(
        ssl._ssl._SSLSocket, "get_unverified_chain"
    ):
        assert len(result.server_chain) == 2
    assert len(server.connections) == 2
    assert result.client_certificate_requested is None  # unknown without the hook


def test_untrusted_without_any_trust_configured(server_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5)
    assert result.outcome is Outcome.SERVER_CERT_UNTRUSTED
    assert "No trusted certificates were configured" in result.message


def test_self_signed_server_certificate_is_flagged(server_pki):
    from tests.renewals.tlsservers import make_cert, make_key

    key = make_key()
    cert = make_cert("selfie", key, san_ip=["127.0.0.1"])
    with TLSServer([cert], key) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[server_pki.root])
    assert result.outcome is Outcome.SERVER_CERT_UNTRUSTED
    assert "self-signed" in result.message
    assert result.server_chain[0].self_signed is True


def test_expired_server_certificate():
    now = datetime.now(UTC)
    pki = make_server_pki(
        "Expired", leaf_not_before=now - timedelta(days=30), leaf_not_after=now - timedelta(days=2)
    )
    with TLSServer(pki.chain[:2], pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[pki.root])
    assert_clean(result)
    assert result.outcome is Outcome.SERVER_CERT_EXPIRED
    expiry = pki.leaf.not_valid_after_utc
    assert f"'CN=localhost' expired on {expiry:%Y-%m-%d}" in result.message
    assert result.server_chain[0].not_after == expiry


def test_wrong_host_server_certificate():
    pki = make_server_pki("Wrong", leaf_cn="other.example", san_dns=["other.example"], san_ip=[])
    with TLSServer(pki.chain[:2], pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5, trusted=[pki.root])
    assert_clean(result)
    assert result.outcome is Outcome.SERVER_CERT_WRONG_HOST
    assert result.message == (
        "The server certificate is issued for other.example, not for 127.0.0.1."
    )


def test_validation_off_accepts_untrusted_server(server_pki):
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        result = probe(server.host, server.port, timeout=5, verify_server=False)
    assert result.ok, result.message
    assert "not verified" in result.message
    assert len(result.server_chain) == 2


def test_sni_is_host_name_but_not_for_ip_literals(server_pki, fake_dns):
    fake_dns({"localhost": ["127.0.0.1"]})
    with TLSServer(server_pki.chain[:2], server_pki.leaf_key) as server:
        by_name = probe("localhost", server.port, timeout=5, trusted=[server_pki.root])
        by_ip = probe("127.0.0.1", server.port, timeout=5, trusted=[server_pki.root])
    assert by_name.ok, by_name.message
    assert by_ip.ok, by_ip.message
    assert server.sni_names == ["localhost", None]


# --------------------------------------------------------------------------- network failures


def test_refused_port():
    port = refused_port()
    result = probe("127.0.0.1", port, timeout=2)
    assert_clean(result)
    assert result.outcome is Outcome.CONNECTION_REFUSED
    assert str(port) in result.message


def test_silent_listener_times_out():
    with silent_listener() as (host, port):
        result = probe(host, port, timeout=2)
    assert_clean(result)
    assert result.outcome is Outcome.TIMEOUT
    assert "within 2 seconds" in result.message
    assert 1500 <= result.elapsed_ms < 4000


def test_name_not_found(fake_dns):
    result = probe("no-such-host.invalid", 443, timeout=2)
    assert_clean(result)
    assert result.outcome is Outcome.NAME_NOT_FOUND
    assert "'no-such-host.invalid' could not be resolved" in result.message


def test_plain_tcp_service_is_a_protocol_failure():
    with plain_server() as (host, port):
        result = probe(host, port, timeout=2)
    assert_clean(result)
    assert result.outcome is Outcome.PROTOCOL_FAILURE
    assert "did not answer with TLS" in result.message


# --------------------------------------------------------------------------- one deadline


@contextlib.contextmanager
def full_backlog_listener():
    """A port on 127.0.0.1 whose accept queue is full: the kernel drops further SYNs, so a
    connect() hangs as it does towards a firewall that drops packets."""
    listener = socket.socket()
    queued = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):  # never accepted; Linux queues backlog + 1 of them
            waiting = socket.socket()
            waiting.setblocking(False)
            waiting.connect_ex(("127.0.0.1", port))
            queued.append(waiting)
        yield port
    finally:
        for waiting in queued:
            waiting.close()
        listener.close()


def socket_timeouts(monkeypatch) -> list[float]:
    """Every timeout the probe gives a socket, in order."""
    given: list[float] = []
    real_settimeout = socket.socket.settimeout

    def settimeout(self, value):
        given.append(value)
        real_settimeout(self, value)

    monkeypatch.setattr(socket.socket, "settimeout", settimeout)
    return given


def test_all_addresses_of_a_name_share_one_deadline(fake_dns, monkeypatch):
    """socket.create_connection gives every address the whole timeout; two addresses that drop
    the connection then take twice the time the operator (and the web worker) allowed."""
    with full_backlog_listener() as port:
        fake_dns({"dropping.example": ["127.0.0.1", "::ffff:127.0.0.1"]})
        given = socket_timeouts(monkeypatch)
        result = probe("dropping.example", port, timeout=1)
    assert result.outcome is Outcome.TIMEOUT
    assert "did not accept the connection within 1 seconds" in result.message
    assert len(given) == 2  # both addresses were tried ...
    assert sum(given) <= 1  # ... within the one second of the test


def test_a_hanging_resolver_ends_with_the_deadline(monkeypatch):
    release = threading.Event()

    def hanging(*args, **kwargs):
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        result = probe("slow.example", 443, timeout=0.3)
    finally:
        release.set()
    assert_clean(result)
    assert result.outcome is Outcome.TIMEOUT
    assert "'slow.example' could not be resolved within 0.3 seconds" in result.message


def test_the_handshake_gets_only_what_the_lookup_left(monkeypatch):
    with silent_listener() as (host, port):

        def slow(name, port, *args, **kwargs):
            time.sleep(0.4)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]

        monkeypatch.setattr(socket, "getaddrinfo", slow)
        given = socket_timeouts(monkeypatch)
        result = probe("slow.example", port, timeout=1)
    assert result.outcome is Outcome.TIMEOUT
    assert "did not complete the TLS handshake within 1 seconds" in result.message
    assert given and max(given) <= 0.6


# --------------------------------------------------------------------------- openssl s_server


@VERSIONS
def test_openssl_s_server_verify_success(server_pki, client_pki, max_version):
    with openssl_s_server(
        server_pki.chain[:2],
        server_pki.leaf_key,
        client_cas=[client_pki.root],
        tls1_2_only=max_version is TLS12,
    ) as (host, port):
        result = probe(
            host,
            port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.ok, result.message
    assert result.client_certificate_accepted is True
    # s_server lists its -CAfile subjects in the CertificateRequest.
    assert result.acceptable_ca_names == ["CN=Client Root CA"]


@VERSIONS
def test_openssl_s_server_verify_rejection(server_pki, client_pki, other_pki, max_version):
    with openssl_s_server(
        server_pki.chain[:2],
        server_pki.leaf_key,
        client_cas=[client_pki.root],
        tls1_2_only=max_version is TLS12,
    ) as (host, port):
        result = probe(
            host,
            port,
            timeout=5,
            client_key=other_pki.leaf_key,
            client_chain=other_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.outcome is Outcome.CLIENT_CERT_REJECTED
    assert "the server does not trust the issuer of our certificate" in result.message
    assert "The server accepts client certificates issued by: CN=Client Root CA." in result.message


# --------------------------------------------------------------------------- fallback without hook


def test_client_classification_without_message_hook(server_pki, client_pki, other_pki, monkeypatch):
    monkeypatch.setattr(tlsprobe, "_MSG_CALLBACK_SUPPORTED", False)
    monkeypatch.setattr(tlsprobe, "ALERT_WINDOW", 0.5)  # no ticket detection: window runs out
    with mtls_server(server_pki, [client_pki.root]) as server:
        good = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
        bad = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=other_pki.leaf_key,
            client_chain=other_pki.chain[:2],
            trusted=[server_pki.root],
        )
        none = probe(server.host, server.port, timeout=5, trusted=[server_pki.root])
    assert good.ok, good.message
    assert good.client_certificate_requested is None
    assert "could not be determined" in good.message
    assert bad.outcome is Outcome.CLIENT_CERT_REJECTED
    assert none.outcome is Outcome.CLIENT_CERT_REQUIRED


# --------------------------------------------------------------------------- key file hygiene


def test_key_file_is_encrypted_private_and_removed_on_success(
    server_pki, client_pki, private_tmp, monkeypatch
):
    seen = {}
    original = ssl.SSLContext.load_cert_chain

    def spy(self, certfile, keyfile=None, password=None):
        seen["file_mode"] = stat.S_IMODE(os.stat(certfile).st_mode)
        seen["dir_mode"] = stat.S_IMODE(os.stat(os.path.dirname(certfile)).st_mode)
        seen["dir"] = os.path.dirname(certfile)
        with open(certfile) as fh:
            seen["content"] = fh.read()
        seen["password"] = password
        return original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    with mtls_server(server_pki, [client_pki.root]) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.ok, result.message
    assert seen["dir"].startswith(str(private_tmp))
    assert seen["file_mode"] == 0o600
    assert seen["dir_mode"] == 0o700
    assert "BEGIN ENCRYPTED PRIVATE KEY" in seen["content"]
    assert "BEGIN PRIVATE KEY" not in seen["content"]
    assert seen["content"].count("BEGIN CERTIFICATE") == 2  # leaf + intermediate
    assert seen["password"]
    assert list(private_tmp.iterdir()) == []


def test_key_file_removed_on_failure(server_pki, client_pki, other_pki, private_tmp):
    with mtls_server(server_pki, [other_pki.root]) as server:
        result = probe(
            server.host,
            server.port,
            timeout=5,
            client_key=client_pki.leaf_key,
            client_chain=client_pki.chain[:2],
            trusted=[server_pki.root],
        )
    assert result.outcome is Outcome.CLIENT_CERT_REJECTED
    assert list(private_tmp.iterdir()) == []
    result = probe(
        "127.0.0.1",
        refused_port(),
        timeout=2,
        client_key=client_pki.leaf_key,
        client_chain=client_pki.chain[:2],
    )
    assert result.outcome is Outcome.CONNECTION_REFUSED
    assert list(private_tmp.iterdir()) == []


def test_key_file_removed_when_loading_fails(client_pki, other_pki, private_tmp):
    with pytest.raises(ValueError):
        probe(
            "127.0.0.1",
            refused_port(),
            client_key=other_pki.leaf_key,
            client_chain=client_pki.chain[:2],
        )
    assert list(private_tmp.iterdir()) == []


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("host", "port", "timeout", "fragment"),
    [
        ("", 443, 10, "Enter a host name"),
        ("   ", 443, 10, "spaces"),
        ("exa mple.com", 443, 10, "spaces"),
        ("example.com\n", 443, 10, "spaces"),
        ("https://example.com", 443, 10, "scheme"),
        ("example.com/path", 443, 10, "path"),
        ("example.com:443", 443, 10, "port separately"),
        ("user@example.com", 443, 10, "user"),
        ("a" * 64 + ".example.com", 443, 10, "bad part"),
        ("-bad.example.com", 443, 10, "bad part"),
        ("bad..example.com", 443, 10, "bad part"),
        ("bad!.example.com", 443, 10, "bad part"),
        (".".join(["abcdefghi"] * 26), 443, 10, "253"),
        (None, 443, 10, "Enter a host name"),
        ("example.com", 0, 10, "port"),
        ("example.com", 65536, 10, "port"),
        ("example.com", -1, 10, "port"),
        ("example.com", "443", 10, "port"),
        ("example.com", True, 10, "port"),
        ("example.com", 443, 0, "timeout"),
        ("example.com", 443, -1, "timeout"),
        ("example.com", 443, MAX_TIMEOUT + 0.1, "timeout"),
        ("example.com", 443, float("nan"), "timeout"),
        ("example.com", 443, "10", "timeout"),
    ],
)
def test_validate_target_rejects(host, port, timeout, fragment):
    with pytest.raises(ValueError, match=fragment):
        validate_target(host, port, timeout)


@pytest.mark.parametrize(
    ("host", "port", "timeout"),
    [
        ("example.com", 443, 10),
        ("example.com.", 1, 0.5),
        ("localhost", 65535, MAX_TIMEOUT),
        ("127.0.0.1", 8443, 10.0),
        ("::1", 443, 10),
        ("[2001:db8::1]", 443, 10),
        ("my_host.intern.example", 443, 10),
        ("bücher.example", 443, 10),
        ("a" * 63 + ".example", 443, 10),
    ],
)
def test_validate_target_accepts(host, port, timeout):
    validate_target(host, port, timeout)


def test_probe_validates_its_arguments(client_pki):
    with pytest.raises(ValueError, match="scheme"):
        probe("https://example.com", 443)
    with pytest.raises(ValueError, match="timeout"):
        probe("example.com", 443, timeout=61)
    with pytest.raises(ValueError, match="chain"):
        probe("example.com", 443, client_key=client_pki.leaf_key)
    with pytest.raises(ValueError, match="chain"):
        probe("example.com", 443, client_chain=client_pki.chain)


# --------------------------------------------------------------------------- parsing helpers


def test_distinguished_name_rendering_matches_cryptography():
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Müller, Söhne & Co"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Root+CA"),
        ]
    )
    assert tlsprobe._dn_to_rfc4514(name.public_bytes()) == name.rfc4514_string()
    assert tlsprobe._dn_to_rfc4514(b"\x30\x05garbage").startswith("#")


def _encoded_name(value) -> bytes:
    """A Name of one CN whose value is ``value`` (a pyasn1 string or other type)."""
    attribute = rfc5280.AttributeTypeAndValue()
    attribute["type"] = univ.ObjectIdentifier("2.5.4.3")
    attribute["value"] = der_encoder.encode(value)
    rdn = rfc5280.RelativeDistinguishedName()
    rdn.append(attribute)
    name = rfc5280.Name()
    name["rdnSequence"].append(rdn)
    return der_encoder.encode(name)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (char.BMPString("Bmp Ünïcode"), "CN=Bmp Ünïcode"),
        (char.TeletexString("T61 \xe9"), "CN=T61 é"),
        (char.UniversalString("Universal"), "CN=Universal"),
        (char.NumericString("12345"), "CN=12345"),
        (char.IA5String("ia5"), "CN=ia5"),
        (char.VisibleString("visible"), None),
        (univ.Integer(5), None),
    ],
)
def test_every_string_type_of_a_listed_ca_name_is_read(value, text):
    der = _encoded_name(value)

    assert tlsprobe._dn_to_rfc4514(der) == (text or "#" + der.hex())


def test_outcome_is_a_plain_string():
    assert Outcome.CLIENT_CERT_REQUIRED == "client certificate required but none sent"
    assert Outcome("timeout") is Outcome.TIMEOUT


def test_a_server_root_is_self_signed_by_the_keystore_s_own_check():
    """The keystore's check (keystore.crypto.is_self_signed), which also reads the SHA-1
    self-signatures of old roots that cryptography declines to verify."""
    key = pki_factory.make_key()
    sha1_root = pki_factory.make_cert("Old Root", key, ca=True, hash_alg=hashes.SHA1())
    modern_root = pki_factory.make_cert("Root", key, ca=True)
    leaf = pki_factory.make_cert("Leaf", pki_factory.make_key(), modern_root, key)

    def server_certificate(cert: x509.Certificate) -> tlsprobe.ServerCertificate:
        return tlsprobe.ServerCertificate.from_der(cert.public_bytes(serialization.Encoding.DER))

    assert server_certificate(sha1_root).self_signed
    assert server_certificate(modern_root).self_signed
    assert not server_certificate(leaf).self_signed
