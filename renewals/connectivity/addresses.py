"""Which addresses the TLS connectivity test may connect to. Pure Python, no Django.

The test connects wherever an operator points it, from inside the site's own network. Left open,
it reaches the site itself and its neighbours on loopback, the host's link-local segment and the
cloud metadata service (which hands out the machine's credentials). Those addresses, and the
unspecified ones (which the kernel treats as "this host"), are refused unless the deployment
allows them through CONNECTIVITY_ALLOWED_NETWORKS. Private ranges (10/8, 172.16/12, 192.168/16,
fc00::/7) stay open: that is where backends live.

An IPv4-mapped IPv6 address (::ffff:127.0.0.1) reaches its IPv4 address, so it is judged as that
address. The probe (probe.py) checks every address a host name resolves to and then connects only
to those checked addresses, never resolving the name a second time: a name cannot answer
"public" to the check and "loopback" to the connect (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

SETTING = "CONNECTIVITY_ALLOWED_NETWORKS"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = "a loopback address"
LINK_LOCAL = "a link-local address"
METADATA = "the cloud metadata address"
UNSPECIFIED = "an unspecified address"

# Most specific first: the metadata address is link-local too, and "metadata" is the reason that
# tells an operator why it matters.
REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = (
    (ipaddress.ip_network("169.254.169.254/32"), METADATA),
    (ipaddress.ip_network("fd00:ec2::254/128"), METADATA),
    (ipaddress.ip_network("127.0.0.0/8"), LOOPBACK),
    (ipaddress.ip_network("::1/128"), LOOPBACK),
    (ipaddress.ip_network("169.254.0.0/16"), LINK_LOCAL),
    (ipaddress.ip_network("fe80::/10"), LINK_LOCAL),
    # 0.0.0.0/8 is "this network": Linux connects 0.0.0.0 to the local host.
    (ipaddress.ip_network("0.0.0.0/8"), UNSPECIFIED),
    (ipaddress.ip_network("::/128"), UNSPECIFIED),
)


class AddressRefused(ValueError):
    """The target is (or resolves to) an address the connectivity test does not reach."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host, self.address, self.kind = host, address, kind
        if _same_address(host, address):
            what = f"{address} is {kind}"
        else:
            what = f"{host} resolves to {address}, {kind}"
        super().__init__(
            f"{what}; the connectivity test does not reach it unless {SETTING} allows it."
        )


def _same_address(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(address)
    except ValueError:
        return False


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings ("10.20.0.0/16", "fd12::/64", a single address) as networks.

    Raises ValueError naming the setting and the first entry that is not a network.
    """
    networks = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as error:
            raise ValueError(
                f"{SETTING}: {text!r} is not a network in CIDR notation such as 10.20.0.0/16, "
                f"127.0.0.1/32 or fd12:3456::/48 ({error})."
            ) from None
    return tuple(networks)


def _as_checked(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """Why the test must not connect to `address` ("a loopback address" ...), or None."""
    checked = _as_checked(address)
    if any(checked.version == net.version and checked in net for net in allowed):
        return None
    for network, kind in REFUSED_NETWORKS:
        if checked.version == network.version and checked in network:
            return kind
    return None


def check_addresses(host: str, addresses: Iterable[str], allowed: Sequence[Network] = ()) -> None:
    """Raise AddressRefused if any of the addresses `host` resolved to is refused.

    One refused address refuses the whole name: whoever controls its DNS could otherwise add
    127.0.0.1 next to a public address and let the connection order decide.
    """
    for text in addresses:
        kind = refusal(ipaddress.ip_address(text), allowed)
        if kind is not None:
            raise AddressRefused(host, text, kind)
