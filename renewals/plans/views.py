"""The backend administrator's page, reached by a signed link without a login: the renewal pack
for that backend, the planned window, and Confirm imported (POST, with a name and an optional
comment). The link is the only credential (renewals.plans.backendlinks checks it on every
request); a tampered, expired or revoked link gets a refusal page (403) and changes nothing.

The pages are never cached and send a Referer to this site only, so the token in the address
stays between the backend's administrator and this site.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from keystore.downloads import file_response
from keystore_site.clientaddress import client_address
from renewals.plans import backendlinks
from renewals.plans.models import PlanBackend
from renewals.plans.services import PlanError
from renewals.whereused import pack
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.report import WhereUsedReport, where_used


def _private(response: HttpResponse) -> HttpResponse:
    # same-origin, not no-referrer: with no-referrer the browser sends "Origin: null" on the
    # Confirm POST and Django's CSRF check refuses it. Other sites still never see the token.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _refused(request: HttpRequest, message: str) -> HttpResponse:
    return _private(render(request, "plans/link_refused.html", {"message": message}, status=403))


def _backend_report(backend: PlanBackend) -> WhereUsedReport:
    """Where-used narrowed to this backend: its pack names its own flows only."""
    plan = backend.plan
    report = where_used(plan.tenant, plan.alias, key_pair=True)
    mine = (backend.system, backend.address)
    report.uses = [b for b in report.uses if (b.system, b.address) == mine]
    report.may_use = [b for b in report.may_use if (b.system, b.address) == mine]
    return report


def _page_context(backend: PlanBackend, token: str) -> dict:
    plan = backend.plan
    return {
        "title": f"New SAP certificate for {backend.label}",
        "backend": backend,
        "plan": plan,
        "tenant": plan.tenant,
        "pack_url": reverse("plans_backend_pack", args=[token]),
        "confirm_url": reverse("plans_backend_confirm", args=[token]),
    }


@never_cache
@require_safe
def backend_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        backend = backendlinks.open_link(token)
    except backendlinks.LinkRefused as refusal:
        return _refused(request, str(refusal))
    context = _page_context(backend, token)
    context["confirmed"] = request.GET.get("confirmed") == "1"
    return _private(render(request, "plans/backend_page.html", context))


@never_cache
@require_safe
def backend_pack(request: HttpRequest, token: str) -> HttpResponse:
    try:
        backend = backendlinks.open_link(token)
    except backendlinks.LinkRefused as refusal:
        return _refused(request, str(refusal))
    pending = backend.plan.pending_key()
    if pending is None:
        return _refused(request, "This renewal is over: the new key is no longer waiting.")
    try:
        return _private(file_response(pack.renewal_pack(pending, _backend_report(backend))))
    except WhereUsedError as error:
        return _refused(request, str(error))


@never_cache
@require_POST
def backend_confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        backend = backendlinks.open_link(token)
        backendlinks.confirm_imported(
            token,
            request.POST.get("name", ""),
            request.POST.get("comment", ""),
            address=client_address(request),
        )
    except backendlinks.LinkRefused as refusal:
        return _refused(request, str(refusal))
    except PlanError as error:
        context = _page_context(backend, token)
        context.update(
            error=str(error),
            name=request.POST.get("name", "")[: backendlinks.MAX_NAME],
            comment=request.POST.get("comment", "")[: backendlinks.MAX_COMMENT],
        )
        return _private(render(request, "plans/backend_page.html", context, status=400))
    return HttpResponseRedirect(reverse("plans_backend_page", args=[token]) + "?confirmed=1")
