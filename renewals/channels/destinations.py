"""What an apprise URL points to, without ever showing the URL: the service, the host a person
may see, and the address rules of the connectivity test (#9) applied to that host.

A channel URL embeds its credentials in every part (Slack's and Discord's tokens sit where a
host would be, a JSON webhook's in its path), so nothing here returns or prints the URL. The
host shown is the URL's host only for services whose URL names the server (JSON, ntfy on
one's own server, Matrix, Mattermost ...); for the others it is the public service's domain
(slack.com), because their "host" part is a token.

The host is checked when the channel is saved and again before each delivery: a name that
resolves to a refused address (loopback, link-local, cloud metadata, unspecified) is refused
unless CONNECTIVITY_ALLOWED_NETWORKS allows it. A name that does not resolve is let through
(apprise then fails to connect, and the message is retried); between our check and apprise's
own lookup a name could still change its answer, which a webhook's DNS owner could use, but
not a tenant administrator who does not control the DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import apprise

from renewals.channels import conf
from renewals.connectivity import conf as connectivity_conf
from renewals.connectivity.addresses import SETTING, refusal

# One asset for every channel: redirects off (a 30x to 127.0.0.1 would pass by the address
# check), and no per-message throttling sleep inside a request that just committed.
ASSET = apprise.AppriseAsset(http_redirects=False)


# apprise's services that act on this server itself (desktop notices, the local syslog):
# a tenant's administrator must not reach the site's own machine through a channel.
LOCAL_SERVICES = frozenset(
    {"NotifyDBus", "NotifyGLib", "NotifyGnome", "NotifyWindows", "NotifyMacOSX", "NotifySyslog"}
)


class DestinationError(ValueError):
    """The URL is not one apprise can send to, or its host is refused; the message never
    contains the URL."""


@dataclass(frozen=True)
class Destination:
    service: str  # apprise's protocol, the metrics' channel kind: "json", "slack", "ntfy"
    service_name: str  # "JSON", "Slack"
    host: str  # what a person may see: the server's name, or the service's domain
    checked_host: str  # the host the address rules apply to ("" for a public service's)
    plugin: Any  # apprise's NotifyBase for this URL; holds the secret, never render it


def _service_of(plugin: Any) -> str:
    for value in (plugin.protocol, plugin.secure_protocol):
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value:
            return str(value).lower()
    return type(plugin).__name__.removeprefix("Notify").lower()


def parse(url: str) -> Destination:
    """The destination of an apprise URL; DestinationError when apprise cannot use it."""
    url = (url or "").strip()
    if not url or "://" not in url:
        raise DestinationError(
            "Give an apprise URL such as json://hooks.example.com/path or slack://..."
        )
    scheme = url.split("://", 1)[0].lower()
    try:
        plugin = apprise.Apprise.instantiate(url, asset=ASSET, suppress_exceptions=True)
    except Exception:  # a plugin's own parsing error: its text may quote the URL
        plugin = None
    if not plugin:
        raise DestinationError(
            f"apprise cannot send to this {scheme}:// URL (unknown service, or a part missing)."
        )
    if type(plugin).__name__ in LOCAL_SERVICES:
        raise DestinationError(
            f"{plugin.service_name} ({scheme}://) acts on the site's own server; a channel "
            "must be a chat or webhook service."
        )
    names_a_server = "host" in getattr(plugin, "template_tokens", {})
    own_host = str(getattr(plugin, "host", "") or "") if names_a_server else ""
    service_host = urlsplit(str(getattr(plugin, "service_url", "") or "")).hostname or ""
    return Destination(
        service=_service_of(plugin),
        service_name=str(plugin.service_name),
        host=own_host or service_host,
        checked_host=own_host,
        plugin=plugin,
    )


def _resolved(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def check_host(destination: Destination) -> None:
    """Refuse a host that is, or resolves to, an address the connectivity test may not reach."""
    host = destination.checked_host.strip("[]")
    if not host:
        return
    allowed = connectivity_conf.allowed_networks()
    for address in _resolved(host):
        kind = refusal(ipaddress.ip_address(address), allowed)
        if kind is not None:
            what = f"{host} is {kind}" if host == address else f"{host} resolves to {kind}"
            raise DestinationError(
                f"{what}; channels do not send there unless {SETTING} allows it."
            )


def checked(url: str) -> Destination:
    """parse + check_host, and the site's limits forced on the plugin whatever the URL says."""
    destination = parse(url)
    check_host(destination)
    plugin = destination.plugin
    plugin.redirects = False
    plugin.request_rate_per_sec = 0
    limit = conf.timeout()
    plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout or limit), limit)
    plugin.socket_read_timeout = min(float(plugin.socket_read_timeout or limit), limit)
    return destination
