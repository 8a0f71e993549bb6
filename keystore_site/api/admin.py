"""API clients in the admin: the tenant's administrators create them (the secret is shown once,
on the page that answers the creation, never again) and revoke them. Through
keystore_site.api.clients, like the commands."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from keystore import permissions
from keystore.adminmixins import (
    FORM_METHODS,
    AdminRoute,
    NoAdminForms,
    TenantFactsAdmin,
    TenantFilter,
    acting_user,
)
from keystore.timefmt import utc
from keystore_site.api import clients
from keystore_site.api.forms import ApiClientForm
from keystore_site.api.models import ApiClient


@admin.register(ApiClient)
class ApiClientAdmin(NoAdminForms, TenantFactsAdmin):
    view_permission = permissions.DEPLOY
    list_display = ("name", "tenant", "role", "client_id", "created", "last_used", "state")
    list_filter = (TenantFilter, "role")
    search_fields = ("name", "client_id")
    fields = ("name", "tenant", "role", "client_id", "created_by", "created", "last_used", "state")
    readonly_fields = fields
    list_select_related = ("tenant",)

    @admin.display(description="created", ordering="created_at")
    def created(self, client: ApiClient) -> str:
        return utc(client.created_at)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, client: ApiClient) -> str:
        return utc(client.last_used_at) or "never"

    @admin.display(description="state")
    def state(self, client: ApiClient) -> str:
        return f"revoked {utc(client.revoked_at)}" if client.revoked_at else "active"

    def get_urls(self):
        routes: list[AdminRoute] = [
            ("create/", self.create_view, "create", FORM_METHODS),
            ("<int:pk>/revoke/", self.revoke_view, "revoke", FORM_METHODS),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        context = dict(extra_context or {})
        if permissions.may_anywhere(request.user, permissions.DEPLOY):
            context["create_url"] = reverse(self.url_name("create"))
        return super().changelist_view(request, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        client = self.checked_object(request, object_id)
        context = dict(extra_context or {})
        if client.is_active and permissions.may(request.user, permissions.DEPLOY, client.tenant):
            context["revoke_url"] = reverse(self.url_name("revoke"), args=[client.pk])
        return super().change_view(request, object_id, form_url, context)

    def create_view(self, request: HttpRequest) -> HttpResponse:
        permissions.require_anywhere(request.user, permissions.DEPLOY, "create API clients")
        form = ApiClientForm(request.POST or None, user=request.user)
        if request.method == "POST":
            self.check_posted_tenant(
                request, permissions.DEPLOY, "You may not create API clients in this tenant."
            )
            if form.is_valid():
                tenant = form.cleaned_data["tenant"]
                try:
                    client, secret = clients.create_api_client(
                        tenant,
                        form.cleaned_data["name"],
                        form.cleaned_data["role"],
                        actor=acting_user(request),
                    )
                except clients.ApiClientError as error:
                    form.add_error(None, str(error))
                else:
                    response = self.render_page(
                        request,
                        "created.html",
                        f"API client {client.name} created",
                        client=client,
                        secret=secret,
                        token_url=clients.token_url(),
                        api_url=clients.api_url(),
                    )
                    # The secret is on this page only: no cache keeps it.
                    add_never_cache_headers(response)
                    return response
        return self.render_page(request, "create.html", "Create an API client", form=form)

    def revoke_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        client = self.get_object_for(request, pk, permissions.DEPLOY)
        change_url = reverse(self.url_name("change"), args=[client.pk])
        if request.method == "POST":
            try:
                clients.revoke_api_client(client, actor=acting_user(request))
            except clients.ApiClientError as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"API client {client.name} is revoked: its tokens and secret stopped working.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(change_url)
        return self.render_page(
            request, "revoke.html", f"Revoke the API client {client.name}", client=client
        )
