"""Reusable, bounded TLS test servers on 127.0.0.1 plus a tiny certificate factory.

Everything here runs for real: certificates are generated at test time with `cryptography`,
servers are genuine `ssl` (or `openssl s_server`) endpoints on an ephemeral port. Every server is a
context manager that stops itself on exit, and every blocking call has a timeout, so a broken
probe can never hang the test run.

The certificate helpers are deliberately local (rather than importing `tests/pki.py`) so these
servers do not depend on another module's evolving API; they use EC P-256 keys because they are
generated in microseconds, which keeps the whole TLS test file fast.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = "/usr/bin/openssl"
RESPONSE = b"HTTP/1.0 200 OK\r\n\r\nok"
# Per-connection socket timeout inside the servers: long enough for a probe's post-handshake
# alert window, short enough that a stuck connection cannot outlive a test by much.
CONNECTION_TIMEOUT = 3.0

PrivateKey = ec.EllipticCurvePrivateKey


# --------------------------------------------------------------------------- certificates


def make_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    subject_cn: str,
    key: PrivateKey,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    *,
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ca: bool = False,
    san_dns: Sequence[str] | None = None,
    san_ip: Sequence[str] | None = None,
) -> x509.Certificate:
    """Issue a certificate; self-signed when no issuer is given."""
    now = datetime.now(UTC)
    not_before = not_before or now - timedelta(minutes=5)
    not_after = not_after or now + timedelta(days=days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    issuer = issuer_cert.subject if issuer_cert is not None else subject
    signing_key = issuer_key if issuer_key is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in san_dns or ()]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in san_ip or ()]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class TestPKI:
    """Root CA -> intermediate CA -> leaf, with `chain` leaf first like a keystore entry."""

    __test__ = False  # not a pytest test class despite the name

    root_key: PrivateKey
    root: x509.Certificate
    inter_key: PrivateKey
    inter: x509.Certificate
    leaf_key: PrivateKey
    leaf: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)


def make_pki(
    prefix: str = "Test",
    *,
    leaf_cn: str | None = None,
    leaf_days: int = 365,
    leaf_not_before: datetime | None = None,
    leaf_not_after: datetime | None = None,
    san_dns: Sequence[str] | None = None,
    san_ip: Sequence[str] | None = None,
) -> TestPKI:
    root_key = make_key()
    root = make_cert(f"{prefix} Root CA", root_key, ca=True, days=3650)
    inter_key = make_key()
    inter = make_cert(f"{prefix} Intermediate CA", inter_key, root, root_key, ca=True, days=1825)
    leaf_key = make_key()
    leaf = make_cert(
        leaf_cn or f"{prefix} Leaf",
        leaf_key,
        inter,
        inter_key,
        days=leaf_days,
        not_before=leaf_not_before,
        not_after=leaf_not_after,
        san_dns=san_dns,
        san_ip=san_ip,
    )
    return TestPKI(root_key, root, inter_key, inter, leaf_key, leaf, [leaf, inter, root])


def make_server_pki(prefix: str = "Server", **kwargs) -> TestPKI:
    """A PKI whose leaf is valid for 127.0.0.1 and localhost unless told otherwise."""
    kwargs.setdefault("leaf_cn", "localhost")
    kwargs.setdefault("san_dns", ["localhost"])
    kwargs.setdefault("san_ip", ["127.0.0.1"])
    return make_pki(prefix, **kwargs)


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _material_dir() -> Iterator[str]:
    """A private directory for server key files, removed on exit."""
    path = tempfile.mkdtemp(prefix="tlsservers-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write(directory: str, name: str, data: str | bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as fh:
        fh.write(data.encode("ascii") if isinstance(data, str) else data)
    return path


def free_port() -> int:
    """A port that was free a moment ago (nothing listens on it after this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- Python TLS server


@dataclass
class Connection:
    """What the server saw on one connection (for assertions about the server side)."""

    error: str = ""
    peer_cert_der: bytes | None = None
    version: str | None = None


class TLSServer:
    """A threaded `ssl` server: handshake, read a little, answer `HTTP/1.0 200 OK`, close.

    `require_client_cert` uses CERT_REQUIRED with `client_cas` as the *only* trust anchors (Python's
    server context trusts exactly what `cadata` holds), `ask_client_cert` uses CERT_OPTIONAL.
    """

    def __init__(
        self,
        chain: Sequence[x509.Certificate],
        key: PrivateKey,
        *,
        require_client_cert: bool = False,
        ask_client_cert: bool = False,
        client_cas: Sequence[x509.Certificate] = (),
        maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
        num_tickets: int | None = None,
        close_after_handshake: bool = False,
    ) -> None:
        self.chain = list(chain)
        self.key = key
        self.require_client_cert = require_client_cert
        self.ask_client_cert = ask_client_cert
        self.client_cas = list(client_cas)
        self.maximum_version = maximum_version
        self.num_tickets = num_tickets
        # Close right after the handshake without reading or answering (a "silent rejection").
        self.close_after_handshake = close_after_handshake
        self.connections: list[Connection] = []
        self.sni_names: list[str | None] = []  # server_name per handshake (None: no SNI sent)
        self.host = "127.0.0.1"
        self.port = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._context: ssl.SSLContext | None = None

    def _make_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = self.maximum_version
        if self.num_tickets is not None:
            ctx.num_tickets = self.num_tickets
        with _material_dir() as d:
            # load_cert_chain only reads files; they are removed right after loading.
            ctx.load_cert_chain(
                _write(d, "chain.pem", pem(*self.chain)), _write(d, "key.pem", key_pem(self.key))
            )
        ctx.sni_callback = lambda _sock, name, _ctx: self.sni_names.append(name)
        if self.require_client_cert or self.ask_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
            if self.client_cas:
                ctx.load_verify_locations(cadata=pem(*self.client_cas))
        return ctx

    def __enter__(self) -> TLSServer:
        self._context = self._make_context()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.1)  # so the accept loop notices `_stop` quickly
        self._listener = listener
        self.port = listener.getsockname()[1]
        accept = threading.Thread(target=self._accept_loop, name="tls-test-server", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=CONNECTION_TIMEOUT + 1)
        if self._listener is not None:
            self._listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, raw: socket.socket) -> None:
        assert self._context is not None
        record = Connection()
        self.connections.append(record)
        raw.settimeout(CONNECTION_TIMEOUT)
        try:
            with self._context.wrap_socket(raw, server_side=True) as tls:
                record.version = tls.version()
                record.peer_cert_der = tls.getpeercert(binary_form=True)
                if self.close_after_handshake:
                    return
                with contextlib.suppress(OSError):
                    tls.recv(1024)  # the probe sends nothing; EOF or timeout ends this
                with contextlib.suppress(OSError):
                    tls.sendall(RESPONSE)
        except (OSError, ssl.SSLError) as exc:
            record.error = str(exc)
        finally:
            raw.close()


# --------------------------------------------------------------------------- other endpoints


@contextlib.contextmanager
def openssl_s_server(
    chain: Sequence[x509.Certificate],
    key: PrivateKey,
    *,
    client_cas: Sequence[x509.Certificate] = (),
    verify: bool = True,
    tls1_2_only: bool = False,
) -> Iterator[tuple[str, int]]:
    """`openssl s_server -Verify 2 -verify_return_error -www` with `client_cas` as -CAfile.

    `-verify_return_error` matters: without it s_server logs verification errors but continues,
    so a client certificate from an unknown CA would be "accepted". Skips the test when the
    openssl binary is missing. Yields (host, port).
    """
    import pytest

    if not os.path.exists(OPENSSL):
        pytest.skip("openssl binary not available")
    with _material_dir() as d:
        args = [
            OPENSSL,
            "s_server",
            "-quiet",
            "-www",
            "-cert",
            _write(d, "cert.pem", pem(chain[0])),
            "-key",
            _write(d, "key.pem", key_pem(key)),
        ]
        if len(chain) > 1:
            args += ["-cert_chain", _write(d, "chain.pem", pem(*chain[1:]))]
        if client_cas:
            args += ["-CAfile", _write(d, "cas.pem", pem(*client_cas))]
        if verify:
            args += ["-Verify", "2", "-verify_return_error"]
        if tls1_2_only:
            args += ["-tls1_2"]
        for _attempt in range(3):  # the free port may be taken in the meantime: retry
            port = free_port()
            proc = subprocess.Popen(
                [*args, "-accept", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                if wait_for_port(port, time.monotonic() + 5) and proc.poll() is None:
                    yield "127.0.0.1", port
                    return
            finally:
                proc.kill()
                proc.wait(timeout=5)
        raise RuntimeError("openssl s_server did not start")


@contextlib.contextmanager
def silent_listener() -> Iterator[tuple[str, int]]:
    """A TCP port that accepts connections (via the kernel backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield "127.0.0.1", s.getsockname()[1]


def refused_port() -> int:
    """A port on 127.0.0.1 nobody listens on: bound, then closed without listening."""
    return free_port()


@contextlib.contextmanager
def plain_server(answer: bytes = b"HTTP/1.0 400 Bad Request\r\n\r\n") -> Iterator[tuple[str, int]]:
    """A non-TLS TCP server that answers every connection with `answer` and closes."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(CONNECTION_TIMEOUT)
                conn.recv(4096)  # the ClientHello
                conn.sendall(answer)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=CONNECTION_TIMEOUT + 1)
        listener.close()
