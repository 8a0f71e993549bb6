"""The agreed window, the gate and four eyes (issue 17, items 5 and 6): `schedule_activation`
plans a waiting key; the scan activates it at that time through activate_pending_key, announces
the window beforehand and reports the outcome after it, to the administrators and the contacts;
the "require" gate and four eyes refuse manual and planned activations (nothing changes) until
settled, overridden or approved; the automatic activation always happens and its mail names the
backends that never confirmed."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals.activation import RenewalError, activate_pending_key
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from renewals.plans import gate, services, window
from renewals.plans.models import (
    BackendStatus,
    Gate,
    RenewalPlan,
    TenantPlanSettings,
    WindowOutcome,
)
from renewals.plans.services import PlanError
from renewals.scan import auto_activate_due
from tests.conftest import make_user
from tests.renewals.conftest import SAP_ALIAS

pytestmark = pytest.mark.django_db


@pytest.fixture
def contacted(plan, users):
    """The plan with a contact for ERP_PROD, and the tenant's administrator."""
    services.save_contact(plan.tenant, "ERP_PROD", "Eva Berg", "eva@erp.example")
    mail.outbox.clear()
    return plan


def scan(at, capture):
    with capture(execute=True):
        return auto_activate_due(at)


def snapshot(tenant):
    entry = KeystoreEntry.objects.get(tenant=tenant, alias=SAP_ALIAS)
    return (
        entry.fingerprint_sha256,
        entry.version,
        PendingSapKey.objects.count(),
        SapKeyBackup.objects.count(),
        AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count(),
    )


def settle_all(plan):
    plan.backends.update(status=BackendStatus.CONFIRMED)


def set_tenant(tenant, *, gate_mode=Gate.WARN, four_eyes=False):
    TenantPlanSettings.objects.update_or_create(
        tenant=tenant, defaults={"gate": gate_mode, "four_eyes": four_eyes}
    )


# -- planning ---------------------------------------------------------------------------------


def test_the_command_plans_and_the_scan_activates_in_the_window(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, admin = contacted.tenant, users["Administrator"]
    at = timezone.now() + timedelta(days=3)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=admin)
    before = snapshot(tenant)
    # Before the window the scan leaves the key waiting.
    result = scan(at - timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert result.activated == [] and snapshot(tenant) == before
    result = scan(at + timedelta(minutes=5), django_capture_on_commit_callbacks)
    [activated] = result.activated
    assert activated.kind == "planned"
    backup = SapKeyBackup.objects.get()
    assert backup.activated_by_label == "admin_a (planned)"
    assert not PendingSapKey.objects.exists()
    contacted.refresh_from_db()
    assert contacted.window_outcome == WindowOutcome.ACTIVATED
    [done] = SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE)
    assert set(done.recipient_list) == {"admin_a@example.test", "eva@erp.example"}
    assert "Activated in the window" in done.subject
    delivered = [m for m in mail.outbox if m.subject == done.subject]
    assert len(delivered) == 1 and "eva@erp.example" in delivered[0].to
    # A second scan finds nothing more to do: one activation, one after-window mail.
    scan(at + timedelta(minutes=20), django_capture_on_commit_callbacks)
    assert SapKeyBackup.objects.count() == 1
    assert SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).count() == 1


def test_schedule_activation_command_json_and_cancel(contacted):
    at = timezone.now() + timedelta(days=2)
    out = StringIO()
    call_command(
        "schedule_activation",
        SAP_ALIAS,
        tenant=contacted.tenant.slug,
        at=at.isoformat(),
        json=True,
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    assert printed["alias"] == SAP_ALIAS
    assert printed["planned_activation"] == at.astimezone(UTC).isoformat()
    contacted.refresh_from_db()
    assert contacted.planned_activation == at and contacted.planned_by_label == "system"
    out = StringIO()
    call_command(
        "schedule_activation", SAP_ALIAS, tenant=contacted.tenant.slug, cancel=True, stdout=out
    )
    assert "Cancelled" in out.getvalue()
    contacted.refresh_from_db()
    assert contacted.planned_activation is None
    with pytest.raises(CommandError, match="No activation of .* is planned"):
        call_command("schedule_activation", SAP_ALIAS, tenant=contacted.tenant.slug, cancel=True)


@pytest.mark.parametrize(
    ("when", "words"),
    [
        (lambda pending: timezone.now() - timedelta(minutes=1), "not in the future"),
        (
            lambda pending: pending.auto_activation_at + timedelta(hours=1),
            "activated automatically",
        ),
        (lambda pending: "2027-13-45T99:00", "not an ISO-8601 time"),
    ],
)
def test_a_bad_planned_time_is_refused_and_changes_nothing(contacted, when, words):
    pending = PendingSapKey.objects.get()
    value = when(pending)
    text = value if isinstance(value, str) else value.isoformat()
    with pytest.raises(CommandError, match=words):
        call_command("schedule_activation", SAP_ALIAS, tenant=contacted.tenant.slug, at=text)
    contacted.refresh_from_db()
    assert contacted.planned_activation is None and contacted.schedule_version == 0
    assert not AuditEvent.objects.filter(detail__contains="planned for").exists()


def test_readers_and_other_tenants_cannot_plan(contacted, users):
    at = timezone.now() + timedelta(days=2)
    for role in ("ReadOnly", "IntegrationDeveloper", "other_admin", "none"):
        with pytest.raises(PlanError, match="not allowed"):
            window.schedule_activation(contacted.tenant, SAP_ALIAS, at, actor=users[role])
    contacted.refresh_from_db()
    assert contacted.planned_activation is None


def test_no_waiting_key_no_window(sap_entry, users):
    with pytest.raises(PlanError, match="No new SAP key is waiting"):
        window.schedule_activation(
            sap_entry.tenant,
            SAP_ALIAS,
            timezone.now() + timedelta(days=1),
            actor=users["Administrator"],
        )


def test_the_window_is_announced_once_before_and_again_when_moved(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, admin = contacted.tenant, users["Administrator"]
    at = timezone.now() + timedelta(days=5)
    with django_capture_on_commit_callbacks(execute=True):
        window.schedule_activation(tenant, SAP_ALIAS, at, actor=admin)
    assert not SentNotification.objects.filter(kind=NotificationKind.WINDOW).exists()
    scan(at - timedelta(hours=30), django_capture_on_commit_callbacks)
    assert not SentNotification.objects.filter(kind=NotificationKind.WINDOW).exists()
    result = scan(at - timedelta(hours=23), django_capture_on_commit_callbacks)
    [notice] = result.window_notices
    assert set(notice.recipient_list) == {"admin_a@example.test", "eva@erp.example"}
    assert "Planned activation" in notice.subject
    scan(at - timedelta(hours=22), django_capture_on_commit_callbacks)
    assert SentNotification.objects.filter(kind=NotificationKind.WINDOW).count() == 1
    assert len([m for m in mail.outbox if m.subject == notice.subject]) == 1
    # Moved into the notice time: announced at once, under its new version.
    with django_capture_on_commit_callbacks(execute=True):
        window.schedule_activation(
            tenant, SAP_ALIAS, at + timedelta(hours=2), actor=admin, now=at - timedelta(hours=22)
        )
    assert SentNotification.objects.filter(kind=NotificationKind.WINDOW).count() == 2
    # Cancelled after the notice: those told hear it.
    with django_capture_on_commit_callbacks(execute=True):
        window.cancel_activation(tenant, SAP_ALIAS, actor=admin, now=at - timedelta(hours=21))
    cancelled = SentNotification.objects.filter(
        kind=NotificationKind.WINDOW, subject__startswith="Cancelled"
    ).get()
    assert "eva@erp.example" in cancelled.recipient_list
    before = snapshot(tenant)
    scan(at + timedelta(hours=3), django_capture_on_commit_callbacks)
    assert snapshot(tenant) == before


def test_a_manual_activation_before_the_window_leaves_the_scan_nothing(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, admin = contacted.tenant, users["Administrator"]
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=admin)
    activate_pending_key(tenant, SAP_ALIAS, actor=admin)
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert result.activated == [] and SapKeyBackup.objects.count() == 1
    assert not SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).exists()


def test_a_planner_who_lost_the_role_gets_a_refused_window(
    contacted, users, django_capture_on_commit_callbacks
):
    from keystore import roles

    tenant = contacted.tenant
    planner = make_user("planner", tenant=tenant, role="Administrator")
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=planner)
    roles.remove_roles(planner, tenant)
    before = snapshot(tenant)
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert snapshot(tenant) == before
    [(_slug, _alias, reason)] = result.planned_refused
    assert "not allowed" in reason
    contacted.refresh_from_db()
    assert contacted.window_outcome == WindowOutcome.REFUSED
    [done] = SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE)
    assert "Not activated in the window" in done.subject and "not allowed" in done.body
    # Refused once: the next scan neither retries nor mails again.
    scan(at + timedelta(minutes=20), django_capture_on_commit_callbacks)
    assert snapshot(tenant) == before
    assert SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).count() == 1


# -- the gate ---------------------------------------------------------------------------------


def test_gate_warn_activates_and_names_the_unsettled_backends(contacted, users):
    result = activate_pending_key(contacted.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert set(result.unsettled) == {"ERP_PROD", "CRM"}
    event = AuditEvent.objects.get(action=AuditAction.ACTIVATE)
    assert "not settled in the plan" in event.detail and "ERP_PROD" in event.detail


def test_gate_require_refuses_until_settled_or_overridden(contacted, users):
    tenant, admin = contacted.tenant, users["Administrator"]
    set_tenant(tenant, gate_mode=Gate.REQUIRE)
    assert services.plan_json(contacted)["gate"] == "require"
    before = snapshot(tenant)
    with pytest.raises(RenewalError, match="2 not yet: .*CRM"):
        activate_pending_key(tenant, SAP_ALIAS, actor=admin)
    assert snapshot(tenant) == before
    # A blank reason is no override.
    with pytest.raises(RenewalError, match="override the gate with a written reason"):
        activate_pending_key(tenant, SAP_ALIAS, actor=admin, override_reason="   ")
    assert snapshot(tenant) == before
    contacted.refresh_from_db()
    assert contacted.override_reason == ""
    result = activate_pending_key(
        tenant, SAP_ALIAS, actor=admin, override_reason="CRM is switched off this week"
    )
    assert result.gate_overridden
    contacted.refresh_from_db()
    assert contacted.override_reason == "CRM is switched off this week"
    assert contacted.override_by_label == "admin_a"
    assert AuditEvent.objects.filter(detail__contains="gate overridden: CRM is switched").exists()


def test_gate_require_lets_a_settled_plan_through(contacted, users):
    set_tenant(contacted.tenant, gate_mode=Gate.REQUIRE)
    settle_all(contacted)
    result = activate_pending_key(contacted.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert result.unsettled == () and not result.gate_overridden


def test_gate_require_refuses_the_planned_activation_until_overridden(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, admin = contacted.tenant, users["Administrator"]
    set_tenant(tenant, gate_mode=Gate.REQUIRE)
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=admin)
    gate.override_gate(tenant, SAP_ALIAS, "CRM confirmed by phone", actor=admin)
    with pytest.raises(PlanError, match="overridden already"):
        gate.override_gate(tenant, SAP_ALIAS, "again", actor=admin)
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    [activated] = result.activated
    assert activated.kind == "planned"


def test_gate_require_closes_the_window_without_override(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, admin = contacted.tenant, users["Administrator"]
    set_tenant(tenant, gate_mode=Gate.REQUIRE)
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=admin)
    before = snapshot(tenant)
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert snapshot(tenant) == before
    [(_slug, _alias, reason)] = result.planned_refused
    assert "requires every affected backend" in reason


def test_the_automatic_activation_passes_the_gate_and_names_who_never_confirmed(
    contacted, users, expiry, django_capture_on_commit_callbacks
):
    tenant = contacted.tenant
    set_tenant(tenant, gate_mode=Gate.REQUIRE, four_eyes=True)
    contacted.backends.filter(system="ERP_PROD").update(status=BackendStatus.CONFIRMED)
    result = scan(expiry - timedelta(hours=6), django_capture_on_commit_callbacks)
    [activated] = result.activated
    assert activated.kind == "automatic" and activated.unsettled == ("CRM",)
    [message] = [m for m in mail.outbox if "was activated automatically" in m.subject]
    assert "never confirmed the new certificate (1): CRM" in message.body


# -- four eyes --------------------------------------------------------------------------------


def test_four_eyes_needs_a_second_administrator(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, first = contacted.tenant, users["Administrator"]
    second = make_user("admin_c", tenant=tenant, role="Administrator")
    set_tenant(tenant, four_eyes=True)
    before = snapshot(tenant)
    with pytest.raises(RenewalError, match="not approved yet"):
        activate_pending_key(tenant, SAP_ALIAS, actor=first)
    with pytest.raises(PlanError, match="Nobody asked"):
        gate.approve_activation(tenant, SAP_ALIAS, actor=second)
    with django_capture_on_commit_callbacks(execute=True):
        gate.request_approval(tenant, SAP_ALIAS, actor=first)
    [asked] = SentNotification.objects.filter(kind=NotificationKind.APPROVAL)
    assert "admin_c@example.test" in asked.recipient_list
    assert "admin_a@example.test" not in asked.recipient_list
    with pytest.raises(PlanError, match="admin_a asked for the approval already"):
        gate.request_approval(tenant, SAP_ALIAS, actor=second)
    with pytest.raises(PlanError, match="another administrator must approve"):
        gate.approve_activation(tenant, SAP_ALIAS, actor=first)
    with pytest.raises(PlanError, match="not allowed"):
        gate.approve_activation(tenant, SAP_ALIAS, actor=users["ReadOnly"])
    with pytest.raises(RenewalError, match="not approved yet"):
        activate_pending_key(tenant, SAP_ALIAS, actor=first)
    assert snapshot(tenant) == before
    gate.approve_activation(tenant, SAP_ALIAS, actor=second)
    contacted.refresh_from_db()
    assert (contacted.approval_requested_by_label, contacted.approved_by_label) == (
        "admin_a",
        "admin_c",
    )
    result = activate_pending_key(tenant, SAP_ALIAS, actor=first)
    assert result.new_fingerprint == contacted.fingerprint_sha256


def test_four_eyes_planning_asks_and_an_unapproved_window_is_refused(
    contacted, users, django_capture_on_commit_callbacks
):
    tenant, first = contacted.tenant, users["Administrator"]
    set_tenant(tenant, four_eyes=True)
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=first)
    contacted.refresh_from_db()
    assert contacted.approval_requested_by_label == "admin_a"
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    [(_slug, _alias, reason)] = result.planned_refused
    assert "not approved yet" in reason and "admin_a asked" in reason
    assert not SapKeyBackup.objects.exists()


def test_four_eyes_approved_window_activates(contacted, users, django_capture_on_commit_callbacks):
    tenant, first = contacted.tenant, users["Administrator"]
    second = make_user("admin_c", tenant=tenant, role="Administrator")
    set_tenant(tenant, four_eyes=True)
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(tenant, SAP_ALIAS, at, actor=first)
    gate.approve_activation(tenant, SAP_ALIAS, actor=second)
    result = scan(at + timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert [r.kind for r in result.activated] == ["planned"]
    assert RenewalPlan.objects.get(pk=contacted.pk).window_outcome == WindowOutcome.ACTIVATED


def test_activate_sap_key_command_under_the_gate(contacted):
    set_tenant(contacted.tenant, gate_mode=Gate.REQUIRE)
    before = snapshot(contacted.tenant)
    with pytest.raises(CommandError, match="override the gate with a written reason"):
        call_command("activate_sap_key", SAP_ALIAS, tenant=contacted.tenant.slug)
    assert snapshot(contacted.tenant) == before
    out = StringIO()
    call_command(
        "activate_sap_key",
        SAP_ALIAS,
        tenant=contacted.tenant.slug,
        override_reason="maintenance agreed by phone",
        stdout=out,
    )
    assert "Activated the new SAP key" in out.getvalue()
    assert "Not confirmed, verified or marked not affected" in out.getvalue()
    contacted.refresh_from_db()
    assert contacted.override_reason == "maintenance agreed by phone"
    assert contacted.override_by_label == "system"
