"""Admin building blocks that ask the permissions module, for the tenant, on every path.

Django admin checks model-level permissions only, and roles here are per tenant, so every ModelAdmin
of tenant data derives from TenantScopedAdmin: the changelist shows only visible tenants' rows,
object pages re-check the object's tenant, and custom URLs go through `tenant_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.views.decorators.http import require_http_methods

from keystore import conf, permissions
from keystore.models import Tenant
from keystore.timefmt import utc

if TYPE_CHECKING:
    from keystore.permissions import AnyUser

_M = TypeVar("_M", bound=models.Model)

#: A view of a custom admin URL.
View = Callable[..., HttpResponse]
#: The methods a view answers: require_safe, require_POST or FORM_METHODS.
AllowedMethods = Callable[[View], View]
#: (route, view, name suffix, allowed methods), see TenantScopedAdmin.tenant_urls.
AdminRoute = tuple[str, View, str, AllowedMethods]

# Forms answer GET (show) and POST (act), nothing else.
FORM_METHODS: AllowedMethods = require_http_methods(["GET", "HEAD", "POST"])


def acting_user(request: HttpRequest) -> User:
    """The user an admin view acts for, as the services' `actor`. Custom admin URLs are behind
    admin_site.admin_view (a logged-in staff user), so an anonymous user is refused here only
    if a view were ever wired without it."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Log in to do this.")
    return user


@runtime_checkable
class VisibleToQuerySet(Protocol):
    """A queryset that knows which of its rows a user may see (keystore.querysets)."""

    def visible_to(self, user: AnyUser, perm: str | None = None) -> Self: ...


def visible_rows(queryset: QuerySet[_M], user: AnyUser, perm: str) -> QuerySet[_M]:
    """An admin's queryset narrowed to the rows of the tenants where `user` holds `perm`; the
    model's manager must be one of keystore.querysets' tenant-aware querysets."""
    if not isinstance(queryset, VisibleToQuerySet):
        raise ImproperlyConfigured(
            f"{queryset.model.__name__}'s queryset has no visible_to; its admin cannot be "
            "tenant-scoped."
        )
    return queryset.visible_to(user, perm)


class NoAdminForms:
    """Put before the ModelAdmin (or inline) base: its rows are never added, changed or deleted
    through the admin's own forms, only through the service functions that the custom pages and
    actions call."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class TenantScopedAdmin(admin.ModelAdmin):
    """Visibility needs NodeManager.read on the row's tenant; changes need `change_permission`."""

    view_permission = permissions.READ
    change_permission = permissions.DEPLOY
    tenant_field = "tenant"
    #: The list page's title: the screen's own name, not Django's "Select ... to view".
    list_title = ""
    #: The count's plural under the list where the model's plural is a screen name.
    count_plural = ""

    def changelist_view(self, request: HttpRequest, extra_context=None):
        title = self.list_title or capfirst(str(self.opts.verbose_name_plural))
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def tenant_of(self, obj):
        return getattr(obj, self.tenant_field)

    # Any: subclasses go on with their model's own queryset methods (with_usage_count, ...),
    # and ModelAdmin's stubs know only a plain QuerySet.
    def get_queryset(self, request: HttpRequest) -> Any:
        return visible_rows(super().get_queryset(request), request.user, self.view_permission)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.may_anywhere(request.user, self.view_permission)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is None:
            return permissions.may_anywhere(request.user, self.view_permission)
        return permissions.may(request.user, self.view_permission, self.tenant_of(obj))

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is None:
            return permissions.may_anywhere(request.user, self.change_permission)
        return permissions.may(request.user, self.change_permission, self.tenant_of(obj))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return permissions.may_anywhere(request.user, self.change_permission)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    def url_name(self, suffix: str) -> str:
        """The full name of one of this admin's URLs (its own or Django's)."""
        return f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{suffix}"

    def tenant_urls(self, routes: list[AdminRoute]) -> list[URLPattern]:
        """This admin's own URLs from (route, view, name suffix, allowed methods) rows, the
        methods being require_safe, require_POST or FORM_METHODS; each behind tenant_view."""
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(route, self.tenant_view(methods(view)), name=f"{info}_{suffix}")
            for route, view, suffix, methods in routes
        ]

    def tenant_view(self, view: View) -> View:
        """Wrap a custom admin URL in admin_view (staff login); the view then calls
        get_object_for / permissions.require for the tenant it touches."""
        return self.admin_site.admin_view(view)

    def get_object_for(self, request: HttpRequest, object_id, perm: str):
        """The object if it exists and the user holds `perm` on its tenant; 404 for a missing
        object or another tenant's, 403 for a role without `perm` in the object's tenant."""
        obj = (
            self.model._default_manager.filter(pk=object_id)
            .select_related(self.tenant_field)
            .first()
        )
        if obj is None:
            raise Http404("No such object.")
        permissions.require(request.user, perm, self.tenant_of(obj))
        return obj

    def render_page(self, request: HttpRequest, template: str, title: str, **context):
        """A custom admin page (confirmation, form, result) with the admin's chrome; templates
        live in admin/<app_label>/<model_name>/."""
        from django.template.response import TemplateResponse
        from django.urls import reverse

        opts = self.opts
        return TemplateResponse(
            request,
            f"admin/{opts.app_label}/{opts.model_name}/{template}",
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "title": title,
                "changelist_url": reverse(
                    f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
                ),
                **context,
            },
        )

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        """For actions declared with permissions=("deploy",): offered where the user may deploy
        in some tenant; each action filters its selection per tenant (filter_selection)."""
        return permissions.may_anywhere(request.user, permissions.DEPLOY)

    @staticmethod
    def check_posted_tenant(request: HttpRequest, perm: str, refusal: str) -> None:
        """A posted tenant on which the user lacks `perm` is refused outright (a forged form),
        before the form would quietly answer "choose a tenant"."""
        raw = request.POST.get("tenant", "").strip()
        if raw.isdigit() and not permissions.may(request.user, perm, int(raw)):
            raise permissions.Refusal(refusal, perm=perm, tenant=int(raw))

    def filter_selection(self, request: HttpRequest, queryset, perm: str):
        """Re-filter an action's selection: the user acts only where they hold `perm`."""
        return queryset.filter(
            **{f"{self.tenant_field}_id__in": permissions.tenant_ids(request.user, perm)}
        )


# -- one clock and one colour per page ------------------------------------------------------

_NOW_ATTR = "_keystore_now"


def request_now(request: HttpRequest) -> datetime:
    """One clock reading per request, so every row and filter of a page agrees on "now"."""
    now: datetime | None = getattr(request, _NOW_ATTR, None)
    if now is None:
        now = timezone.now()
        setattr(request, _NOW_ATTR, now)
    return now


_MONITOR_ATTR = "_keystore_monitor_tenants"


def monitor_tenants(request: HttpRequest) -> tuple[Tenant | None, list[Tenant]]:
    """(the tenant the Keystore Monitor shows, the tenants the user may read): the list's
    `tenant` filter when the user may read that tenant, else the user's only tenant, else
    None (all of the user's tenants). One query per request, however many rows."""
    cached: tuple[Tenant | None, list[Tenant]] | None = getattr(request, _MONITOR_ATTR, None)
    if cached is not None:
        return cached
    tenants = list(Tenant.objects.visible_to(request.user).order_by("slug", "pk"))
    raw = request.GET.get(TenantFilter.parameter_name, "")
    chosen = next((tenant for tenant in tenants if str(tenant.pk) == raw), None)
    if chosen is None and len(tenants) == 1:
        chosen = tenants[0]
    setattr(request, _MONITOR_ATTR, (chosen, tenants))
    return chosen, tenants


def monitor_columns(request: HttpRequest, columns: tuple) -> tuple:
    """A monitor list's columns without "tenant" when the monitor shows one tenant (its name
    heads the page), which leaves the row's actions room on a 1366 pixel screen."""
    tenant, _ = monitor_tenants(request)
    return tuple(column for column in columns if column != "tenant") if tenant else columns


def is_superuser(user) -> bool:
    return bool(user.is_active and user.is_superuser)


def days_left(valid_until: datetime, now: datetime) -> str:
    """How far the expiry is, in whole days: "in 12 days", "in 1 day", "in less than a day",
    "expired 3 days ago", "expired less than a day ago"."""
    left = valid_until - now
    if left > timedelta(0):
        days = left.days
        if days == 0:
            return "in less than a day"
        return f"in {days} day{'' if days == 1 else 's'}"
    days = (-left).days
    if days == 0:
        return "expired less than a day ago"
    return f"expired {days} day{'' if days == 1 else 's'} ago"


def expiry_state(valid_until: datetime, now: datetime) -> str:
    """ "expired", "soon" (within KEYSTORE_EXPIRY_WARNING_DAYS) or "valid": the colour's name."""
    left = valid_until - now
    if left <= timedelta(0):
        return "expired"
    if left < timedelta(days=conf.expiry_warning_days()):
        return "soon"
    return "valid"


def expiry_badge(valid_until: datetime, now: datetime) -> str:
    """Valid-until date with the days left next to it, both coloured: red when expired, amber
    within KEYSTORE_EXPIRY_WARNING_DAYS, green otherwise. The date never wraps; lists put the
    days left on a line of their own (monitor.css), detail pages beside the date."""
    state = expiry_state(valid_until, now)
    left = days_left(valid_until, now)
    return format_html(
        '<span class="expiry expiry-{}" title="{}">{}</span> '
        '<span class="days-left expiry-{}">{}</span>',
        state,
        "Expired" if state == "expired" else f"Expires {left}",
        utc(valid_until),
        state,
        left,
    )


# -- one action menu per row ------------------------------------------------------------------

#: (label, url, css class) of one thing a user may do with a row; built only for what the
#: permissions module allows, so a refused action is never offered.
RowAction = tuple[str, str, str]


def row_menu(
    groups: list[list[RowAction]], main: RowAction | None = None, *, label: str = "Actions"
) -> str:
    """One menu of a row's (or a detail page's) actions, its groups divided by a line, in the
    original's order: downloads, then Rename / Delete / Export, then Activate or Add to New SAP
    Keys. `main` is shown beside the menu as a button too, so the action a row is there for
    stays one click away. A <details> element: it opens without script (monitor.js only
    closes the other menus), and the site's Content-Security-Policy needs no inline code."""
    items: list[str] = []
    for group in (group for group in groups if group):
        if items:
            items.append(mark_safe('<li class="row-menu-separator" role="separator"></li>'))
        items.extend(
            format_html('<li><a class="row-action-{}" href="{}">{}</a></li>', css, url, text)
            for text, url, css in group
        )
    if not items and main is None:
        return ""
    menu = (
        format_html(
            '<details class="row-menu"><summary title="All actions">{}</summary>'
            '<ul class="row-menu-items">{}</ul></details>',
            label,
            format_html_join("", "{}", ((item,) for item in items)),
        )
        if items
        else ""
    )
    button = (
        format_html(
            '<a class="button row-main-action row-action-{}" href="{}">{}</a>',
            main[2],
            main[1],
            main[0],
        )
        if main
        else ""
    )
    return format_html('<div class="row-actions">{}{}</div>', button, menu)


# -- shared list filter and object pages ----------------------------------------------------


class TenantFilter(admin.SimpleListFilter):
    """Only the tenants the user may see are offered (and accepted)."""

    title = "tenant"
    parameter_name = "tenant"

    def __init__(self, request, params, model, model_admin):
        self.perm = getattr(model_admin, "view_permission", permissions.READ)
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return [
            (str(tenant.pk), str(tenant))
            for tenant in Tenant.objects.visible_to(request.user, self.perm)
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit() or int(value) not in permissions.tenant_ids(request.user, self.perm):
            return queryset.none()
        return queryset.filter(tenant_id=int(value))


class TenantFactsAdmin(TenantScopedAdmin):
    """Object pages answer 404 for a missing object or another tenant's, 403 for a role
    without the permission (Django's default would redirect to the index for all)."""

    def has_module_permission(self, request):
        # A superuser sees the pages even before the first tenant exists.
        return is_superuser(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        if obj is None and is_superuser(request.user):
            return True
        return super().has_view_permission(request, obj)

    def checked_object(self, request: HttpRequest, object_id, perm: str | None = None):
        try:
            pk = int(str(object_id))
        except ValueError:
            raise Http404("No such object.")
        return self.get_object_for(request, pk, perm or self.view_permission)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.checked_object(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self.checked_object(request, object_id)
        return super().history_view(request, object_id, extra_context)
