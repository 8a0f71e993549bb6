"""Fixtures of the renewal tests: an SAP CA (from the shared test PKI), the SAP key pair it
issued, and a new SAP key waiting for that alias."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import pki as pki_factory

SAP_ALIAS = "sap_cloudintegrationcertificate"


@pytest.fixture
def sap_ca(sap_pki):
    """(issuing CA key, [issuing CA, root]): the CA that issued the SAP entry."""
    return sap_pki.inter_key, [sap_pki.inter, sap_pki.root]


@pytest.fixture
def provide(sap_ca):
    """provide(tenant, alias=SAP_ALIAS, **kwargs) -> PendingSapKey, from the test SAP CA."""
    from renewals.activation import provision_sap_key

    def provide_key(tenant, alias: str = SAP_ALIAS, **kwargs):
        kwargs.setdefault("valid_days", 385)
        kwargs.setdefault("private_key", pki_factory.make_key())
        kwargs.setdefault("ca", sap_ca)
        return provision_sap_key(tenant, alias, **kwargs)

    return provide_key


@pytest.fixture
def pending(sap_entry, provide):
    """A new SAP key waiting for sap_cloudintegrationcertificate (current key: 20 days left)."""
    return provide(sap_entry.tenant)


@pytest.fixture
def expiry(sap_entry):
    """When the current SAP key expires; scans are run relative to it."""
    return sap_entry.valid_until


@pytest.fixture
def day():
    return timedelta(days=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The matrix makes five users per test; real password hashing would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# -- the connectivity test's network: 127.0.0.1 only, no DNS -----------------------------------

LOOPBACK_TEST_NETWORK = "127.0.0.1/32"


@pytest.fixture
def allow_test_servers(settings):
    """The test servers listen on 127.0.0.1, which the connectivity test refuses by default."""
    settings.CONNECTIVITY_ALLOWED_NETWORKS = [LOOPBACK_TEST_NETWORK]


@pytest.fixture
def fake_dns(monkeypatch):
    """fake_dns({"backend.example": ["10.1.2.3", "127.0.0.1"]}): host names resolve from this
    table only, so no test ever asks a real DNS server; an unknown name is not found. IP
    literals (AI_NUMERICHOST, no lookup) are parsed as before."""
    import socket

    real_getaddrinfo = socket.getaddrinfo
    table: dict[str, list[str]] = {}

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host in table:
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
                if ":" in address
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in table[host]
            ]
        if flags & socket.AI_NUMERICHOST:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table.update


class SocketGuard:
    """Records every socket opened and every connect; no connect leaves the process."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.connects: list[tuple] = []


@pytest.fixture
def socket_guard(monkeypatch):
    """Sockets that never reach anything: opening one is recorded, connect() records its
    address and answers ConnectionRefusedError, create_connection fails the test (the probe must
    connect only to addresses it has checked itself)."""
    import socket

    guard = SocketGuard()
    real_init = socket.socket.__init__

    def init(self, family=-1, *args, **kwargs):
        guard.opened.append(family)
        real_init(self, family, *args, **kwargs)

    def connect(self, address):
        guard.connects.append(address)
        raise ConnectionRefusedError(111, "Connection refused (stubbed, nothing was sent)")

    def forbidden(*args, **kwargs):
        pytest.fail(f"socket.create_connection{args} was called")

    monkeypatch.setattr(socket.socket, "__init__", init)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    return guard
