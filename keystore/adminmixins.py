"""Admin building blocks that ask the permissions module, for the tenant, on every path.

Django admin checks model-level permissions only, and roles here are per tenant, so every ModelAdmin
of tenant data derives from TenantScopedAdmin: the changelist shows only visible tenants' rows,
object pages re-check the object's tenant, and custom URLs go through `tenant_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import path
from django.views.decorators.http import require_http_methods

from keystore import permissions

# Forms answer GET (show) and POST (act), nothing else.
FORM_METHODS = require_http_methods(["GET", "HEAD", "POST"])


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

    def tenant_of(self, obj):
        return getattr(obj, self.tenant_field)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).visible_to(request.user, self.view_permission)

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

    def tenant_urls(self, routes: list[tuple[str, Callable, str, Callable]]) -> list:
        """This admin's own URLs from (route, view, name suffix, allowed methods) rows, the
        methods being require_safe, require_post or FORM_METHODS; each behind tenant_view."""
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(route, self.tenant_view(methods(view)), name=f"{info}_{suffix}")
            for route, view, suffix, methods in routes
        ]

    def tenant_view(self, view: Callable) -> Callable:
        """Wrap a custom admin URL in admin_view (staff login); the view then calls
        get_object_for / permissions.require for the tenant it touches."""
        return self.admin_site.admin_view(view)

    def get_object_for(self, request: HttpRequest, object_id, perm: str):
        """The object if it exists and the user holds `perm` on its tenant; 404 for a missing
        object or another tenant's, 403 for a role without `perm` in the object's tenant."""
        from django.http import Http404

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
            raise PermissionDenied(refusal)

    def filter_selection(self, request: HttpRequest, queryset, perm: str):
        """Re-filter an action's selection: the user acts only where they hold `perm`."""
        return queryset.filter(
            **{f"{self.tenant_field}_id__in": permissions.tenant_ids(request.user, perm)}
        )


def require_post(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.method != "POST":
            from django.http import HttpResponseNotAllowed

            return HttpResponseNotAllowed(["POST"])
        return view(request, *args, **kwargs)

    return wrapper
