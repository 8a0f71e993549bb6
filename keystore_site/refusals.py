"""The refusal page (403): in the site's frame, it says what was refused, the permission it needs,
the roles that hold it, the tenant, the user's own roles there and who can grant them, and offers
a way back. Each refusal is logged as one line; Django's own record of it, with its traceback,
is dropped (keystore_site.logfilters).

A tenant the user may not read is never named: pages answer 404 for those (keystore.permissions),
and a forged form that names one gets "a tenant you hold no role in".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from keystore import permissions
from keystore.models import Tenant
from keystore.rolemodels import TenantRole

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("keystore.refusals")


@dataclass
class RefusalFacts:
    """What the page and the log line say."""

    reason: str
    page: str
    perm: str | None = None
    roles_needed: list[str] = field(default_factory=list)
    tenant: Tenant | None = None
    tenant_withheld: bool = False
    own_roles: list[str] = field(default_factory=list)
    administrators: list[str] = field(default_factory=list)
    superusers: list[str] = field(default_factory=list)


def _page(request: HttpRequest) -> str:
    """The refused page in words: the admin's URL names read "<app>_<model>_<what>"."""
    match = request.resolver_match
    described = ""
    if match is not None and match.url_name:
        from django.apps import apps

        for model in apps.get_models():
            prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
            if match.url_name.startswith(prefix):
                what = match.url_name[len(prefix) :].replace("_", " ")
                described = f"{what} ({model._meta.verbose_name_plural})"
                break
    return f"{described}: {request.method} {request.path}" if described else request.path


def refusal_facts(request: HttpRequest, exception: Exception | None) -> RefusalFacts:
    user = request.user if request.user.is_authenticated else None
    reason = str(exception) if exception is not None and str(exception) else "Not allowed."
    facts = RefusalFacts(reason=reason, page=_page(request))
    if isinstance(exception, permissions.Refusal) and exception.perm:
        facts.perm = exception.perm
        facts.roles_needed = permissions.roles_holding(exception.perm)
        tenant_id = exception.tenant_id
        if tenant_id is not None:
            if permissions.may(user, permissions.READ, tenant_id):
                facts.tenant = Tenant.objects.filter(pk=tenant_id).first()
            else:
                facts.tenant_withheld = True
    if facts.tenant is not None:
        if user is not None:
            own = sorted(permissions.roles_of(user, facts.tenant))
            facts.own_roles = [f"AuthGroup.{role}" for role in own]
        facts.administrators = list(
            TenantRole.objects.filter(tenant=facts.tenant, role=permissions.ADMINISTRATOR)
            .filter(group__user__is_active=True)
            .values_list("group__user__username", flat=True)
            .order_by("group__user__username")
        )
    facts.superusers = list(
        get_user_model()
        .objects.filter(is_superuser=True, is_active=True)
        .order_by("username")
        .values_list("username", flat=True)[:10]
    )
    return facts


def _way_back(request: HttpRequest) -> str:
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return referer
    return reverse("admin:index")


def _log_line(request: HttpRequest, facts: RefusalFacts) -> str:
    who = request.user.get_username() if request.user.is_authenticated else "anonymous"
    needs = f"; needs {facts.perm}" if facts.perm else ""
    if facts.tenant is not None:
        needs += f" in tenant {facts.tenant.slug} (holds: {', '.join(facts.own_roles) or 'none'})"
    elif facts.tenant_withheld:
        needs += " in a tenant the user holds no role in"
    return f"Refused {request.method} {request.path} to {who}: {facts.reason.rstrip('.')}{needs}"


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403."""
    facts = refusal_facts(request, exception)
    logger.warning("%s", _log_line(request, facts))
    context = {
        **admin.site.each_context(request),
        "title": "Not allowed",
        "facts": facts,
        "way_back": _way_back(request),
    }
    return render(request, "keystore/refusal.html", context, status=403)
