"""Where-used where the renewal happens: activation marks flows for restart, and New SAP Keys,
the activation confirmation and the entry detail page show the counts and link to the list."""

import pytest
from django.urls import reverse

from renewals.activation import activate_pending_key
from renewals.whereused.models import IntegrationFlow
from tests.conftest import client_for
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.whereused.flows import client_cert_flow, import_all, signer_only_flow


def _flows(tenant):
    import_all(
        tenant,
        client_cert_flow("com.example.erp"),  # outbound, this alias
        client_cert_flow("com.example.anykey", alias=""),  # outbound, any key
        signer_only_flow("com.example.signer"),  # signing only: no cached connection
        client_cert_flow("com.example.other", alias="other_alias"),
    )


def test_activation_marks_outbound_flows_restart_required(tenant, pending):
    _flows(tenant)
    result = activate_pending_key(tenant, SAP_ALIAS)
    marked = set(
        IntegrationFlow.objects.filter(tenant=tenant, restart_required=True).values_list(
            "bundle_id", flat=True
        )
    )
    assert marked == {"com.example.erp", "com.example.anykey"}
    assert result.flows_to_restart == 2


def test_failed_activation_marks_nothing(tenant, pending, monkeypatch):
    from renewals import activation

    _flows(tenant)

    def boom(*args, **kwargs):
        raise RuntimeError("audit failed")

    monkeypatch.setattr(activation, "record_audit", boom)
    with pytest.raises(RuntimeError):
        activate_pending_key(tenant, SAP_ALIAS)
    assert not IntegrationFlow.objects.filter(restart_required=True).exists()


def test_new_sap_keys_and_confirmation_show_where_used(tenant, pending, users):
    _flows(tenant)
    client = client_for(users["Administrator"])
    listing = client.get(reverse("admin:renewals_pendingsapkey_changelist")).content.decode()
    assert ">2 use, 1 may use<" in listing  # client certificate + signer; any-key channel
    assert "Renewal pack" in listing
    confirm = client.get(reverse("admin:renewals_pendingsapkey_activate", args=[pending.pk]))
    page = confirm.content.decode()
    assert 'id="where-used-summary"' in page
    assert "Flow com.example.erp" in page and "Flow com.example.anykey" in page

    response = client.post(
        reverse("admin:renewals_pendingsapkey_activate", args=[pending.pk]),
        {"fingerprint": pending.fingerprint_sha256},
        follow=True,
    )
    assert "2 integration flows with outbound connections are marked restart required" in (
        response.content.decode()
    )


def test_entry_detail_links_to_where_used(tenant, sap_entry, users):
    _flows(tenant)
    client = client_for(users["ReadOnly"])
    page = client.get(
        reverse("admin:keystore_keystoreentry_change", args=[sap_entry.pk])
    ).content.decode()
    assert "Where-used" in page and "Renewal pack" in page
    assert 'id="where-used-summary"' in page
