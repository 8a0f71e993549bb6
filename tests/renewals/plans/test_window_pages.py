"""The plan page's window and gate forms, the activation page under the gate and four eyes, the
confirmation mail, and the evidence report (HTML and JSON) with the checklist after activation."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from renewals.plans import backendlinks, services, tokens
from renewals.plans.models import Gate, RenewalPlan, TenantPlanSettings
from renewals.whereused.models import IntegrationFlow
from renewals.whereused.restart import restart_flows
from tests.conftest import client_for, make_user
from tests.renewals.conftest import SAP_ALIAS

pytestmark = pytest.mark.django_db

SITE = "https://keystore.example.com"


def plan_page(plan) -> str:
    return reverse("admin:plans_renewalplan_change", args=[plan.pk])


def test_plan_and_cancel_the_window_from_the_page(plan, users):
    admin = client_for(users["Administrator"])
    at = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    url = reverse("admin:plans_renewalplan_window", args=[plan.pk])
    page = admin.post(url, {"at": at.strftime("%Y-%m-%dT%H:%M")}, follow=True)
    assert "is planned for" in page.content.decode()
    plan.refresh_from_db()
    assert plan.planned_activation == at.astimezone(UTC)
    html = admin.get(plan_page(plan)).content.decode()
    assert "planned by admin_a" in html and 'id="window-cancel-form"' in html
    # A bad time, a reader's post: refused, nothing changed.
    page = admin.post(url, {"at": "tomorrow"}, follow=True)
    assert "Give the planned time" in page.content.decode()
    assert client_for(users["ReadOnly"]).post(url, {"action": "cancel"}).status_code == 403
    plan.refresh_from_db()
    assert plan.planned_activation == at.astimezone(UTC)
    admin.post(url, {"action": "cancel"})
    plan.refresh_from_db()
    assert plan.planned_activation is None


def test_activation_page_under_the_require_gate(plan, users):
    TenantPlanSettings.objects.create(tenant=plan.tenant, gate=Gate.REQUIRE)
    admin = client_for(users["Administrator"])
    pending = PendingSapKey.objects.get()
    url = reverse("admin:renewals_pendingsapkey_activate", args=[pending.pk])
    html = admin.get(url).content.decode()
    assert 'id="gate-unsettled"' in html and "ERP_PROD" in html and 'name="override_reason"' in html
    page = admin.post(url, {"fingerprint": pending.fingerprint_sha256}, follow=True)
    assert "requires every affected backend" in page.content.decode()
    assert PendingSapKey.objects.exists() and not SapKeyBackup.objects.exists()
    page = admin.post(
        url,
        {"fingerprint": pending.fingerprint_sha256, "override_reason": "CRM retired"},
        follow=True,
    )
    html = page.content.decode()
    assert "is active" in html and "Not confirmed, verified or marked not affected" in html
    assert RenewalPlan.objects.get(pk=plan.pk).override_reason == "CRM retired"


def test_four_eyes_from_the_pages(plan, users):
    TenantPlanSettings.objects.create(tenant=plan.tenant, four_eyes=True)
    first = client_for(users["Administrator"])
    second = client_for(make_user("admin_c", tenant=plan.tenant, role="Administrator"))
    url = reverse("admin:plans_renewalplan_gate", args=[plan.pk])
    assert 'id="request-approval-form"' in first.get(plan_page(plan)).content.decode()
    first.post(url, {"action": "request"})
    page = first.post(url, {"action": "approve"}, follow=True)
    assert "another administrator must approve" in page.content.decode()
    assert RenewalPlan.objects.get(pk=plan.pk).approved_at is None
    page = second.post(url, {"action": "approve"}, follow=True)
    assert "You approved the activation." in page.content.decode()
    pending = PendingSapKey.objects.get()
    activate = reverse("admin:renewals_pendingsapkey_activate", args=[pending.pk])
    assert "Approved by admin_c" in first.get(activate).content.decode()


def test_confirmation_mail_and_the_evidence_report(
    plan, users, settings, django_capture_on_commit_callbacks
):
    settings.RENEWALS_SITE_URL = SITE
    tenant, admin_user = plan.tenant, users["Administrator"]
    services.save_contact(tenant, "ERP_PROD", "Eva Berg", "eva@erp.example")
    with django_capture_on_commit_callbacks(execute=True):
        [(erp, _mail)] = backendlinks.inform_backends(tenant, SAP_ALIAS, base_url=SITE).informed
    erp.refresh_from_db()
    token = tokens.link_path(erp).rstrip("/").rsplit("/", 1)[-1]
    with django_capture_on_commit_callbacks(execute=True):
        backendlinks.confirm_imported(token, "Eva Berg", "done", address="127.0.0.1")
    [confirmed] = SentNotification.objects.filter(kind=NotificationKind.CONFIRMED)
    assert "ERP_PROD confirmed" in confirmed.subject
    assert confirmed.recipient_list == ["admin_a@example.test"]
    admin = client_for(admin_user)
    pending = PendingSapKey.objects.get()
    admin.post(
        reverse("admin:renewals_pendingsapkey_activate", args=[pending.pk]),
        {"fingerprint": pending.fingerprint_sha256},
    )
    html = admin.get(plan_page(plan)).content.decode()
    assert 'id="plan-checklist"' in html and 'id="plan-revert"' in html
    flows = list(IntegrationFlow.objects.filter(tenant=tenant, restart_required=True))
    assert flows
    restart_flows(flows, actor=admin_user)
    evidence_url = reverse("admin:plans_renewalplan_evidence_json", args=[plan.pk])
    report = json.loads(admin.get(evidence_url).content)
    steps = [event["step"] for event in report["events"]]
    assert steps.index("informed") < steps.index("confirmed") < steps.index("activated")
    assert steps.index("activated") < steps.index("restarted")
    [confirm] = [event for event in report["events"] if event["step"] == "confirmed"]
    assert "Eva Berg" in confirm["detail"] and "127.0.0.1" in confirm["detail"]
    erp_row = next(b for b in report["backends"] if b["system"] == "ERP_PROD")
    assert erp_row["confirmed_by"] == "Eva Berg" and erp_row["confirmed_from"] == "127.0.0.1"
    restarts = [item for item in report["checklist"]["items"] if item["kind"] == "restart"]
    assert restarts and all(item["done"] for item in restarts)
    # The HTTPS backends were not probed with the active key: not done yet.
    assert report["checklist"]["done"] is False
    assert report["checklist"]["revert_url"].endswith("/revert/")
    html = admin.get(reverse("admin:plans_renewalplan_evidence", args=[plan.pk])).content.decode()
    assert "Eva Berg" in html and "evidence-restarted" in html
    # A reader of the tenant sees the evidence; another tenant's administrator does not.
    assert client_for(users["ReadOnly"]).get(evidence_url).status_code == 200
    assert client_for(users["other_admin"]).get(evidence_url).status_code == 404
