"""The pages around a revert say what will happen (issue 15, item 7): activating a key added
back from SAP Key History brings the older key back, with its own expiry, and says whether the
scheduler would activate it; the revert page warns of failing backends only where where-used
knows some."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from renewals.activation import activate_pending_key, add_back_to_pending
from renewals.models import SapKeyBackup
from renewals.whereused.importing import import_flow_exports
from tests.conftest import client_for
from tests.renewals import flowfactory
from tests.renewals.conftest import SAP_ALIAS


@pytest.fixture
def backup(sap_entry, pending) -> SapKeyBackup:
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    return SapKeyBackup.objects.get()


def page(user, name: str, pk: int) -> str:
    response = client_for(user).get(reverse(f"admin:renewals_{name}", args=[pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_activating_an_older_key_says_it_comes_back_and_when_it_expires(users, backup):
    older = add_back_to_pending(backup)
    body = page(users["Administrator"], "pendingsapkey_activate", older.pk)

    assert f"Activate the older key {SAP_ALIAS} again" in body
    assert "Activate the new SAP key" not in body and "activate the new key" not in body
    assert 'id="revert-explained"' in body
    assert f"{older.valid_until:%Y-%m-%d %H:%M}" in body
    # The older key expires before the active one: the scheduler never activates it, and the
    # page promises no automatic activation.
    assert "never activated automatically" in body and "Ask SAP" not in body
    assert "The scheduler will not activate this key" in body
    assert "happens automatically on" not in body
    assert 'value="Yes, activate the older key again"' in body
    # Both keys' Valid until carry their days left in the expiry colours.
    assert body.count('class="days-left expiry-') == 2


def test_a_new_key_still_promises_its_automatic_activation(users, pending):
    body = page(users["Administrator"], "pendingsapkey_activate", pending.pk)
    assert f"Activate the new SAP key {SAP_ALIAS}" in body
    assert "happens automatically on" in body and "revert-explained" not in body


def test_the_revert_page_warns_only_when_where_used_knows_users(users, backup):
    admin = users["Administrator"]
    before = page(admin, "sapkeybackup_revert", backup.pk)
    assert "revert-warning" not in before and "revert-no-known-users" in before

    xml = flowfactory.iflw(
        flowfactory.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": SAP_ALIAS},
            receiver="ERP_PROD",
        )
    )
    data = flowfactory.flow_zip("com.example.erp", xml)
    [result] = import_flow_exports(backup.tenant, [("erp.zip", io.BytesIO(data))])
    assert result.ok, result.message

    after = page(admin, "sapkeybackup_revert", backup.pk)
    assert 'id="revert-warning"' in after and "revert-no-known-users" not in after
    assert "1 component in\n1 flow" in after and "1 backend system." in after


def restart_in_runtime(flow) -> None:
    """A restart hook that does nothing (the hook's presence is what the page reads)."""


@pytest.mark.parametrize("hook", [None, f"{__name__}.restart_in_runtime"])
def test_restart_says_it_only_records_without_a_hook(users, tenant, settings, hook):
    settings.WHEREUSED_RESTART_CALLABLE = hook
    data = flowfactory.flow_zip("com.example.any", flowfactory.iflw())
    [result] = import_flow_exports(tenant, [("any.zip", io.BytesIO(data))])
    assert result.ok, result.message  # the actions show where the list has rows
    response = client_for(users["Administrator"]).get(
        reverse("admin:whereused_integrationflow_changelist")
    )
    body = response.content.decode()
    recorded = "Record a restart made in Cloud Integration"
    if hook is None:
        assert recorded in body and "the flow in Cloud Integration yourself" in body
    else:
        assert recorded not in body and "Restart (clears" in body
