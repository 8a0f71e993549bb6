"""The Keystore Monitor's frame and rows without a browser (issue 15, items 1, 2 and 4): the days
left and their colours, the row menu's order, the tabs' counts (only what the user may see, per
tenant, in a constant number of queries however many rows), the links each role is offered, and
the detail pages' action bars."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from keystore import services
from keystore.adminmixins import days_left, expiry_badge, expiry_state, row_menu
from tests import pki as pki_factory
from tests.conftest import client_for, make_user

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SAP_ALIAS = "sap_cloudintegrationcertificate"
ENTRIES = "admin:keystore_keystoreentry_changelist"
NEW_SAP_KEYS = "admin:renewals_pendingsapkey_changelist"
HISTORY = "admin:renewals_sapkeybackup_changelist"


# -- days left and colours ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "text", "state"),
    [
        (timedelta(days=12, hours=3), "in 12 days", "soon"),
        (timedelta(days=1, hours=1), "in 1 day", "soon"),
        (timedelta(hours=5), "in less than a day", "soon"),
        (timedelta(days=30, hours=1), "in 30 days", "valid"),
        (timedelta(days=400), "in 400 days", "valid"),
        (timedelta(0), "expired less than a day ago", "expired"),
        (-timedelta(hours=20), "expired less than a day ago", "expired"),
        (-timedelta(days=1, hours=2), "expired 1 day ago", "expired"),
        (-timedelta(days=3, hours=1), "expired 3 days ago", "expired"),
    ],
)
def test_days_left_and_the_expiry_colour(left, text, state):
    assert days_left(NOW + left, NOW) == text
    assert expiry_state(NOW + left, NOW) == state
    badge = expiry_badge(NOW + left, NOW)
    assert f'class="expiry expiry-{state}"' in badge
    assert f'<span class="days-left expiry-{state}">{text}</span>' in badge


@override_settings(KEYSTORE_EXPIRY_WARNING_DAYS=60)
def test_the_warning_days_come_from_the_setting():
    assert expiry_state(NOW + timedelta(days=45), NOW) == "soon"


# -- the row menu ------------------------------------------------------------------------------


def test_the_row_menu_keeps_the_order_divides_the_groups_and_shows_the_main_action():
    downloads = [("Download Certificate", "/cer", "download"), ("PEM chain", "/pem", "download")]
    activate = ("Activate", "/activate", "activate")
    html = row_menu([downloads, [], [activate]], activate)
    labels = re.findall(r'<a class="row-action-[a-z-]+" href="[^"]+">([^<]+)</a>', html)
    assert labels == ["Download Certificate", "PEM chain", "Activate"]
    # One line between two non-empty groups; the empty one leaves no trace.
    assert html.count("row-menu-separator") == 1
    assert (
        '<a class="button row-main-action row-action-activate" href="/activate">Activate</a>'
        in (html)
    )
    assert html.count("<details") == 1
    assert row_menu([[], []]) == ""


# -- the monitor's frame ---------------------------------------------------------------------


@pytest.fixture
def two_tenants(users, tenant, other_tenant, sap_entry, sap_pki, provide_key, pki):
    """Tenant A: the SAP key pair, a new SAP key for it, a tenant certificate; tenant B: the
    same, its own (nobody of tenant A may count them)."""
    for each in (tenant, other_tenant):
        if each != tenant:
            services.create_sap_entry(each, SAP_ALIAS, sap_pki.leaf_key, sap_pki.chain)
        provide_key(each)
        services.import_certificate(each, "partner_root", pki_factory.der(pki.root))
    return tenant, other_tenant


@pytest.fixture
def provide_key(sap_pki):
    from renewals.activation import provision_sap_key

    def provide(tenant, alias: str = SAP_ALIAS):
        return provision_sap_key(
            tenant,
            alias,
            valid_days=385,
            private_key=pki_factory.make_key(),
            ca=(sap_pki.inter_key, [sap_pki.inter, sap_pki.root]),
        )

    return provide


def tab_texts(body: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", match).strip()
        for match in re.findall(r'<li class="monitor-tab [^"]*"><a [^>]*>(.*?)</a>', body, re.S)
    ]


def link_texts(body: str) -> list[str]:
    block = re.search(r'<ul class="monitor-links">(.*?)</ul>', body, re.S)
    return re.findall(r">([^<]+)</a>", block.group(1)) if block else []


@pytest.mark.parametrize(
    ("role", "links"),
    [
        (
            "Administrator",
            ["Where-used (integration flows)", "Connectivity tests", "Audit log", "Mails"],
        ),
        (
            "IntegrationDeveloper",
            ["Where-used (integration flows)", "Connectivity tests", "Audit log"],
        ),
        ("ReadOnly", ["Where-used (integration flows)", "Audit log"]),
    ],
)
def test_each_tab_shows_the_counts_of_the_tenant_and_the_links_of_the_role(
    users, two_tenants, role, links
):
    client = client_for(users[role])
    for name in (ENTRIES, NEW_SAP_KEYS, HISTORY):
        body = client.get(reverse(name)).content.decode()
        assert tab_texts(body) == ["Keystore (2)", "New SAP Keys (1)", "SAP Key History (0)"]
        assert link_texts(body) == links
        assert "Keystore Monitor</strong>: Tenant A" in body
        # The only tenant is the monitor's: the tabs keep it.
        assert f"?tenant={two_tenants[0].pk}" in body


def test_a_user_of_two_tenants_switches_between_them(users, two_tenants):
    from keystore import roles

    tenant, other = two_tenants

    both = make_user("both_admin", tenant=tenant, role="Administrator")
    roles.assign_role(both, other, "ReadOnly")
    client = client_for(both)
    body = client.get(reverse(ENTRIES)).content.decode()
    # Without a choice: all of the user's tenants, and a switch to each.
    assert tab_texts(body) == ["Keystore (4)", "New SAP Keys (2)", "SAP Key History (0)"]
    assert "all your tenants" in body
    assert 'aria-label="Tenant"' in body and ">tenant-b</a>" in body
    body = client.get(reverse(ENTRIES), {"tenant": other.pk}).content.decode()
    assert tab_texts(body) == ["Keystore (2)", "New SAP Keys (1)", "SAP Key History (0)"]
    # A reader of tenant B is offered no mails there, though an administrator of tenant A.
    assert "Mails" not in link_texts(body)
    assert "Connectivity tests" not in link_texts(body)


def test_a_tenant_the_user_may_not_read_is_not_counted(users, two_tenants):
    tenant, other = two_tenants
    body = (
        client_for(users["Administrator"])
        .get(reverse(NEW_SAP_KEYS), {"tenant": other.pk})
        .content.decode()
    )
    # The forged choice falls back to the user's own tenant's counts, never tenant B's.
    assert tab_texts(body) == ["Keystore (2)", "New SAP Keys (1)", "SAP Key History (0)"]


def add_partner_certificates(tenant, count: int) -> None:
    for index in range(count):
        cert = pki_factory.make_cert(f"Partner {index}", pki_factory.make_key(), ca=True)
        services.import_certificate(tenant, f"partner_{index}", pki_factory.der(cert))


def renew(tenant, provide_key, alias: str = SAP_ALIAS) -> None:
    """One renewal of `alias` (its key goes to SAP Key History), and SAP's next key waiting."""
    from renewals.activation import activate_pending_key

    provide_key(tenant, alias)
    activate_pending_key(tenant, alias)
    provide_key(tenant, alias)


def test_the_frame_asks_the_same_number_of_queries_however_many_rows(
    users, tenant, sap_entry, provide_key
):
    from renewals import monitor

    user = users["ReadOnly"]

    def queries() -> int:
        request = RequestFactory().get(reverse(ENTRIES))
        request.user = type(user).objects.get(pk=user.pk)
        with CaptureQueriesContext(connection) as captured:
            monitor.monitor(request, monitor.KEYSTORE)
        return len(captured)

    provide_key(tenant)
    before = queries()
    add_partner_certificates(tenant, 6)
    assert queries() == before


@pytest.mark.parametrize("name", [ENTRIES, NEW_SAP_KEYS, HISTORY])
def test_the_lists_ask_the_same_number_of_queries_however_many_rows(
    users, tenant, sap_entry, sap_pki, provide_key, name
):
    client = client_for(users["Administrator"])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(name)).status_code == 200
        return len(captured)

    renew(tenant, provide_key)
    before = queries()
    add_partner_certificates(tenant, 4)
    services.create_sap_entry(tenant, "sap_second", sap_pki.leaf_key, sap_pki.chain)
    renew(tenant, provide_key, "sap_second")
    assert queries() == before


# -- detail pages ------------------------------------------------------------------------------


def action_bar(body: str) -> list[str]:
    block = re.search(r'<div class="detail-actions".*?</div>', body, re.S)
    assert block, "no action bar"
    return re.findall(r">([^<]+)</a>", block.group(0))


@pytest.mark.parametrize(
    ("role", "pending_actions"),
    [
        ("Administrator", ["Renewal pack", "Renewal plan", "Activate"]),
        ("IntegrationDeveloper", ["Renewal pack", "Renewal plan"]),
        ("ReadOnly", ["Renewal pack", "Renewal plan"]),
    ],
)
def test_the_new_sap_keys_page_offers_the_rows_actions(
    users, tenant, sap_entry, provide_key, role, pending_actions
):
    pending = provide_key(tenant)
    client = client_for(users[role])
    url = reverse("admin:renewals_pendingsapkey_change", args=[pending.pk])
    body = client.get(url).content.decode()
    downloads = ["Download Certificate", "Download Root Certificate", "Download Certificate Chain"]
    assert action_bar(body) == downloads + pending_actions
    assert re.search(r'class="days-left expiry-valid">in \d+ days<', body)


def test_the_entry_pages_forms_name_the_days_left(users, key_pair_entry):
    client = client_for(users["Administrator"])
    body = client.get(
        reverse("admin:keystore_keystoreentry_rename", args=[key_pair_entry.pk])
    ).content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d \(in \d+ days\)", body)
