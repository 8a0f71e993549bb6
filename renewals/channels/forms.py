"""The channel forms of the admin: the tenant among those the user administers, the URL
write-only (a password input that is never filled in again), the events as checkboxes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms

from keystore import permissions
from keystore.forms import offer_tenants
from keystore.models import Tenant
from renewals.channels.events import ALL, EVENTS

if TYPE_CHECKING:
    from keystore.permissions import AnyUser

EVENT_CHOICES = [(ALL, "All events, also kinds added later"), *EVENTS]

URL_HELP = (
    "An apprise URL, e.g. json://hooks.example.com/path, slack://TokenA/TokenB/TokenC or "
    "msteams://... It is sealed when saved and never shown again: afterwards the page shows "
    "only its service and host."
)


def _url_field(required: bool, help_text: str) -> forms.CharField:
    return forms.CharField(
        label="URL",
        required=required,
        max_length=2000,
        strip=True,
        # render_value=False: a page never carries the URL back, not even after an error.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=help_text,
    )


class _EventsMixin(forms.Form):
    events = forms.MultipleChoiceField(
        choices=EVENT_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="The kinds of event this channel takes. The backend administrators' links "
        "never go to a channel.",
    )


class ChannelForm(_EventsMixin):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        error_messages={"invalid_choice": "Choose a tenant you administer."},
    )
    name = forms.CharField(
        max_length=64, help_text="Letters, digits, spaces, dots, dashes or underscores."
    )
    url = _url_field(True, URL_HELP)
    field_order = ["tenant", "name", "url", "events"]

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offer_tenants(self, Tenant.objects.visible_to(user, permissions.DEPLOY))


class ChannelChangeForm(_EventsMixin):
    name = forms.CharField(
        max_length=64, help_text="Letters, digits, spaces, dots, dashes or underscores."
    )
    url = _url_field(False, "Leave empty to keep the sealed URL. " + URL_HELP)
    field_order = ["name", "url", "events"]
