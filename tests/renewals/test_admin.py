"""The New SAP Keys and SAP Key History screens: the permission matrix of every page, download
and action, the confirmation pages, double submissions, and the banner."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keystore import crypto
from keystore.models import KeystoreEntry
from renewals.activation import activate_pending_key
from renewals.models import PendingSapKey, SapKeyBackup
from tests import pki as pki_factory
from tests.conftest import ROLE_NAMES, client_for
from tests.renewals.conftest import SAP_ALIAS

# Roles that may not change anything go first; the Administrator's POST changes rows.
ROLE_ORDER = ("none", "ReadOnly", "IntegrationDeveloper", "other_admin", "Administrator")
READERS = ("ReadOnly", "IntegrationDeveloper", "Administrator")
assert set(ROLE_ORDER) == set(ROLE_NAMES)


def matrix(allowed, yes: int = 200, no: int = 403) -> dict[str, int]:
    return {role: yes if role in allowed else no for role in ROLE_ORDER}


def object_matrix(allowed, yes: int = 200, none: int = 404) -> dict[str, int]:
    """The answers for an object of tenant A: 403 for a role of tenant A without the
    permission, 404 (like a missing object) for a user who does not see tenant A at all; a user
    with no role anywhere gets `none` (403 where the view first asks "may deploy anywhere")."""
    blind = {"none": none, "other_admin": 404}
    return {role: yes if role in allowed else blind.get(role, 403) for role in ROLE_ORDER}


def statuses(users, path: str, data: dict | None = None) -> dict[str, int]:
    result = {}
    for role in ROLE_ORDER:
        client = client_for(users[role])
        response = client.post(path, data) if data is not None else client.get(path)
        result[role] = response.status_code
    return result


def state() -> tuple:
    return (
        sorted(KeystoreEntry.objects.values_list("alias", "fingerprint_sha256", "version")),
        sorted(PendingSapKey.objects.values_list("alias", "fingerprint_sha256")),
        sorted(SapKeyBackup.objects.values_list("alias", "fingerprint_sha256", "active_until")),
    )


@pytest.fixture
def backup(sap_entry, pending):
    """One backup in SAP Key History (the original key), the provided key active."""
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    return SapKeyBackup.objects.get()


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:renewals_{name}", args=args)


# -- changelists and detail pages --------------------------------------------------------------


@pytest.mark.parametrize("model", ["pendingsapkey", "sapkeybackup"])
def test_changelists_show_rows_to_readers_of_the_tenant_only(
    users, backup, provide, sap_entry, model
):
    provide(sap_entry.tenant)  # New SAP Keys holds a row again
    path = admin_url(f"{model}_changelist")
    assert statuses(users, path) == matrix(READERS + ("other_admin",))
    for role in ROLE_ORDER:
        body = client_for(users[role]).get(path).content.decode()
        shown = SAP_ALIAS in body
        assert shown == (role in READERS), role
        assert ("Download Certificate Chain" in body) == (role in READERS), role
        action = "Activate" if model == "pendingsapkey" else "Add to New SAP Keys"
        assert (f">{action}</a>" in body) == (role == "Administrator"), role


def test_pending_columns(users, pending, sap_entry):
    body = client_for(users["ReadOnly"]).get(admin_url("pendingsapkey_changelist")).content
    body = body.decode()
    for value in (
        f"{pending.valid_from:%Y-%m-%d %H:%M}",
        f"{pending.valid_until:%Y-%m-%d %H:%M}",
        f"{sap_entry.valid_until:%Y-%m-%d %H:%M}",
        f"{pending.auto_activation_at:%Y-%m-%d %H:%M}",
        "tenant-a",
    ):
        assert value in body


def test_a_key_needing_attention_says_so_in_the_row_and_on_the_activation_page(
    users, sap_entry, provide
):
    pending = provide(sap_entry.tenant, valid_days=10)
    body = client_for(users["ReadOnly"]).get(admin_url("pendingsapkey_changelist")).content
    body = body.decode()
    assert "Never: needs attention" in body
    assert f"{pending.auto_activation_at:%Y-%m-%d %H:%M}" not in body
    assert "not after the current key" in body
    page = client_for(users["Administrator"]).get(admin_url("pendingsapkey_activate", pending.pk))
    page = page.content.decode()
    assert 'id="needs-attention"' in page and "never activated automatically" in page
    assert "Without activation it happens automatically" not in page


def test_history_columns(users, backup):
    body = client_for(users["ReadOnly"]).get(admin_url("sapkeybackup_changelist")).content
    body = body.decode()
    for value in (
        f"{backup.active_from:%Y-%m-%d %H:%M:%S}",
        f"{backup.active_until:%Y-%m-%d %H:%M:%S}",
        f"{backup.valid_until:%Y-%m-%d %H:%M}",
        "system",
    ):
        assert value in body


def test_detail_pages_follow_the_tenant(users, backup, provide, sap_entry):
    pending = provide(sap_entry.tenant)
    for name, obj in (("pendingsapkey", pending), ("sapkeybackup", backup)):
        path = admin_url(f"{name}_change", obj.pk)
        assert statuses(users, path) == object_matrix(READERS), name
        body = client_for(users["Administrator"]).get(path).content.decode()
        assert "PRIVATE KEY" not in body and "sealed" not in body.lower()


def test_no_generic_add_change_or_delete(users, pending):
    admin = client_for(users["Administrator"])
    assert admin.get(admin_url("pendingsapkey_add")).status_code == 403
    assert admin.post(admin_url("pendingsapkey_delete", pending.pk)).status_code == 403
    assert admin.post(
        admin_url("pendingsapkey_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [pending.pk],
        },
    ).status_code in (200, 302)
    assert PendingSapKey.objects.filter(pk=pending.pk).exists()


def test_changelist_query_count_is_constant(users, sap_entry, sap_pki, provide, tenant):
    from keystore.services import create_sap_entry

    client = client_for(users["Administrator"])
    path = admin_url("pendingsapkey_changelist")
    provide(tenant)
    client.get(path)
    with CaptureQueriesContext(connection) as one:
        client.get(path)
    for number in range(5):
        alias = f"sap_more_{number}"
        create_sap_entry(tenant, alias, sap_pki.leaf_key, sap_pki.chain)
        provide(tenant, alias)
    with CaptureQueriesContext(connection) as six:
        assert SAP_ALIAS in client.get(path).content.decode()
    assert len(one) == len(six)


# -- downloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"), [("cer", ".cer"), ("root", "_rootCA.cer"), ("p7b", ".p7b")]
)
def test_downloads_for_readers_with_the_entry_file_names(
    users, backup, provide, sap_entry, kind, suffix
):
    pending = provide(sap_entry.tenant)
    for name, material in (("pendingsapkey", pending), ("sapkeybackup", backup)):
        path = admin_url(f"{name}_download", material.pk, kind)
        assert statuses(users, path) == object_matrix(READERS), (name, kind)
        response = client_for(users["ReadOnly"]).get(path)
        assert f'filename="{SAP_ALIAS}{suffix}"' in response["Content-Disposition"]
        chain = material.certificate_chain()
        if kind == "cer":
            assert response.content == crypto.to_der(chain[0])
        elif kind == "root":
            assert response.content == crypto.to_der(chain[-1])
        else:
            # PKCS#7 keeps certificates in a SET: compare without order.
            assert sorted(crypto.to_der(c) for c in crypto.load_p7b(response.content)) == sorted(
                crypto.to_der(c) for c in chain
            )


def test_unknown_download_kind_is_404(users, pending):
    client = client_for(users["Administrator"])
    assert client.get(admin_url("pendingsapkey_download", pending.pk, "p12")).status_code == 404


# -- activate --------------------------------------------------------------------------------


def test_activate_confirmation_page_compares_old_and_new(users, pending, sap_entry):
    path = admin_url("pendingsapkey_activate", pending.pk)
    assert statuses(users, path) == object_matrix(("Administrator",), none=403)
    body = client_for(users["Administrator"]).get(path).content.decode()
    for value in (
        sap_entry.fingerprint_sha256,
        pending.fingerprint_sha256,
        pending.subject,
        pending.issuer,
        pending.root_subject,
        pending.root_fingerprint_sha256,
        f"{pending.valid_until:%Y-%m-%d %H:%M}",
        f"{sap_entry.valid_until:%Y-%m-%d %H:%M}",
    ):
        assert value in body
    assert "root-changed-warning" not in body
    assert "PRIVATE KEY" not in body


def test_activate_confirmation_warns_about_a_new_root(users, sap_entry, provide):
    other = pki_factory.make_pki(prefix="Other SAP")
    pending = provide(sap_entry.tenant, ca=(other.inter_key, [other.inter, other.root]))
    body = (
        client_for(users["Administrator"])
        .get(admin_url("pendingsapkey_activate", pending.pk))
        .content.decode()
    )
    assert "root-changed-warning" in body and "Other SAP Root CA" in body


def test_activate_post_matrix(users, pending, sap_entry):
    path = admin_url("pendingsapkey_activate", pending.pk)
    data = {"fingerprint": pending.fingerprint_sha256}
    before = state()
    refusals = object_matrix((), none=403)
    for role in ROLE_ORDER[:-1]:
        assert client_for(users[role]).post(path, data).status_code == refusals[role], role
        assert state() == before, role
    response = client_for(users["Administrator"]).post(path, data, follow=True)
    assert response.redirect_chain[-1][0] == admin_url("sapkeybackup_changelist")
    assert "is active" in response.content.decode()
    backup = SapKeyBackup.objects.get()
    assert backup.activated_by == users["Administrator"]
    assert KeystoreEntry.objects.get(pk=sap_entry.pk).fingerprint_sha256 == (
        pending.fingerprint_sha256
    )


def test_a_double_click_activates_once_and_warns(users, pending):
    client = client_for(users["Administrator"])
    path = admin_url("pendingsapkey_activate", pending.pk)
    data = {"fingerprint": pending.fingerprint_sha256}
    client.post(path, data)
    response = client.post(path, data, follow=True)
    assert response.status_code == 200
    assert "may have been activated already" in response.content.decode()
    assert SapKeyBackup.objects.count() == 1


def test_activate_needs_the_reviewed_fingerprint(users, pending):
    client = client_for(users["Administrator"])
    path = admin_url("pendingsapkey_activate", pending.pk)
    before = state()
    response = client.post(path, {}, follow=True)
    assert "confirmation page" in response.content.decode()
    response = client.post(path, {"fingerprint": "AA:BB"}, follow=True)
    assert "changed since you reviewed it" in response.content.decode()
    assert state() == before


# -- revert ----------------------------------------------------------------------------------


def test_revert_page_and_post_matrix(users, backup):
    path = admin_url("sapkeybackup_revert", backup.pk)
    assert statuses(users, path) == object_matrix(("Administrator",))
    body = client_for(users["Administrator"]).get(path).content.decode()
    # No flow is known to use the alias: no warning of failing backends, a hint instead.
    assert "revert-no-known-users" in body and "revert-warning" not in body
    assert "waiting-key-warning" not in body
    assert f"{backup.active_until:%Y-%m-%d %H:%M:%S}" in body
    before = state()
    refusals = object_matrix(())
    for role in ROLE_ORDER[:-1]:
        assert client_for(users[role]).post(path, {}).status_code == refusals[role], role
        assert state() == before, role
    response = client_for(users["Administrator"]).post(path, {}, follow=True)
    assert response.redirect_chain[-1][0] == admin_url("pendingsapkey_changelist")
    pending = PendingSapKey.objects.get()
    assert pending.fingerprint_sha256 == backup.fingerprint_sha256
    assert SapKeyBackup.objects.count() == 1  # the backup stays


def test_revert_asks_before_replacing_a_waiting_key(users, backup, provide, sap_entry):
    waiting = provide(sap_entry.tenant)
    client = client_for(users["Administrator"])
    path = admin_url("sapkeybackup_revert", backup.pk)
    body = client.get(path).content.decode()
    assert "waiting-key-warning" in body and waiting.fingerprint_sha256 in body
    assert 'name="replace"' in body

    response = client.post(path, {}, follow=True)
    assert "confirm replacing it" in response.content.decode()
    assert PendingSapKey.objects.get().pk == waiting.pk

    client.post(path, {"replace": "on"})
    assert PendingSapKey.objects.get().fingerprint_sha256 == backup.fingerprint_sha256


def test_a_repeated_revert_warns(users, backup):
    client = client_for(users["Administrator"])
    path = admin_url("sapkeybackup_revert", backup.pk)
    client.post(path, {})
    response = client.post(path, {}, follow=True)
    assert "waiting in New SAP Keys" in response.content.decode()
    assert PendingSapKey.objects.count() == 1


# -- banner ----------------------------------------------------------------------------------


def test_banner_on_every_admin_page_for_readers_of_the_tenant(users, pending):
    pages = [
        reverse("admin:index"),
        reverse("admin:keystore_keystoreentry_changelist"),
        admin_url("sapkeybackup_changelist"),
    ]
    for page in pages:
        body = client_for(users["ReadOnly"]).get(page).content.decode()
        assert "1 new SAP key is waiting for activation" in body, page
        assert admin_url("pendingsapkey_changelist") in body
    for role in ("other_admin", "none"):
        body = client_for(users[role]).get(reverse("admin:index")).content.decode()
        assert "waiting for activation" not in body, role


def test_banner_counts_in_plural(users, pending, sap_pki, provide, tenant):
    from keystore.services import create_sap_entry

    create_sap_entry(tenant, "sap_second", sap_pki.leaf_key, sap_pki.chain)
    provide(tenant, "sap_second")
    body = client_for(users["Administrator"]).get(reverse("admin:index")).content.decode()
    assert "2 new SAP keys are waiting for activation" in body


# -- mails and scan runs ---------------------------------------------------------------------


def test_mails_are_shown_to_administrators_of_the_tenant(users, pending):
    from renewals.models import SentNotification

    path = admin_url("sentnotification_changelist")
    assert statuses(users, path) == matrix(("Administrator", "other_admin"))
    assert SAP_ALIAS in client_for(users["Administrator"]).get(path).content.decode()
    assert SAP_ALIAS not in client_for(users["other_admin"]).get(path).content.decode()
    notification = SentNotification.objects.get()
    detail = admin_url("sentnotification_change", notification.pk)
    assert statuses(users, detail) == object_matrix(("Administrator",))


def test_scan_runs_are_for_superusers_only(users, pending, django_user_model):
    from renewals.scan import auto_activate_due

    auto_activate_due()
    path = admin_url("scanrun_changelist")
    assert statuses(users, path) == matrix(())
    root = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    assert client_for(root).get(path).status_code == 200
