"""Forms of the connectivity pages: run a test, add the server's root to the keystore.

The forms only collect and type-check input. What a host name may look like, whether an alias is
a key pair and whether a fingerprint matches is decided by renewals.connectivity.services, whose
ConnectivityError message the view puts back on the form. The forms do refuse what the service
cannot see: a tenant the user may not test in, and a key pair that belongs to another tenant
than the one chosen (a forged form).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.db.models import Exists, OuterRef

from keystore import permissions
from keystore.models import ALIAS_MAX_LENGTH, KeystoreEntry, Tenant
from renewals.connectivity.probe import MAX_TIMEOUT
from renewals.models import PendingSapKey

if TYPE_CHECKING:
    from keystore.permissions import AnyUser

MIN_TIMEOUT = 1
NO_CLIENT_CERTIFICATE = ""


def key_pair_choices(user: AnyUser) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """ "tenant / alias" options of every tenant where the user may run tests, in one query."""
    entries = (
        KeystoreEntry.objects.visible_to(user, permissions.READ_CREDENTIALS)
        .key_pairs()
        .annotate(waiting=Exists(PendingSapKey.objects.filter(entry=OuterRef("pk"))))
        .order_by("tenant__slug", "alias")
        .values_list("pk", "tenant__slug", "alias", "waiting")
    )
    groups: dict[str, list[tuple[str, str]]] = {}
    for pk, tenant_slug, alias, waiting in entries:
        label = f"{tenant_slug} / {alias}"
        if waiting:
            label += " (new SAP key waiting)"
        groups.setdefault(tenant_slug, []).append((str(pk), label))
    return [(NO_CLIENT_CERTIFICATE, "None: no client certificate"), *groups.items()]


class ConnectivityTestForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        error_messages={
            "invalid_choice": "Choose a tenant in which you may run connectivity tests.",
            "required": "Choose a tenant.",
        },
    )
    host = forms.CharField(
        max_length=255,
        help_text="The backend's host name or IP address, without https:// or a path. It is "
        "also the name sent as SNI and checked against the server certificate.",
    )
    port = forms.IntegerField(
        min_value=1,
        max_value=65535,
        initial=443,
        error_messages={
            "min_value": "The port must be a whole number from 1 to 65535.",
            "max_value": "The port must be a whole number from 1 to 65535.",
            "invalid": "The port must be a whole number from 1 to 65535.",
        },
    )
    timeout = forms.FloatField(
        label="Timeout (seconds)",
        min_value=MIN_TIMEOUT,
        max_value=MAX_TIMEOUT,
        initial=10,
        help_text="For the whole test: name lookup, connection and handshake.",
        error_messages={
            "min_value": f"The timeout must be from {MIN_TIMEOUT} to {MAX_TIMEOUT:g} seconds.",
            "max_value": f"The timeout must be from {MIN_TIMEOUT} to {MAX_TIMEOUT:g} seconds.",
            "invalid": f"The timeout must be from {MIN_TIMEOUT} to {MAX_TIMEOUT:g} seconds.",
        },
    )
    entry = forms.ChoiceField(
        label="Authenticate with client certificate",
        required=False,
        help_text="A key pair of the chosen tenant; its whole certificate chain is sent.",
    )
    include_pending = forms.BooleanField(
        label="Include new SAP key",
        required=False,
        help_text="Use the new SAP key waiting for this alias (before activation); without one "
        "waiting, the current key is used. The result says which.",
    )
    verify_server = forms.BooleanField(
        label="Validate server certificate",
        required=False,
        initial=True,
        help_text="Against the tenant's trusted certificates.",
    )
    use_system_trust = forms.BooleanField(
        label="Also trust the system trust store",
        required=False,
        help_text="The public CAs trusted by this server's operating system.",
    )

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenants = Tenant.objects.visible_to(user, permissions.READ_CREDENTIALS)
        tenant_field, entry_field = self.fields["tenant"], self.fields["entry"]
        assert isinstance(tenant_field, forms.ModelChoiceField)  # as declared above
        assert isinstance(entry_field, forms.ChoiceField)
        tenant_field.queryset = tenants
        entry_field.choices = key_pair_choices(user)
        if not self.is_bound and "tenant" not in self.initial:
            only = list(tenants[:2])
            if len(only) == 1:
                self.fields["tenant"].initial = only[0].pk

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        tenant, entry_id = cleaned.get("tenant"), cleaned.get("entry")
        cleaned["alias"] = ""
        if tenant is not None and entry_id:
            alias = (
                KeystoreEntry.objects.for_tenant(tenant)
                .key_pairs()
                .filter(pk=entry_id)
                .values_list("alias", flat=True)
                .first()
            )
            if alias is None:
                self.add_error("entry", f"Choose a key pair of tenant {tenant.slug}.")
            else:
                cleaned["alias"] = alias
        if cleaned.get("include_pending") and not entry_id and "entry" not in self.errors:
            self.add_error("include_pending", "Choose an alias to test its new SAP key.")
        return cleaned


class AddRootForm(forms.Form):
    index = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    fingerprint = forms.CharField(widget=forms.HiddenInput, max_length=200)
    alias = forms.CharField(
        max_length=ALIAS_MAX_LENGTH,
        strip=False,
        help_text="The alias of the new trusted certificate in the tenant's keystore.",
    )
    confirm = forms.BooleanField(
        label="I have compared the SHA-256 fingerprint above with the one the server's operator "
        "gave me, and they are the same.",
        error_messages={"required": "Confirm that you have compared the fingerprint."},
    )
