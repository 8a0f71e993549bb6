"""TLS connectivity test: one real handshake against a backend, explained for an operator.

This is the "Test" step of a key renewal (see DOMAIN.md step 6): connect to host:port, optionally
authenticate with a client key pair (for example the pending new SAP key), optionally validate the
server certificate, and report either success or exactly what failed, together with the
certificate chain the server sent (so its root can be added to the keystore).

Pure Python on top of the standard `ssl` module and `cryptography`, with pyasn1 for the CA names
a server lists and keystore.crypto's self-signed check; no Django.

What is exact and what is best-effort
-------------------------------------
* Exact: DNS, TCP and timeout failures; server-certificate verification failures (OpenSSL's
  verify code); TLS alerts the server sends; the negotiated version and cipher.
* Best-effort, via `SSLContext._msg_callback` (a private CPython debugging hook that reports every
  decrypted handshake message; present in 3.11, checked at run time):
    - whether the server asked for a client certificate (`client_certificate_requested`) and the
      CA names it listed (`acceptable_ca_names`; many servers list none),
    - whether our certificate was actually sent (`client_certificate_sent`),
    - the full server chain even when verification fails (parsed from the server's Certificate
      message).
  Without the hook those fields are None/unknown and the server chain is fetched by a second,
  unverified handshake: leaf plus intermediates through `get_unverified_chain()` (public on
  3.13+, `_sslobj.get_unverified_chain()` on 3.10-3.12), leaf only through `getpeercert()` if
  neither exists, and nothing when a TLS 1.2 server aborts that handshake for lack of a client
  certificate.
* Best-effort by nature of TLS 1.3: the client finishes its handshake *before* the server has
  checked the client certificate, so a rejection only arrives as an alert afterwards. We send no
  application data and listen for up to `ALERT_WINDOW` seconds: an alert means rejected; a
  NewSessionTicket (sent only after the server accepted our Finished), data, or a quiet window
  means accepted. A server that rejects silently later cannot be told apart.
* `timeout` bounds the whole test, not each step: name resolution, every address tried, the
  handshake, the wait for a TLS 1.3 verdict and the second handshake that fetches an untrusted
  chain all share one deadline. `getaddrinfo` cannot be interrupted, so it runs in a thread that
  the probe stops waiting for at the deadline (the lookup ends on its own later).
* Addresses: loopback, link-local, the cloud metadata address and unspecified addresses are
  refused unless `allowed_networks` covers them (see renewals.connectivity.addresses), on every
  address the name resolves to, before any socket is opened. The probe then connects only to
  those checked addresses and never resolves the name again.

Client key material never touches the disk in clear: `ssl` can only load keys from files, so the
key is written as encrypted PKCS#8 under a random one-time password into a file created by
`mkstemp` (mode 0600) inside a `mkdtemp` directory (mode 0700); both are deleted right after
loading, on every path.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ObjectIdentifier
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char
from pyasn1_modules import rfc5280

from keystore.crypto import is_self_signed
from renewals.connectivity.addresses import Network, check_addresses

__all__ = [
    "ALERT_WINDOW",
    "MAX_TIMEOUT",
    "Outcome",
    "ProbeResult",
    "ServerCertificate",
    "probe",
    "validate_target",
]

# The test runs inside a web request, so all of it must end well before gunicorn kills the worker
# (30 s by default), leaving time for the page itself.
MAX_TIMEOUT = 20.0
# How long to listen after a TLS 1.3 handshake for the server's verdict on our certificate.
# Servers answer within one round trip; the wait ends early on a session ticket, which OpenSSL,
# Java and most other stacks send right after accepting the client.
ALERT_WINDOW = 2.0
# Poll slice while listening, so a session ticket (seen only via the message hook) ends the wait.
_POLL_SLICE = 0.05

# TLS handshake message types and content types (RFC 8446 / 5246) used by the message hook.
_HS_SERVER_HELLO = 2
_HS_CERTIFICATE = 11
_HS_CERTIFICATE_REQUEST = 13
_HS_SERVER_HELLO_DONE = 14
_HS_FINISHED = 20
_HS_NEW_SESSION_TICKET = 4
_CT_ALERT = 21
_CT_HANDSHAKE = 22
_TLS13 = 0x0304
_VERSION_NAMES = {0x0303: "TLSv1.2", _TLS13: "TLSv1.3"}
_EXT_CERTIFICATE_AUTHORITIES = 47

# TLS alert descriptions we explain; names as in RFC 8446 so operators can search for them.
_ALERTS = {
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    48: "unknown_ca",
    49: "access_denied",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    112: "unrecognized_name",
    116: "certificate_required",
}
_ALERT_BY_NAME = {name.upper(): code for code, name in _ALERTS.items()}
# Alerts a server uses to say "your certificate is not acceptable".
_CLIENT_CERT_ALERTS = {
    42: "it rejected our certificate as bad",
    43: "it does not support our type of certificate",
    44: "it considers our certificate revoked",
    45: "it considers our certificate expired",
    46: "it could not validate our certificate",
    48: "the server does not trust the issuer of our certificate",
    49: "it accepted the certificate but denies this client access",
    51: "it could not verify our signature (key and certificate may not belong together)",
}

# OpenSSL X509_V_ERR_* codes (see `openssl verify` documentation).
_V_NOT_YET_VALID = 9
_V_EXPIRED = 10
_V_HOSTNAME_MISMATCH = 62
_V_IP_MISMATCH = 64
_V_UNTRUSTED_HINTS = {
    2: "the issuer of the server certificate is not among the trusted certificates",
    18: "the server sent a self-signed certificate that is not trusted",
    19: "the root of the server's chain is not among the trusted certificates",
    20: "the issuer of the server certificate is not among the trusted certificates",
    21: "the server certificate could not be verified against the trusted certificates",
}


class Outcome(StrEnum):
    """What happened; a `str` so it serialises and compares with plain strings."""

    SUCCESS = "success"
    NAME_NOT_FOUND = "name not found"
    CONNECTION_REFUSED = "connection refused"
    TIMEOUT = "timeout"
    PROTOCOL_FAILURE = "protocol failure"
    SERVER_CERT_UNTRUSTED = "server certificate untrusted"
    SERVER_CERT_EXPIRED = "server certificate expired"
    SERVER_CERT_WRONG_HOST = "server certificate wrong host name"
    CLIENT_CERT_REQUIRED = "client certificate required but none sent"
    CLIENT_CERT_REJECTED = "client certificate rejected"
    UNREACHABLE = "network unreachable"


@dataclass(frozen=True)
class ServerCertificate:
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str  # uppercase colon-separated hex, as keystore UIs show it
    der: bytes
    self_signed: bool

    @classmethod
    def from_der(cls, der: bytes) -> ServerCertificate:
        cert = x509.load_der_x509_certificate(der)
        return cls(
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            der=der,
            self_signed=is_self_signed(cert),
        )

    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


@dataclass
class ProbeResult:
    outcome: Outcome
    message: str  # one plain sentence (or two) for the operator
    tls_version: str = ""
    cipher: str = ""
    server_chain: list[ServerCertificate] = field(default_factory=list)  # as sent, leaf first
    client_certificate_requested: bool | None = None  # None = unknown
    acceptable_ca_names: list[str] = field(default_factory=list)  # RFC 4514 DNs
    client_certificate_sent: bool = False
    client_certificate_accepted: bool | None = None
    elapsed_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


# --------------------------------------------------------------------------- input validation

_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(_strip_brackets(host))
    except ValueError:
        return False
    return True


def _validate_host(host: object, what: str = "host") -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"Enter a {what} name.")
    if any(ch.isspace() for ch in host):
        raise ValueError(f"The {what} name must not contain spaces or line breaks.")
    if "://" in host:
        raise ValueError(f"Enter only the {what} name, without a scheme such as 'https://'.")
    if "/" in host or "?" in host or "#" in host:
        raise ValueError(f"Enter only the {what} name, without a path.")
    if "@" in host:
        raise ValueError(f"Enter only the {what} name, without user information.")
    if _is_ip_literal(host):
        return
    if ":" in host:
        raise ValueError(f"Enter the port separately, not as part of the {what} name.")
    ascii_host = host
    if not host.isascii():
        try:
            # IDNA turns an internationalised name into the ASCII form DNS actually uses.
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"'{host}' is not a valid {what} name.")
    if len(ascii_host) > 253:
        raise ValueError(f"The {what} name is longer than 253 characters.")
    # Underscores are not valid in host names by RFC 1123, but real internal DNS has them and
    # resolvers accept them, so refusing them would block legitimate tests.
    labels = ascii_host[:-1].split(".") if ascii_host.endswith(".") else ascii_host.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"'{host}' is not a valid {what} name (bad part '{label}').")


def validate_target(host: str, port: int, timeout: float) -> None:
    """Raise ValueError with an operator-readable message if the test target is malformed."""
    _validate_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError("The port must be a whole number from 1 to 65535.")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise ValueError(f"The timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds.")


# --------------------------------------------------------------------------- wire parsing


class _Reader:
    """Bounds-checked reader for TLS length-prefixed structures; raises ValueError on overrun."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated TLS structure")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, len_bytes: int) -> bytes:
        return self.take(self.uint(len_bytes))

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _parse_certificate_message(body: bytes, tls13: bool) -> list[bytes]:
    """DER certificates from a Certificate handshake body (header already removed)."""
    r = _Reader(body)
    if tls13:
        r.vector(1)  # certificate_request_context
    entries = _Reader(r.vector(3))
    certs = []
    while not entries.done():
        certs.append(entries.vector(3))
        if tls13:
            entries.vector(2)  # per-certificate extensions (OCSP, SCT): not needed here
    return certs


def _parse_certificate_request(body: bytes, tls13: bool) -> list[bytes]:
    """DER distinguished names the server lists as acceptable client-certificate issuers."""
    r = _Reader(body)
    if tls13:
        r.vector(1)  # certificate_request_context
        extensions = _Reader(r.vector(2))
        names = b""
        while not extensions.done():
            ext_type = extensions.uint(2)
            ext_data = extensions.vector(2)
            if ext_type == _EXT_CERTIFICATE_AUTHORITIES:
                names = _Reader(ext_data).vector(2)
    else:
        r.vector(1)  # certificate_types
        r.vector(2)  # supported_signature_algorithms
        names = r.vector(2)
    dns = _Reader(names)
    result = []
    while not dns.done():
        result.append(dns.vector(2))
    return result


# The attribute values a Name may carry as text; any other (an INTEGER, a VisibleString) makes
# the name shown in hex, as before.
_NAME_STRING_TYPES = (
    char.UTF8String,
    char.NumericString,
    char.PrintableString,
    char.TeletexString,  # read as Latin-1, as OpenSSL does
    char.IA5String,
    char.UniversalString,
    char.BMPString,
)


def _dn_to_rfc4514(der: bytes) -> str:
    """Render a DER Name as RFC 4514 text. `cryptography` has no public loader for a bare Name,
    so pyasn1 decodes it as RFC 5280 defines it."""
    try:
        name, rest = der_decoder.decode(der, asn1Spec=rfc5280.Name())
        if rest:
            raise ValueError("trailing data")
        rdns = []
        for rdn in name["rdnSequence"]:
            attributes = []
            for attribute in rdn:
                value, rest = der_decoder.decode(bytes(attribute["value"]))
                if rest or not isinstance(value, _NAME_STRING_TYPES):
                    raise ValueError("unsupported attribute")
                oid = ObjectIdentifier(str(attribute["type"]))
                attributes.append(x509.NameAttribute(oid, str(value)))
            rdns.append(x509.RelativeDistinguishedName(attributes))
        return x509.Name(rdns).rfc4514_string()
    except (PyAsn1Error, ValueError):
        # Still tell the operator a name was listed, without pretending to know it.
        return "#" + der.hex()


# --------------------------------------------------------------------------- handshake observer


class _Observer:
    """Collects what `SSLContext._msg_callback` reports about one connection.

    The hook runs inside OpenSSL's callback; any exception there would surface as a confusing
    handshake error, so everything is swallowed and the observer just knows less.
    """

    def __init__(self) -> None:
        self.active = False  # hook installed
        self.server_chain_der: list[bytes] = []
        self.cert_request_seen = False
        self.ca_names_der: list[bytes] = []
        self.server_flight_done = False  # ServerHelloDone / server Finished read
        self.client_cert_message = False  # we wrote a Certificate message (maybe empty)
        self.client_cert_nonempty = False
        self.alert: int | None = None  # first fatal/warning alert read from the server
        self.alert_after_client_cert = False
        self.ticket_seen = False
        self.version = ""  # negotiated version, known even if the handshake fails later

    def __call__(
        self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        with contextlib.suppress(Exception):
            self._handle(direction, int(version), int(content_type), int(msg_type), bytes(data))

    def _handle(self, direction: str, version: int, ctype: int, mtype: int, data: bytes) -> None:
        tls13 = version == _TLS13
        if ctype == _CT_ALERT and direction == "read" and len(data) >= 2:
            if self.alert is None and data[1] != 0:  # 0 = close_notify, not a verdict
                self.alert = data[1]
                self.alert_after_client_cert = self.client_cert_message
            return
        if ctype != _CT_HANDSHAKE or len(data) < 4:
            return
        body = data[4:]  # skip type (1) and length (3)
        if direction == "read":
            # ServerHello itself is reported before the version is settled; later ones are not.
            if mtype != _HS_SERVER_HELLO and version in _VERSION_NAMES:
                self.version = _VERSION_NAMES[version]
            if mtype == _HS_CERTIFICATE and not self.server_chain_der:
                self.server_chain_der = _parse_certificate_message(body, tls13)
            elif mtype == _HS_CERTIFICATE_REQUEST:
                self.cert_request_seen = True
                self.ca_names_der = _parse_certificate_request(body, tls13)
            elif mtype in (_HS_SERVER_HELLO_DONE, _HS_FINISHED):
                self.server_flight_done = True
            elif mtype == _HS_NEW_SESSION_TICKET:
                self.ticket_seen = True
        elif direction == "write" and mtype == _HS_CERTIFICATE:
            self.client_cert_message = True
            self.client_cert_nonempty = bool(_parse_certificate_message(body, tls13))

    @property
    def requested(self) -> bool | None:
        if not self.active:
            return None
        if self.cert_request_seen:
            return True
        # Without the server's complete flight we cannot rule a CertificateRequest out.
        return False if self.server_flight_done else None


def _install_observer(ctx: ssl.SSLContext) -> _Observer:
    observer = _Observer()
    if _MSG_CALLBACK_SUPPORTED:
        try:
            ctx._msg_callback = observer  # type: ignore[attr-defined]
            observer.active = True
        except (AttributeError, TypeError, NotImplementedError):
            pass
    return observer


# Looked up at import so tests can force the fallback path by patching it to False.
_MSG_CALLBACK_SUPPORTED = hasattr(ssl.SSLContext, "_msg_callback")


# --------------------------------------------------------------------------- contexts


def _load_client_identity(
    ctx: ssl.SSLContext, key: CertificateIssuerPrivateKeyTypes, chain: Sequence[x509.Certificate]
) -> None:
    """Load key + whole chain into `ctx` through a short-lived private file.

    The key is PKCS#8 encrypted with a random one-time password that exists only in memory, so
    even the 0600 file in the 0700 directory never holds the key in clear.
    """
    password = secrets.token_bytes(32)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    # Leaf first, then intermediates: OpenSSL sends the certificates in file order.
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    directory = tempfile.mkdtemp(prefix="tlsprobe-")
    path: str | None = None
    try:
        fd, path = tempfile.mkstemp(dir=directory, suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(chain_pem + key_pem)
        try:
            ctx.load_cert_chain(path, password=password)
        except ssl.SSLError as exc:
            raise ValueError(
                "The client key does not match the first certificate of the client chain "
                f"({exc.reason or 'OpenSSL refused the key pair'})."
            ) from None
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _client_context(
    *,
    verify_server: bool,
    trusted: Sequence[x509.Certificate],
    use_system_trust: bool,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify_server:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if trusted:
            ctx.load_verify_locations(
                cadata="".join(
                    c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in trusted
                )
            )
        if use_system_trust:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- probing


class _Failure(Exception):
    """Internal: carries a finished failure verdict out of nested connection code."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


# (family, socket address) of one address to connect to, as getaddrinfo gives it.
_Target = tuple[int, tuple]

# Host-name lookups running at once in this process. A lookup the probe stopped waiting for keeps
# its thread until the resolver gives up; the cap keeps a hanging resolver from piling them up.
_LOOKUPS = threading.BoundedSemaphore(8)


def _resolution_timeout(host: str, timeout: float) -> _Failure:
    return _Failure(
        Outcome.TIMEOUT,
        f"The host name '{host}' could not be resolved within {timeout:g} seconds.",
    )


def _lookup(host: str, port: int, deadline: float, timeout: float) -> list:
    """getaddrinfo for a host name, given up (not interrupted) at the deadline."""
    if not _LOOKUPS.acquire(timeout=max(deadline - time.monotonic(), 0)):
        raise _resolution_timeout(host, timeout)
    answer: dict[str, Any] = {}
    done = threading.Event()

    def look_up() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # handed over to the waiting probe
            answer["error"] = exc
        finally:
            _LOOKUPS.release()
            done.set()

    threading.Thread(target=look_up, name="tlsprobe-lookup", daemon=True).start()
    if not done.wait(max(deadline - time.monotonic(), 0)):
        raise _resolution_timeout(host, timeout)
    if "error" in answer:
        raise answer["error"]
    return answer.get("infos", [])


def _resolve(host: str, port: int, deadline: float, timeout: float) -> list[_Target]:
    """Every address to try for host:port, each once, in the resolver's order."""
    try:
        if _is_ip_literal(host):
            # AI_NUMERICHOST: a literal is only parsed, never sent to DNS.
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        else:
            infos = _lookup(host, port, deadline, timeout)
    except (OSError, UnicodeError) as exc:
        raise _Failure(
            Outcome.NAME_NOT_FOUND,
            f"The host name '{host}' could not be resolved "
            f"({getattr(exc, 'strerror', None) or exc}).",
        )
    targets: list[_Target] = []
    seen = set()
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            targets.append((family, sockaddr))
    if not targets:
        raise _Failure(
            Outcome.NAME_NOT_FOUND, f"The host name '{host}' has no IPv4 or IPv6 address."
        )
    return targets


def _open(target: _Target, timeout: float) -> socket.socket:
    family, sockaddr = target
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(
    targets: list[_Target], port: int, deadline: float, timeout: float, label: str
) -> tuple[socket.socket, _Target]:
    """A TCP connection to the first checked address that accepts, within the deadline."""
    error: OSError = TimeoutError()
    for index, target in enumerate(targets):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            # What is left is shared among the addresses still to try: one address that drops
            # packets must not use up the whole test before the others get their turn.
            return _open(target, remaining / (len(targets) - index)), target
        except OSError as exc:
            error = exc
    if isinstance(error, ConnectionRefusedError):
        raise _Failure(
            Outcome.CONNECTION_REFUSED,
            f"{label} refused the connection: nothing accepts connections on port {port}.",
        )
    if isinstance(error, TimeoutError):
        raise _Failure(
            Outcome.TIMEOUT,
            f"{label} did not accept the connection within {timeout:g} seconds "
            "(a firewall may be dropping it).",
        )
    if error.errno in (errno.ECONNRESET, errno.EPIPE):
        raise _Failure(Outcome.PROTOCOL_FAILURE, f"{label} reset the connection at once.")
    raise _Failure(Outcome.UNREACHABLE, f"{label} cannot be reached: {error.strerror or error}.")


def _chain_from_socket(tls: ssl.SSLSocket) -> list[bytes]:
    """The chain as sent by the server, from the live socket (fallback without the hook)."""
    getter = getattr(tls, "get_unverified_chain", None)  # public since 3.13
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        with contextlib.suppress(Exception):
            certs = getter() or []
            ders = [
                c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
                for c in certs
            ]
            if ders:
                return ders
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _to_server_chain(ders: Sequence[bytes]) -> list[ServerCertificate]:
    chain = []
    for der in ders:
        try:
            chain.append(ServerCertificate.from_der(der))
        except ValueError:
            continue  # a certificate cryptography cannot parse: show the rest
    return chain


def _fetch_chain_unverified(target: _Target, sni: str | None, deadline: float) -> list[bytes]:
    """Second handshake with verification off, only to show the operator the server's chain.

    It goes to the address the first handshake used, within what is left of the deadline.
    """
    ctx = _client_context(verify_server=False, trusted=(), use_system_trust=False)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return []
    try:
        with _open(target, remaining) as raw:
            raw.settimeout(max(deadline - time.monotonic(), _POLL_SLICE))
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                return _chain_from_socket(tls)
    except (OSError, ValueError):
        return []


def _names_in(cert: ServerCertificate | None) -> str:
    if cert is None:
        return "other names"
    try:
        c = cert.certificate()
        try:
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        if not names:
            names = [
                str(a.value) for a in c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            ]
    except ValueError:  # malformed extensions: still report the mismatch itself
        return "other names"
    return ", ".join(names) or "no host name at all"


def _verification_failure(
    exc: ssl.SSLCertVerificationError,
    chain: list[ServerCertificate],
    sni: str,
    trust_configured: bool,
) -> _Failure:
    code = exc.verify_code
    leaf = chain[0] if chain else None
    now = datetime.now(UTC)
    if code in (_V_EXPIRED, _V_NOT_YET_VALID):
        # OpenSSL does not say which certificate; find it in the chain for a precise message.
        for i, cert in enumerate(chain):
            which = "The server certificate" if i == 0 else "The certificate"
            where = "" if i == 0 else " in the server's chain"
            if code == _V_EXPIRED and cert.not_after < now:
                return _Failure(
                    Outcome.SERVER_CERT_EXPIRED,
                    f"{which} '{cert.subject}'{where} expired on {cert.not_after:%Y-%m-%d %H:%M} "
                    "UTC.",
                )
            if code == _V_NOT_YET_VALID and cert.not_before > now:
                return _Failure(
                    Outcome.SERVER_CERT_EXPIRED,
                    f"{which} '{cert.subject}'{where} is not valid before "
                    f"{cert.not_before:%Y-%m-%d %H:%M} UTC.",
                )
        return _Failure(
            Outcome.SERVER_CERT_EXPIRED,
            f"A certificate in the server's chain is outside its validity period "
            f"({exc.verify_message}).",
        )
    if code in (_V_HOSTNAME_MISMATCH, _V_IP_MISMATCH):
        return _Failure(
            Outcome.SERVER_CERT_WRONG_HOST,
            f"The server certificate is issued for {_names_in(leaf)}, not for {sni}.",
        )
    reason = _V_UNTRUSTED_HINTS.get(code, f"verification failed: {exc.verify_message}")
    root_hint = (
        " To trust it, add the root certificate of the chain shown below to the keystore."
        if chain
        else ""
    )
    if not trust_configured:
        root_hint += " No trusted certificates were configured for this test."
    subject = f" '{leaf.subject}'" if leaf else ""
    return _Failure(
        Outcome.SERVER_CERT_UNTRUSTED,
        f"The server certificate{subject} is not trusted: {reason}.{root_hint}",
    )


def _alert_code(exc: ssl.SSLError, observer: _Observer) -> int | None:
    if observer.alert is not None:
        return observer.alert
    # Fallback: OpenSSL reasons look like "TLSV1_ALERT_UNKNOWN_CA" / "SSLV3_ALERT_BAD_CERTIFICATE".
    reason = exc.reason or ""
    if "_ALERT_" in reason:
        return _ALERT_BY_NAME.get(reason.split("_ALERT_", 1)[1])
    return None


@dataclass
class _ClientState:
    have_cert: bool
    subject: str  # RFC 4514 subject of our leaf, for messages
    chain_len: int
    leaf_self_signed: bool


def _accepted_names_hint(observer: _Observer) -> str:
    if not observer.ca_names_der:
        return ""
    names = "; ".join(_dn_to_rfc4514(d) for d in observer.ca_names_der)
    return f" The server accepts client certificates issued by: {names}."


def _client_alert_failure(
    code: int | None, exc: ssl.SSLError | None, observer: _Observer, client: _ClientState
) -> _Failure | None:
    """Turn a server alert into a client-certificate verdict, or None if it is something else."""
    sent: bool | None = observer.client_cert_nonempty if observer.active else None
    if sent is None:
        sent = client.have_cert  # OpenSSL sends a configured certificate whenever asked
    after_cert_msg = observer.alert_after_client_cert if observer.active else client.have_cert
    hint = _accepted_names_hint(observer)
    alert_name = _ALERTS.get(code or -1, "")
    if code == 116 or (code in (40, 41, 42, 46) and after_cert_msg and not sent):
        why = ""
        if client.have_cert and not sent:
            why = (
                " Our certificate was configured but not sent: its key or signature type is "
                "probably not acceptable to the server."
            )
        return _Failure(
            Outcome.CLIENT_CERT_REQUIRED,
            "The server requires a client certificate, but none was sent "
            f"(TLS alert {alert_name}).{why}{hint}",
        )
    if code in _CLIENT_CERT_ALERTS and sent and after_cert_msg:
        reason = _CLIENT_CERT_ALERTS[code]
        chain_hint = ""
        if code in (48, 46, 42) and client.chain_len == 1 and not client.leaf_self_signed:
            chain_hint = (
                " Only the leaf certificate was sent; the server may need the intermediate "
                "certificates as well."
            )
        return _Failure(
            Outcome.CLIENT_CERT_REJECTED,
            f"The server rejected our client certificate '{client.subject}': {reason} "
            f"(TLS alert {alert_name}).{chain_hint}{hint}",
        )
    if code == 40 and sent and after_cert_msg:
        return _Failure(
            Outcome.CLIENT_CERT_REJECTED,
            f"The server aborted the handshake after receiving our client certificate "
            f"'{client.subject}' (TLS alert handshake_failure).{hint}",
        )
    return None


def _protocol_failure(exc: ssl.SSLError, code: int | None, label: str) -> _Failure:
    reason = exc.reason or ""
    if reason == "WRONG_VERSION_NUMBER":
        text = f"{label} did not answer with TLS; is this the right port for a TLS service?"
    elif code in (70, 71) or reason in ("UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"):
        text = (
            f"{label} and this client have no TLS version in common (TLS 1.2 or newer is "
            f"required; {reason or _ALERTS.get(code or -1, '')})."
        )
    elif code is not None and code in _ALERTS:
        text = f"{label} aborted the TLS handshake with alert {_ALERTS[code]}."
    elif isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        text = f"{label} closed the connection during the TLS handshake."
    else:
        text = f"The TLS handshake with {label} failed: {reason or exc}."
    return _Failure(Outcome.PROTOCOL_FAILURE, text)


def _listen_for_verdict(
    tls: ssl.SSLSocket, observer: _Observer, window: float
) -> tuple[str, ssl.SSLError | None]:
    """After a TLS 1.3 handshake: wait for the server's reaction to our (missing) certificate.

    Returns ("alert", exc), ("ticket"|"data"|"quiet"|"closed", None). We never send data, so a
    non-HTTP backend is not confused by a request it does not understand.
    """
    deadline = time.monotonic() + window
    tls.settimeout(_POLL_SLICE)
    while True:
        if observer.ticket_seen:
            return "ticket", None
        if time.monotonic() >= deadline:
            return "quiet", None
        try:
            data = tls.recv(1)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except ssl.SSLZeroReturnError:
            return "closed", None
        except ssl.SSLError as exc:
            if isinstance(exc, ssl.SSLEOFError):
                return "closed", None
            return "alert", exc
        except OSError:
            return "closed", None
        return ("data" if data else "closed"), None


def _handshake(
    host: str,
    port: int,
    targets: list[_Target],
    sni: str | None,
    deadline: float,
    timeout: float,
    ctx: ssl.SSLContext,
    observer: _Observer,
    client: _ClientState,
    verify_server: bool,
    trust_configured: bool,
    result: ProbeResult,
) -> None:
    """Run the probe connection, filling `result`; raises _Failure for any unsuccessful outcome."""
    label = f"{host}:{port}"
    raw, target = _connect(targets, port, deadline, timeout, label)
    with raw:
        # CPython's handshake keeps one deadline across all its reads and writes (not one per
        # read), so a server that trickles bytes still cannot stretch it past the test's end.
        raw.settimeout(max(deadline - time.monotonic(), _POLL_SLICE))
        try:
            tls = ctx.wrap_socket(raw, server_hostname=sni)
        except ssl.SSLCertVerificationError as exc:
            ders = observer.server_chain_der
            if not ders:
                ders = _fetch_chain_unverified(target, sni, deadline)
            result.server_chain = _to_server_chain(ders)
            raise _verification_failure(exc, result.server_chain, sni or host, trust_configured)
        except ssl.SSLError as exc:
            result.server_chain = _to_server_chain(observer.server_chain_der)
            code = _alert_code(exc, observer)
            raise _client_alert_failure(code, exc, observer, client) or _protocol_failure(
                exc, code, label
            )
        except TimeoutError:
            result.server_chain = _to_server_chain(observer.server_chain_der)
            raise _Failure(
                Outcome.TIMEOUT,
                f"{label} accepted the connection but did not complete the TLS handshake within "
                f"{timeout:g} seconds (is this a TLS port?).",
            )
        except OSError as exc:
            raise _Failure(
                Outcome.PROTOCOL_FAILURE,
                f"{label} dropped the connection during the TLS handshake ({exc.strerror or exc}).",
            )
        with tls:
            result.tls_version = tls.version() or ""
            result.cipher = (tls.cipher() or ("",))[0]
            result.server_chain = _to_server_chain(
                observer.server_chain_der or _chain_from_socket(tls)
            )
            verdict = "handshake"
            if result.tls_version == "TLSv1.3" and observer.requested is not False:
                window = min(ALERT_WINDOW, max(deadline - time.monotonic(), _POLL_SLICE))
                verdict, alert_error = _listen_for_verdict(tls, observer, window)
                if alert_error is not None:
                    code = _alert_code(alert_error, observer)
                    raise _client_alert_failure(
                        code, alert_error, observer, client
                    ) or _protocol_failure(alert_error, code, label)
    _fill_client_fields(result, observer, client)
    if verdict == "closed" and result.client_certificate_sent:
        result.client_certificate_accepted = None
        raise _Failure(
            Outcome.PROTOCOL_FAILURE,
            f"The TLS handshake with {label} completed, but the server closed the connection "
            "straight away without an alert; it may have rejected our client certificate.",
        )
    result.message = _success_message(result, client, label, verify_server, verdict)


def _fill_client_fields(result: ProbeResult, observer: _Observer, client: _ClientState) -> None:
    result.client_certificate_requested = observer.requested
    result.acceptable_ca_names = [_dn_to_rfc4514(d) for d in observer.ca_names_der]
    if observer.active:
        result.client_certificate_sent = observer.client_cert_nonempty
    else:
        # Without the hook we cannot see whether the server asked, so we cannot claim that our
        # certificate went out; rejections still surface as alerts and are handled by the caller.
        result.client_certificate_sent = False
    if result.client_certificate_sent:
        result.client_certificate_accepted = True
    elif not observer.active and client.have_cert:
        result.client_certificate_accepted = None


def _success_message(
    result: ProbeResult, client: _ClientState, label: str, verify_server: bool, verdict: str
) -> str:
    parts = [f"TLS connection to {label} succeeded ({result.tls_version}, {result.cipher})."]
    parts.append(
        "The server certificate was verified."
        if verify_server
        else "The server certificate was not verified (validation switched off)."
    )
    requested = result.client_certificate_requested
    if result.client_certificate_sent:
        text = f"The server accepted our client certificate '{client.subject}'"
        if verdict == "quiet":
            text += f" (no rejection within {ALERT_WINDOW:g} seconds)"
        parts.append(text + ".")
    elif requested is True:
        parts.append(
            "The server asked for a client certificate but accepted the connection without."
        )
    elif requested is False and client.have_cert:
        parts.append("The server did not ask for a client certificate, so ours was not used.")
    elif requested is False:
        parts.append("The server did not ask for a client certificate.")
    elif client.have_cert:
        parts.append(
            "Whether the server asked for and checked our client certificate could not be "
            "determined; it did not reject it."
        )
    return " ".join(parts)


def probe(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    client_key: CertificateIssuerPrivateKeyTypes | None = None,
    client_chain: list[x509.Certificate] | None = None,
    verify_server: bool = True,
    trusted: list[x509.Certificate] | None = None,
    use_system_trust: bool = False,
    server_hostname: str | None = None,
    allowed_networks: Sequence[Network] = (),
) -> ProbeResult:
    """Handshake with host:port and explain the outcome; never raises for network problems.

    `client_chain` is sent whole (leaf first, then intermediates). `server_hostname` overrides
    the name used for SNI and the host-name check (SNI is not sent for IP literals).
    `timeout` is the deadline of the whole test (see the module docstring). `allowed_networks`
    lets the probe reach addresses it refuses otherwise (loopback, link-local, cloud metadata,
    unspecified).
    Raises ValueError only for invalid arguments (see `validate_target`, plus a client key
    without chain or a key that does not match the chain's leaf), and AddressRefused (a
    ValueError) when the host is or resolves to a refused address; no socket is opened then.
    """
    validate_target(host, port, timeout)
    if server_hostname is not None:
        _validate_host(server_hostname, "server")
    if (client_key is None) != (not client_chain):
        raise ValueError("A client key needs its certificate chain, and a chain needs its key.")
    started = time.monotonic()
    deadline = started + timeout
    connect_host = _strip_brackets(host)
    sni = _strip_brackets(server_hostname) if server_hostname else connect_host
    trusted = list(trusted or [])

    ctx = _client_context(
        verify_server=verify_server, trusted=trusted, use_system_trust=use_system_trust
    )
    client = _ClientState(have_cert=False, subject="", chain_len=0, leaf_self_signed=False)
    if client_key is not None and client_chain:
        _load_client_identity(ctx, client_key, client_chain)
        client = _ClientState(
            have_cert=True,
            subject=client_chain[0].subject.rfc4514_string(),
            chain_len=len(client_chain),
            leaf_self_signed=is_self_signed(client_chain[0]),
        )
    observer = _install_observer(ctx)
    result = ProbeResult(outcome=Outcome.SUCCESS, message="")
    try:
        targets = _resolve(connect_host, port, deadline, timeout)
        # AddressRefused is no _Failure: a refused address is refused input, not an outcome.
        check_addresses(host, [sockaddr[0] for _, sockaddr in targets], allowed_networks)
        _handshake(
            connect_host,
            port,
            targets,
            sni,
            deadline,
            timeout,
            ctx,
            observer,
            client,
            verify_server,
            bool(trusted) or use_system_trust,
            result,
        )
    except _Failure as failure:
        result.outcome = failure.outcome
        result.message = failure.message
        _fill_client_fields(result, observer, client)
        result.tls_version = result.tls_version or observer.version
        if failure.outcome is Outcome.CLIENT_CERT_REJECTED:
            result.client_certificate_sent = True
            result.client_certificate_accepted = False
        elif failure.outcome is Outcome.CLIENT_CERT_REQUIRED:
            result.client_certificate_requested = True
            result.client_certificate_sent = False
            result.client_certificate_accepted = None
        elif result.client_certificate_accepted:
            # The handshake failed for another reason before any verdict on our certificate.
            result.client_certificate_accepted = None
    result.elapsed_ms = int((time.monotonic() - started) * 1000)
    return result
