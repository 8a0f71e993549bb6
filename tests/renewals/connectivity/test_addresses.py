"""Addresses the connectivity test refuses: loopback, link-local, cloud metadata, unspecified.

No test here opens a connection to anything. Host names resolve from a stubbed table
(`fake_dns`), IP literals are only parsed, and `socket_guard` records every socket opened and
answers every connect() with ConnectionRefusedError: a refusal is proven to come before any
socket exists, and an allowed address is proven to be reached only as far as the stubbed
connect().
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from renewals.connectivity import conf
from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.addresses import AddressRefused, parse_networks, refusal
from renewals.connectivity.models import ConnectivityTestRun, RunningConnectivityTest
from renewals.connectivity.probe import Outcome
from renewals.connectivity.services import ConnectivityError, run_connectivity_test
from tests.conftest import ROLE_NAMES, client_for

RUNNERS = ("IntegrationDeveloper", "Administrator")
UNLESS = "the connectivity test does not reach it unless CONNECTIVITY_ALLOWED_NETWORKS allows it."
PUBLIC = "203.0.113.10"  # TEST-NET-3: never connected to, the stub answers first

# (what the operator types, what its name resolves to, the expected refusal)
REFUSED = [
    ("127.0.0.1", None, f"127.0.0.1 is a loopback address; {UNLESS}"),
    ("127.8.9.10", None, "127.8.9.10 is a loopback address"),
    ("::1", None, f"::1 is a loopback address; {UNLESS}"),
    ("[::1]", None, "::1 is a loopback address"),
    ("169.254.10.20", None, "169.254.10.20 is a link-local address"),
    ("fe80::1", None, "fe80::1 is a link-local address"),
    ("169.254.169.254", None, f"169.254.169.254 is the cloud metadata address; {UNLESS}"),
    ("fd00:ec2::254", None, "fd00:ec2::254 is the cloud metadata address"),
    ("0.0.0.0", None, "0.0.0.0 is an unspecified address"),
    ("::", None, ":: is an unspecified address"),
    ("::ffff:127.0.0.1", None, "::ffff:127.0.0.1 is a loopback address"),
    ("::ffff:169.254.169.254", None, "::ffff:169.254.169.254 is the cloud metadata address"),
    ("::ffff:0.0.0.0", None, "::ffff:0.0.0.0 is an unspecified address"),
    ("self.example", ["127.0.0.1"], "self.example resolves to 127.0.0.1, a loopback address; "),
    ("v6self.example", ["::1"], "v6self.example resolves to ::1, a loopback address"),
    ("neighbour.example", ["169.254.7.7"], "resolves to 169.254.7.7, a link-local address"),
    ("metadata.example", ["169.254.169.254"], "169.254.169.254, the cloud metadata address"),
    ("metadata6.example", ["fd00:ec2::254"], "fd00:ec2::254, the cloud metadata address"),
    ("mapped.example", ["::ffff:127.0.0.1"], "resolves to ::ffff:127.0.0.1, a loopback address"),
    ("zero.example", ["0.0.0.0"], "resolves to 0.0.0.0, an unspecified address"),
    # A public address first does not carry the loopback one behind it.
    ("rebind.example", [PUBLIC, "127.0.0.1"], "resolves to 127.0.0.1, a loopback address"),
    ("rebind6.example", ["10.1.2.3", "::1"], "resolves to ::1, a loopback address"),
]
REFUSED_IDS = [host for host, _, _ in REFUSED]


@pytest.fixture
def stubbed_network(fake_dns, socket_guard):
    fake_dns({host: addresses for host, addresses, _ in REFUSED if addresses})
    fake_dns(
        {
            "backend.internal": ["10.20.30.40"],
            "backend6.internal": ["fd12:3456::10"],
            "partner.internal": ["192.168.7.8", "172.16.0.9"],
            "linklocal.example": ["169.254.10.20"],
        }
    )
    return socket_guard


def assert_nothing_happened(guard) -> None:
    assert guard.opened == [], "a socket was opened before the refusal"
    assert guard.connects == []
    assert not ConnectivityTestRun.objects.exists()
    assert not RunningConnectivityTest.objects.exists()


# -- the rule itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.255.254", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.0.1", "a link-local address"),
        ("fe80::abcd", "a link-local address"),
        ("febf::1", "a link-local address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "the cloud metadata address"),
        ("10.0.0.1", None),
        ("172.16.5.4", None),
        ("172.31.255.254", None),
        ("192.168.1.1", None),
        ("fc00::1", None),
        ("fd00:ec2::253", None),  # private IPv6 next to the metadata address
        ("fd12:3456::1", None),
        ("203.0.113.10", None),
        ("2001:db8::1", None),
        ("::ffff:10.0.0.1", None),
        ("fec0::1", None),  # just above fe80::/10
    ],
)
def test_refused_and_allowed_addresses(address, kind):
    assert refusal(ipaddress.ip_address(address)) == kind


def test_allowed_networks_open_refused_ranges_and_mapped_forms():
    allowed = parse_networks(["127.0.0.1/32", "fe80::/64"])
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "a loopback address"
    assert refusal(ipaddress.ip_address("fe80::1"), allowed) is None
    assert refusal(ipaddress.ip_address("fe80:0:0:1::1"), allowed) == "a link-local address"
    assert refusal(ipaddress.ip_address("::1"), allowed) == "a loopback address"


def test_allowed_networks_setting_is_typed_and_checked(settings):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = ["10.0.0.0/8", " 127.0.0.1 ", "", "fd00:ec2::254/128"]
    assert [str(n) for n in conf.allowed_networks()] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "fd00:ec2::254/128",
    ]
    settings.CONNECTIVITY_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"  # as the environment has it
    assert [str(n) for n in conf.allowed_networks()] == ["127.0.0.0/8", "::1/128"]
    del settings.CONNECTIVITY_ALLOWED_NETWORKS
    assert conf.allowed_networks() == ()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (["10.0.0.0/8", "intranet"], "CONNECTIVITY_ALLOWED_NETWORKS: 'intranet' is not a network"),
        (["10.1.2.3/8"], "'10.1.2.3/8' is not a network in CIDR notation"),
        (["127.0.0.1/33"], "'127.0.0.1/33' is not a network"),
        (["10.0.0.0/8;192.168.0.0/16"], "is not a network"),
        (42, "CONNECTIVITY_ALLOWED_NETWORKS must be a list of CIDR strings"),
    ],
)
def test_invalid_allowed_networks_are_a_configuration_error(
    settings, stubbed_network, tenant, value, fragment
):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = value
    with pytest.raises(ImproperlyConfigured, match=fragment):
        conf.allowed_networks()
    with pytest.raises(ImproperlyConfigured, match=fragment):
        run_connectivity_test(tenant, "backend.internal", 443)
    assert [error.id for error in conf.check_settings()] == ["connectivity.E001"]
    assert_nothing_happened(stubbed_network)


# -- the probe: refused before any socket ----------------------------------------------------


@pytest.mark.parametrize(("host", "addresses", "message"), REFUSED, ids=REFUSED_IDS)
def test_probe_refuses_before_opening_a_socket(stubbed_network, host, addresses, message):
    with pytest.raises(AddressRefused, match=re.escape(message)) as refused:
        tlsprobe.probe(host, 443, timeout=2)
    assert isinstance(refused.value, ValueError)  # an argument error, like any bad input
    assert stubbed_network.opened == [] and stubbed_network.connects == []


# -- the service, the page and the command: a message, nothing recorded ----------------------


@pytest.mark.parametrize(("host", "addresses", "message"), REFUSED, ids=REFUSED_IDS)
def test_service_refuses_and_records_nothing(
    stubbed_network, tenant, users, host, addresses, message
):
    with pytest.raises(ConnectivityError) as refused:
        run_connectivity_test(tenant, host, 443, actor=users["IntegrationDeveloper"])
    assert message in str(refused.value)
    assert "CONNECTIVITY_ALLOWED_NETWORKS" in str(refused.value)
    assert_nothing_happened(stubbed_network)


@pytest.mark.parametrize(
    ("host", "reached"),
    [
        ("backend.internal", [("10.20.30.40", 443)]),
        ("backend6.internal", [("fd12:3456::10", 443, 0, 0)]),
        # Every checked address is tried, in the resolver's order, and only those.
        ("partner.internal", [("192.168.7.8", 443), ("172.16.0.9", 443)]),
        ("10.9.8.7", [("10.9.8.7", 443)]),
    ],
)
def test_private_addresses_are_reached(stubbed_network, tenant, host, reached):
    run = run_connectivity_test(tenant, host, 443, timeout=2)
    assert stubbed_network.connects == reached
    assert run.outcome == Outcome.CONNECTION_REFUSED  # the stub's answer, recorded as usual
    assert ConnectivityTestRun.objects.get() == run


def test_a_network_allowed_by_the_setting_is_reached(stubbed_network, tenant, settings):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = ["169.254.10.0/24", "127.0.0.1/32"]
    via_name = run_connectivity_test(tenant, "linklocal.example", 443, timeout=2)
    literal = run_connectivity_test(tenant, "127.0.0.1", 8443, timeout=2)
    assert stubbed_network.connects == [("169.254.10.20", 443), ("127.0.0.1", 8443)]
    assert via_name.outcome == literal.outcome == Outcome.CONNECTION_REFUSED
    # Outside the allowed networks the default still holds.
    with pytest.raises(ConnectivityError, match="127.0.0.2 is a loopback address"):
        run_connectivity_test(tenant, "127.0.0.2", 443)
    with pytest.raises(ConnectivityError, match="the cloud metadata address"):
        run_connectivity_test(tenant, "169.254.169.254", 80)
    assert ConnectivityTestRun.objects.count() == 2


def test_a_name_is_resolved_once_and_its_checked_address_connected(
    stubbed_network, tenant, monkeypatch
):
    """DNS rebinding: a second lookup could answer 127.0.0.1 after the check saw 10.20.30.40."""
    import socket

    answers = iter([["10.20.30.40"], ["127.0.0.1"]])
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in next(answers)]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    run_connectivity_test(tenant, "rebinding.example", 443, timeout=2)
    assert lookups == ["rebinding.example"]
    assert stubbed_network.connects == [("10.20.30.40", 443)]


def url(name: str) -> str:
    return reverse(f"admin:connectivity_connectivitytestrun_{name}")


def test_run_page_shows_the_refusal_by_role(stubbed_network, users, tenant):
    """Role spot check: runners see the refusal on the form; nobody else gets that far."""
    data = {"tenant": tenant.pk, "host": "metadata.example", "port": "80", "timeout": "5"}
    for role in ROLE_NAMES:
        response = client_for(users[role]).post(url("run"), data)
        if role not in RUNNERS:
            assert response.status_code == 403, role
            continue
        assert response.status_code == 200, role
        html = response.content.decode()
        assert (
            "metadata.example resolves to 169.254.169.254, the cloud metadata address; the "
            "connectivity test does not reach it unless CONNECTIVITY_ALLOWED_NETWORKS allows it."
        ) in html, role
        assert response.context["form"].non_field_errors(), role
    assert_nothing_happened(stubbed_network)


def test_run_page_reaches_a_private_backend(stubbed_network, users, tenant):
    data = {"tenant": tenant.pk, "host": "backend.internal", "port": "443", "timeout": "2"}
    response = client_for(users["Administrator"]).post(url("run"), data)
    run = ConnectivityTestRun.objects.get()
    assert response.status_code == 302
    assert run.outcome == Outcome.CONNECTION_REFUSED
    assert stubbed_network.connects == [("10.20.30.40", 443)]


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", f"127.0.0.1 is a loopback address; {UNLESS}"),
        ("metadata6.example", "resolves to fd00:ec2::254, the cloud metadata address"),
    ],
)
def test_command_refuses_with_exit_one(stubbed_network, tenant, host, message):
    with pytest.raises(CommandError, match=re.escape(message)) as refused:
        call_command("connectivity_test", host, "443", "--tenant", tenant.slug)
    assert refused.value.returncode == 1
    assert_nothing_happened(stubbed_network)
