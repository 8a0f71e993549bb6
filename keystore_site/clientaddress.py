"""The client's address for login lockouts (django-axes' AXES_CLIENT_IP_CALLABLE).

X-Forwarded-For is believed only as far as DJANGO_TRUSTED_PROXY_COUNT proxies we run ourselves:
each appends the address it saw, so with N trusted proxies the client is the N-th address from the
right, and anything further left was written by the client. With no trusted proxy (the default),
the header is ignored, so nobody can pick the address their failures are counted against.
Written here rather than taken from django-ipware, whose proxy count also counts the proxies' own
addresses and answers None for the single-address header a lone nginx sends.
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest

from keystore_site import conf


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    """None when the request has no address at all (a test client's force_login, a command):
    axes stores addresses in an IP address column."""
    remote = _address(request.META.get("REMOTE_ADDR", "") or "")
    trusted = conf.trusted_proxy_count()
    if trusted <= 0:
        return remote
    hops = [
        hop.strip()
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    if len(hops) < trusted:
        return remote
    # A proxy that wrote garbage: count it against the proxy, not a made-up client.
    return _address(hops[-trusted]) or remote
