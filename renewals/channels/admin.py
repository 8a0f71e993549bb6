"""Channels in the admin: the tenant's administrators (NodeManager.deploysecuritycontent) add,
change, test and remove them; nobody else sees them, since a channel's host and events tell
where the tenant's news goes. The URL is write-only: pages show its service and host.

Every view asks keystore.permissions for the channel's tenant first (TenantScopedAdmin's
helpers) and calls one function of renewals.channels.services, as the commands do.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

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
from renewals.channels import services
from renewals.channels.events import ALL
from renewals.channels.forms import ChannelChangeForm, ChannelForm
from renewals.channels.models import Channel


@admin.register(Channel)
class ChannelAdmin(NoAdminForms, TenantFactsAdmin):
    view_permission = permissions.DEPLOY
    list_display = ("name", "tenant", "service_name", "host", "takes", "state", "created")
    list_filter = (TenantFilter, "service")
    search_fields = ("name", "host")
    fields = ("name", "tenant", "service_name", "host", "takes", "created_by", "created", "state")
    readonly_fields = fields
    list_select_related = ("tenant",)

    @admin.display(description="events")
    def takes(self, channel: Channel) -> str:
        return channel.events_display

    @admin.display(description="created", ordering="created_at")
    def created(self, channel: Channel) -> str:
        return utc(channel.created_at)

    @admin.display(description="state")
    def state(self, channel: Channel) -> str:
        return f"removed {utc(channel.removed_at)}" if channel.removed_at else "active"

    def get_urls(self):
        routes: list[AdminRoute] = [
            ("create/", self.create_view, "create", FORM_METHODS),
            ("<int:pk>/edit/", self.edit_view, "edit", FORM_METHODS),
            ("<int:pk>/test/", self.test_view, "test", require_POST),
            ("<int:pk>/remove/", self.remove_view, "remove", FORM_METHODS),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        context = dict(extra_context or {})
        if permissions.may_anywhere(request.user, permissions.DEPLOY):
            context["create_url"] = reverse(self.url_name("create"))
        return super().changelist_view(request, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        channel = self.checked_object(request, object_id)
        context = dict(extra_context or {})
        if channel.is_active and permissions.may(request.user, permissions.DEPLOY, channel.tenant):
            context["edit_url"] = reverse(self.url_name("edit"), args=[channel.pk])
            context["test_url"] = reverse(self.url_name("test"), args=[channel.pk])
            context["remove_url"] = reverse(self.url_name("remove"), args=[channel.pk])
        context["recent_messages"] = services.recent_messages(channel)
        return super().change_view(request, object_id, form_url, context)

    def _change_url(self, channel: Channel) -> str:
        return reverse(self.url_name("change"), args=[channel.pk])

    def create_view(self, request: HttpRequest) -> HttpResponse:
        permissions.require_anywhere(request.user, permissions.DEPLOY, "add channels")
        form = ChannelForm(request.POST or None, user=request.user)
        if request.method == "POST":
            self.check_posted_tenant(
                request, permissions.DEPLOY, "You may not add channels in this tenant."
            )
            if form.is_valid():
                try:
                    channel = services.add_channel(
                        form.cleaned_data["tenant"],
                        form.cleaned_data["name"],
                        form.cleaned_data["url"],
                        form.cleaned_data["events"],
                        actor=acting_user(request),
                    )
                except services.ChannelError as error:
                    form.add_error(None, str(error))
                else:
                    self.message_user(
                        request,
                        f"Channel {channel.name} added ({channel.service_name}, {channel.host}); "
                        "its URL is sealed and will not be shown again.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(self._change_url(channel))
        return self.render_page(request, "create.html", "Add a channel", form=form)

    def edit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        channel = self.get_object_for(request, pk, permissions.DEPLOY)
        initial = {"name": channel.name, "events": list(channel.event_names) or [ALL]}
        form = ChannelChangeForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                channel = services.change_channel(
                    channel,
                    name=form.cleaned_data["name"],
                    event_names=form.cleaned_data["events"],
                    url=form.cleaned_data["url"],
                    actor=acting_user(request),
                )
            except services.ChannelError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(request, f"Channel {channel.name} saved.", messages.SUCCESS)
                return HttpResponseRedirect(self._change_url(channel))
        return self.render_page(
            request, "edit.html", f"Change the channel {channel.name}", form=form, channel=channel
        )

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        channel = self.get_object_for(request, pk, permissions.DEPLOY)
        try:
            result = services.send_test(channel, actor=acting_user(request))
        except services.ChannelError as error:
            self.message_user(request, str(error), messages.WARNING)
        else:
            self.message_user(
                request, result.message, messages.SUCCESS if result.ok else messages.ERROR
            )
        return HttpResponseRedirect(self._change_url(channel))

    def remove_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        channel = self.get_object_for(request, pk, permissions.DEPLOY)
        if request.method == "POST":
            try:
                services.remove_channel(channel, actor=acting_user(request))
            except services.ChannelError as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                self.message_user(
                    request,
                    f"Channel {channel.name} removed: it takes no more events and its URL is "
                    "erased.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self._change_url(channel))
        return self.render_page(
            request, "remove.html", f"Remove the channel {channel.name}", channel=channel
        )
