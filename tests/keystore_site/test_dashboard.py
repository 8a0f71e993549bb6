"""The dashboard on the admin index: counts by expiry state against known data, only the tenants
the user may read, lists of new SAP keys, flows waiting for a restart and audit events, the SVG
timeline, and a query count that does not grow with tenants or entries."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keystore import roles
from keystore.models import AuditAction, AuditEvent, EntryType, KeystoreEntry, Owner, Tenant
from keystore_site.dashboard import (
    build_dashboard,
    expiry_counts_by_month,
    expiry_timeline_svg,
    month_starts,
)
from renewals.models import PendingSapKey, PendingSource
from renewals.whereused.models import IntegrationFlow
from tests import pki as pki_factory
from tests.conftest import client_for, make_user
from tests.renewals.conftest import provide, sap_ca  # noqa: F401  (fixtures used by name)

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2031, 1, 15, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def add_certificates(tenant, expiries, *, prefix="cert", owner=Owner.TENANT, key_pair=False):
    """Entries whose certificates expire at the given instants (self-signed, EC keys)."""
    key = pki_factory.make_key("ec")
    entries = []
    for number, until in enumerate(expiries):
        cert = pki_factory.make_cert(
            f"{prefix} {number}", key, not_before=until - 400 * DAY, not_after=until, org=None
        )
        entry = KeystoreEntry(
            tenant=tenant,
            alias=f"{prefix}_{number}",
            owner=owner,
            entry_type=EntryType.KEY_PAIR if key_pair else EntryType.CERTIFICATE,
        )
        entry.set_material([cert], key if key_pair else None)
        entries.append(entry)
    return KeystoreEntry.objects.bulk_create(entries)


def add_pending(entry, valid_days: int = 400):
    key = pki_factory.make_key("ec")
    cert = pki_factory.make_cert(
        f"new {entry.alias}", key, not_before=entry.valid_until - 30 * DAY, days=valid_days
    )
    pending = PendingSapKey(
        tenant=entry.tenant, entry=entry, alias=entry.alias, source=PendingSource.PROVISIONED
    )
    pending.set_material([cert], key)
    pending.save()
    return pending


def add_flow(tenant, name: str, *, restart: bool, since=NOW):
    return IntegrationFlow.objects.create(
        tenant=tenant,
        bundle_id=f"com.example.{name}",
        bundle_name=name,
        imported_at=since,
        restart_required=restart,
        restart_required_since=since if restart else None,
        restart_reason="sap_key activated" if restart else "",
    )


def add_audit(tenant, count: int, *, start=NOW, prefix="alias"):
    return AuditEvent.objects.bulk_create(
        AuditEvent(
            tenant=tenant,
            alias=f"{prefix}_{number}",
            action=AuditAction.ADD,
            actor_label="tester",
            at=start + timedelta(minutes=number),
        )
        for number in range(count)
    )


# Tenant A's entries relative to NOW, in the state each must be counted in.
KNOWN = {
    "expired": [NOW - 10 * DAY, NOW - timedelta(seconds=1), NOW],
    "within_7_days": [NOW + timedelta(seconds=1), NOW + 3 * DAY, NOW + 7 * DAY],
    "within_30_days": [NOW + 7 * DAY + timedelta(seconds=1), NOW + 20 * DAY, NOW + 30 * DAY],
    "within_90_days": [NOW + 60 * DAY],
    "later": [
        NOW + 90 * DAY + timedelta(seconds=1),
        datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2032, 1, 1, tzinfo=UTC),
        NOW + 800 * DAY,
    ],
}


@pytest.fixture
def known(tenant, other_tenant):
    add_certificates(tenant, [until for group in KNOWN.values() for until in group])
    add_certificates(other_tenant, [NOW - DAY] * 4, prefix="b")


def test_counts_by_state_for_a_reader_of_tenant_a(users, known, tenant):
    dashboard = build_dashboard(users["ReadOnly"], NOW)
    [summary] = dashboard.tenants
    assert summary.tenant == tenant
    assert {cell.state: cell.count for cell in summary.states} == {
        state: len(group) for state, group in KNOWN.items()
    }
    assert summary.entry_total == 14


def test_a_superuser_sees_every_tenant(db, known, tenant, other_tenant):
    root = make_user("root")
    root.is_superuser = True
    root.save()
    dashboard = build_dashboard(root, NOW)
    assert [summary.tenant for summary in dashboard.tenants] == [tenant, other_tenant]
    assert dashboard.tenants[1].states[0].count == 4


def test_the_timeline_counts_entries_per_month_for_twelve_months(users, known, tenant):
    [summary] = build_dashboard(users["ReadOnly"], NOW).tenants
    months = [date(2031, month, 1) for month in range(1, 13)]
    expected = dict.fromkeys(months, 0)
    # Jan: +1 s, +3 d, +7 d, +7 d 1 s; Feb: +20 d, +30 d; Mar: +60 d; Apr: +90 d 1 s; Dec 31.
    expected.update(
        {
            date(2031, 1, 1): 4,
            date(2031, 2, 1): 2,
            date(2031, 3, 1): 1,
            date(2031, 4, 1): 1,
            date(2031, 12, 1): 1,
        }
    )
    assert summary.timeline == list(expected.items())
    svg = ET.fromstring(str(summary.timeline_svg))
    assert [rect.get("data-count") for rect in svg.iter(f"{SVG}rect")] == [
        str(count) for count in expected.values()
    ]


def test_month_starts_cross_the_year():
    assert month_starts(datetime(2031, 11, 30, 23, 0, tzinfo=UTC), 3) == [
        date(2031, 11, 1),
        date(2031, 12, 1),
        date(2032, 1, 1),
    ]


def test_tenants_without_entries_get_twelve_empty_months(tenant):
    assert expiry_counts_by_month([tenant.pk], NOW)[tenant.pk] == [
        (start, 0) for start in month_starts(NOW)
    ]


def test_new_keys_flows_and_audit_events_of_visible_tenants_only(users, tenant, other_tenant):
    [sap] = add_certificates(
        tenant, [NOW + 20 * DAY], prefix="sap_cloud", owner=Owner.SAP, key_pair=True
    )
    [sap_b] = add_certificates(
        other_tenant, [NOW + 5 * DAY], prefix="sap_b", owner=Owner.SAP, key_pair=True
    )
    pending = add_pending(sap)
    add_pending(sap_b)
    waiting = add_flow(tenant, "Orders", restart=True)
    add_flow(tenant, "Invoices", restart=False)
    add_flow(other_tenant, "Hidden", restart=True)
    add_audit(tenant, 12)
    add_audit(other_tenant, 3, start=NOW + DAY, prefix="b")

    dashboard = build_dashboard(users["ReadOnly"], NOW)
    [summary] = dashboard.tenants
    assert summary.pending == [pending] and summary.pending_count == 1
    assert summary.pending[0].auto_activation_at == sap.valid_until - DAY
    assert summary.pending[0].change_url == reverse(
        "admin:renewals_pendingsapkey_change", args=[pending.pk]
    )
    assert dashboard.flows_available
    assert summary.flows == [waiting] and summary.flows_count == 1
    assert [event.alias for event in dashboard.audit_events] == [
        f"alias_{number}" for number in range(11, 1, -1)
    ]


# -- the page ----------------------------------------------------------------------------------


def cells(html: str) -> dict[str, int]:
    return {
        state: int(count)
        for state, count in re.findall(
            r'data-state="(\w+)">\s*<a href="[^"]*"[^>]*>(\d+)</a>', html
        )
    }


def test_the_admin_index_is_the_dashboard_and_keeps_the_app_list(users, tenant, other_tenant):
    now = datetime.now(UTC).replace(microsecond=0)
    add_certificates(tenant, [now - DAY, now - 2 * DAY, now + 3 * DAY, now + 45 * DAY])
    add_certificates(other_tenant, [now - DAY], prefix="b")
    [sap] = add_certificates(
        tenant, [now + 10 * DAY], prefix="sap_cloud", owner=Owner.SAP, key_pair=True
    )
    pending = add_pending(sap)
    add_flow(tenant, "Orders <to> S/4", restart=True)
    add_audit(tenant, 2, start=now)
    client = client_for(users["ReadOnly"])

    response = client.get(reverse("admin:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="dashboard-tenant-tenant-a"' in html
    assert "tenant-b" not in html
    assert 'class="app-keystore module' in html  # Django's app list stays
    assert html.index('id="keystore-dashboard"') < html.index('class="app-keystore module')
    assert cells(html) == {
        "expired": 2,
        "within_7_days": 1,
        "within_30_days": 1,
        "within_90_days": 1,
        "later": 0,
        "total": 5,
    }
    assert reverse("admin:renewals_pendingsapkey_change", args=[pending.pk]) in html
    assert f"{sap.valid_until - DAY:%Y-%m-%d %H:%M} UTC" in html
    assert "Orders &lt;to&gt; S/4" in html
    svg_text = re.search(r"<svg xmlns=.*?</svg>", html, re.S).group(0)
    assert ET.fromstring(svg_text).tag == f"{SVG}svg"

    # Each count links to the keystore list filtered to exactly those entries.
    links = dict(re.findall(r'data-state="(\w+)">\s*<a href="([^"]*)"', html))
    for state, count in (("expired", 2), ("within_7_days", 1), ("total", 5)):
        listed = client.get(unescape(links[state]))
        assert listed.status_code == 200
        assert listed.context["cl"].result_count == count, state


def test_the_dashboard_is_where_login_leads(users):
    from django.test import Client

    client = Client()
    response = client.post(
        reverse("admin:login") + "?next=" + reverse("admin:index"),
        {"username": "reader", "password": "pw-reader-123!"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert b'id="keystore-dashboard"' in response.content


def test_anonymous_users_are_sent_to_the_login(db):
    from django.test import Client

    response = Client().get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_user_without_roles_is_told_so(users):
    response = client_for(users["none"]).get(reverse("admin:index"))
    assert response.status_code == 200
    assert b"You have no role on any tenant yet" in response.content


def index_queries(user) -> int:
    client = client_for(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow_with_tenants_and_entries(users, tenant, other_tenant):
    reader = users["ReadOnly"]
    now = datetime.now(UTC).replace(microsecond=0)
    [sap] = add_certificates(
        tenant, [now + 10 * DAY], prefix="sap_one", owner=Owner.SAP, key_pair=True
    )
    add_pending(sap)
    add_certificates(tenant, [now - DAY, now + 40 * DAY])
    add_flow(tenant, "one", restart=True)
    add_audit(tenant, 2)
    small = index_queries(reader)

    third = Tenant.objects.create(name="Tenant C", slug="tenant-c")
    roles.assign_role(reader, third, "ReadOnly")
    for target in (tenant, third):
        sap_entries = add_certificates(
            target,
            [now + number * DAY for number in range(5, 10)],
            prefix=f"sap_many_{target.slug}",
            owner=Owner.SAP,
            key_pair=True,
        )
        for entry in sap_entries:
            add_pending(entry)
        add_certificates(
            target, [now + number * 7 * DAY for number in range(-3, 40)], prefix="many"
        )
        for number in range(4):
            add_flow(target, f"flow{number}", restart=True)
        add_audit(target, 15, prefix="many")
    large = index_queries(reader)
    assert len(build_dashboard(reader).tenants) == 2
    assert small == large


# -- the chart ---------------------------------------------------------------------------------


def test_the_svg_is_valid_xml_with_proportional_bars_and_escaped_text():
    counts = [
        (date(2031, month, 1), count)
        for month, count in zip(range(1, 13), [0, 2, 4, 1] * 3, strict=True)
    ]
    svg = expiry_timeline_svg(counts, title='Tenant <a&b> "quoted"', width=600, height=200)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text.startswith('Tenant <a&b> "quoted"')
    assert 'Tenant <a&b> "quoted"' in [text.text for text in root.iter(f"{SVG}text")]
    bars = list(root.iter(f"{SVG}rect"))
    assert [bar.get("data-month") for bar in bars] == [
        f"2031-{month:02d}" for month in range(1, 13)
    ]
    heights = [float(bar.get("height")) for bar in bars]
    tallest = max(heights)
    assert tallest == pytest.approx(200 - 34 - 34)
    for (_month, count), height in zip(counts, heights, strict=True):
        assert height == pytest.approx(tallest * count / 4, abs=0.01)
    # Bars stand on one baseline.
    bottoms = {round(float(bar.get("y")) + float(bar.get("height")), 1) for bar in bars}
    assert len(bottoms) == 1
    assert [text.text for text in root.iter(f"{SVG}text")].count("Jan") == 1


def test_an_empty_timeline_says_so():
    root = ET.fromstring(expiry_timeline_svg([(date(2031, month, 1), 0) for month in range(1, 13)]))
    assert all(float(bar.get("height")) == 0 for bar in root.iter(f"{SVG}rect"))
    assert "No entry expires in these months" in [text.text for text in root.iter(f"{SVG}text")]


def test_each_bucket_links_to_a_list_of_exactly_its_entries(db, tenant):
    """The count and the list behind its link agree, bucket by bucket."""
    from datetime import timedelta

    from django.utils import timezone

    from keystore import services
    from keystore.crypto import to_der
    from tests import pki as pki_factory
    from tests.conftest import client_for, make_user

    now = timezone.now()
    root_key = pki_factory.make_key()
    for alias, days in [("d5", 5), ("d20", 20), ("d60", 60), ("d200", 200)]:
        cert = pki_factory.make_cert(
            alias,
            root_key,
            ca=True,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=days),
        )
        services.import_certificate(tenant, alias, to_der(cert))
    reader = make_user("bucket_reader", tenant=tenant, role="ReadOnly")
    client = client_for(reader)
    expected = {"7": {"d5"}, "8-30": {"d20"}, "31-90": {"d60"}, "later": {"d200"}}
    for value, aliases in expected.items():
        page = client.get(f"/admin/keystore/keystoreentry/?tenant={tenant.pk}&expiry={value}")
        shown = {
            alias for alias in ("d5", "d20", "d60", "d200") if f">{alias}<" in page.content.decode()
        }
        assert shown == aliases, value


def test_renewal_plans_in_progress_with_their_share_confirmed(
    users,
    sap_entry,
    provide,  # noqa: F811
):
    """A waiting key's plan is listed with the share of its affected backends confirmed or
    verified (backends marked not affected do not count)."""
    from renewals.plans.models import BackendStatus, RenewalPlan
    from tests.renewals.plans.conftest import crm_channel, erp_channel, import_flows

    tenant = sap_entry.tenant
    import_flows(tenant, erp_channel(), crm_channel())
    pending = provide(tenant)
    plan = RenewalPlan.objects.get(occasion=pending.material_id)
    plan.backends.filter(system="ERP_PROD").update(status=BackendStatus.CONFIRMED)
    dashboard = build_dashboard(users["ReadOnly"])
    [summary] = [s for s in dashboard.tenants if s.tenant == tenant]
    [listed] = summary.plans
    assert (listed.confirmed_count, listed.backend_count, listed.confirmed_share) == (1, 2, 50)
    plan.backends.filter(system="CRM").update(status=BackendStatus.NOT_AFFECTED)
    [listed] = [s for s in build_dashboard(users["ReadOnly"]).tenants if s.tenant == tenant][
        0
    ].plans
    assert (listed.confirmed_count, listed.backend_count, listed.confirmed_share) == (1, 1, 100)
    html = client_for(users["ReadOnly"]).get("/admin/").content.decode()
    assert "Renewal plans in progress" in html and "1 of 1 backends confirmed (100%)" in html
    # Once activated the plan is no longer in progress.
    from renewals.activation import activate_pending_key

    activate_pending_key(tenant, pending.alias, actor=users["Administrator"])
    assert [s for s in build_dashboard(users["ReadOnly"]).tenants if s.tenant == tenant][
        0
    ].plans == []
