"""API clients: create, revoke, list. Each operation is audited; the secret is returned once, at
creation, and stored only as a hash (keystore_site.api.hashers).

`actor` is the user who acts (they must be an administrator of the tenant: DEPLOY) or None for
the system (commands run by the operator).
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from keystore import permissions, roles
from keystore.audit import record_audit
from keystore.models import AuditAction, Tenant
from keystore_site.api.models import ApiClient

if TYPE_CHECKING:
    from keystore.audit import Actor

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class ApiClientError(Exception):
    """Refused; the message is meant for the operator."""


def _require_admin(actor: Actor, tenant: Tenant, doing: str) -> None:
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, ApiClientError, doing)


def _base_url() -> str:
    # The address mails link to (RENEWALS_SITE_URL) is the site's public address.
    from renewals import conf

    return conf.site_url() or "http://127.0.0.1:8000"


def token_url() -> str:
    return f"{_base_url()}/oauth/token"


def api_url() -> str:
    return f"{_base_url()}/api/v1"


def service_username(tenant: Tenant, name: str) -> str:
    """The user an API client acts as; the audit log names it."""
    return f"api:{tenant.slug}:{name}"


def create_api_client(
    tenant: Tenant, name: str, role: str, *, actor: Actor = None
) -> tuple[ApiClient, str]:
    """A new API client of the tenant holding `role`; returns it with its secret (shown once)."""
    _require_admin(actor, tenant, "create API clients")
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise ApiClientError(
            "The name must be 1 to 64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit."
        )
    if role not in permissions.ROLES:
        raise ApiClientError(f"Choose a role: {', '.join(permissions.ROLES)}.")
    secret = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            if ApiClient.objects.filter(tenant=tenant, name=name).exists():
                raise ApiClientError(f"The tenant has an API client named {name!r} already.")
            application = Application(
                name=f"{tenant.slug}/{name}",
                client_type=Application.CLIENT_CONFIDENTIAL,
                authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
                client_secret=secret,
                hash_client_secret=True,
            )
            application.save()
            user = get_user_model().objects.create_user(
                username=service_username(tenant, name), password=None
            )
            roles.assign_role(user, tenant, role, actor=actor)
            # Not staff: the API client's user cannot open the site's pages.
            user.is_staff = False
            user.save(update_fields=["is_staff"])
            client = ApiClient.objects.create(
                tenant=tenant,
                name=name,
                role=role,
                application=application,
                client_id=application.client_id,
                user=user,
                created_by=actor.get_username() if actor is not None else "system",
            )
            record_audit(
                tenant,
                "",
                AuditAction.API_CLIENT,
                actor,
                detail=f"API client {name} created ({role})",
            )
    except IntegrityError:
        raise ApiClientError(f"The tenant has an API client named {name!r} already.")
    return client, secret


def revoke_api_client(client: ApiClient, *, actor: Actor = None) -> ApiClient:
    """End the client's access at once: its tokens and its credentials stop working."""
    _require_admin(actor, client.tenant, "revoke API clients")
    with transaction.atomic():
        locked = (
            ApiClient.objects.select_for_update().select_related("tenant", "user").get(pk=client.pk)
        )
        if locked.revoked_at is not None:
            raise ApiClientError(f"The API client {locked.name!r} is revoked already.")
        if locked.application_id is not None:
            AccessToken.objects.filter(application_id=locked.application_id).delete()
            Application.objects.filter(pk=locked.application_id).delete()
        locked.application = None
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at", "application"])
        roles.remove_roles(locked.user, locked.tenant)
        locked.user.is_active = False
        locked.user.save(update_fields=["is_active"])
        record_audit(
            locked.tenant,
            "",
            AuditAction.API_CLIENT,
            actor,
            detail=f"API client {locked.name} revoked",
        )
    return locked
