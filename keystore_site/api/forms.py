"""The API client form of the admin: the tenant among those the user administers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms

from keystore import permissions
from keystore.forms import offer_tenants
from keystore.models import Tenant

if TYPE_CHECKING:
    from keystore.permissions import AnyUser


class ApiClientForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        error_messages={"invalid_choice": "Choose a tenant you administer."},
    )
    name = forms.CharField(
        max_length=64, help_text="Letters, digits, spaces, dots, dashes or underscores."
    )
    role = forms.ChoiceField(
        choices=[(role, f"AuthGroup.{role}") for role in permissions.ROLES],
        help_text="The permissions of the role's users in this tenant.",
    )

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offer_tenants(self, Tenant.objects.visible_to(user, permissions.DEPLOY))
