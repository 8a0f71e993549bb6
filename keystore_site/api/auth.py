"""Who calls the API: an API client, by a bearer token (OAuth 2.0 client credentials at
/oauth/token) or by HTTP Basic with its client id and secret, as Cloud Integration accepts both.
A user's browser session is never an API credential.

CSRF as Cloud Integration does it: a GET with `X-CSRF-Token: Fetch` answers a token in the
`X-CSRF-Token` header; a POST, PUT or DELETE must send it back. The token is signed and names
the API client, so it needs no server-side session.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta

from django.core import signing
from django.http import HttpRequest
from django.utils import timezone
from oauth2_provider.models import Application
from oauth2_provider.oauth2_backends import get_oauthlib_core

from keystore_site.api.hashers import check_client_secret
from keystore_site.api.models import ApiClient

CSRF_HEADER = "X-CSRF-Token"
CSRF_SALT = "keystore_site.api.csrf"
#: How long a fetched CSRF token stays good (Cloud Integration's last about as long as a
#: session); a client fetches a new one when told "Required".
CSRF_MAX_AGE = timedelta(hours=1)
#: The last-use column is written at most this often per client (not on every call).
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: Longer credentials are refused before any lookup.
MAX_CREDENTIAL_LENGTH = 512


def _application_of(request: HttpRequest) -> Application | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if len(header) > MAX_CREDENTIAL_LENGTH:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=["api"])
        if not valid:
            return None
        return oauth_request.access_token.application
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, separator, secret = decoded.partition(":")
        if not separator or not client_id or not secret:
            return None
        application = Application.objects.filter(client_id=client_id).first()
        if application is None or not check_client_secret(secret, application.client_secret):
            return None
        return application
    return None


def api_client_of(request: HttpRequest) -> ApiClient | None:
    """The active API client whose credentials the request carries, or None."""
    application = _application_of(request)
    if application is None:
        return None
    client = (
        ApiClient.objects.select_related("tenant", "user")
        .filter(application=application, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if client is None:
        return None
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    return client


def csrf_token_for(client: ApiClient) -> str:
    return signing.dumps({"client": client.client_id}, salt=CSRF_SALT, compress=True)


def csrf_token_is_valid(request: HttpRequest, client: ApiClient) -> bool:
    token = request.headers.get(CSRF_HEADER, "")
    if not token or len(token) > MAX_CREDENTIAL_LENGTH or token.lower() == "fetch":
        return False
    try:
        data = signing.loads(token, salt=CSRF_SALT, max_age=CSRF_MAX_AGE)
    except signing.BadSignature:
        return False
    return isinstance(data, dict) and data.get("client") == client.client_id


def wants_csrf_token(request: HttpRequest) -> bool:
    return request.method in ("GET", "HEAD") and (
        request.headers.get(CSRF_HEADER, "").lower() == "fetch"
    )
