"""The token of a backend administrator's link: django.core.signing over (plan, backend,
nonce, expiry) with a salt of its own, so a value signed for another purpose of the site never
opens it. Deterministic: the same backend row gives the same token, so `renewal_plan --json`
prints the link that was mailed. Checking what the token says against the row is
renewals.plans.backendlinks.open_link's work.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.urls import reverse

from renewals.plans.models import PlanBackend

#: One salt per purpose: this one opens a backend administrator's page and nothing else.
SALT = "renewals.plans.backend-link"


def token_for(backend: PlanBackend) -> str:
    """The backend's current link token ("" when it has no link)."""
    if not backend.link_nonce or backend.link_expires_at is None:
        return ""
    payload = {
        "p": backend.plan_id,
        "b": backend.pk,
        "n": backend.link_nonce,
        "e": int(backend.link_expires_at.timestamp()),
    }
    return signing.Signer(salt=SALT).sign_object(payload)


def unsign(token: str) -> Any:
    """What the token says; signing.BadSignature when it was not signed here for this purpose."""
    return signing.Signer(salt=SALT).unsign_object(token)


def link_path(backend: PlanBackend) -> str:
    token = token_for(backend)
    return reverse("plans_backend_page", args=[token]) if token else ""


def link_url(backend: PlanBackend, base_url: str) -> str:
    path = link_path(backend)
    return f"{base_url.rstrip('/')}{path}" if path else ""
