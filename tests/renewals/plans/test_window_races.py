"""The agreed window racing a manual activation, and two scans racing one window, on
PostgreSQL with real threads and row locks: one activation, one history row, one mail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from renewals.activation import AlreadyActivated, activate_pending_key
from renewals.models import NotificationKind, PendingSapKey, SentNotification
from renewals.plans import window
from renewals.plans.models import RenewalPlan, WindowOutcome
from renewals.scan import auto_activate_due
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.test_races import assert_activated_once, run_together, slow_activation

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

__all__ = ["slow_activation"]  # the fixture, used by name


@pytest.fixture
def planned(plan, users):
    at = timezone.now() + timedelta(days=2)
    window.schedule_activation(plan.tenant, SAP_ALIAS, at, actor=users["Administrator"])
    return plan, at


def test_the_window_and_a_manual_activation_together(sap_entry, planned, users, slow_activation):
    plan, at = planned
    pending = PendingSapKey.objects.get()
    mail.outbox.clear()
    outcomes = run_together(
        lambda: activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"]),
        lambda: auto_activate_due(at + timedelta(minutes=1)),
    )
    (manual_kind, manual), (scan_kind, scan) = outcomes
    assert scan_kind == "ok", scan
    assert scan.failed == [] and scan.planned_refused == []
    plan.refresh_from_db()
    if manual_kind == "ok":
        assert scan.activated == []
        assert plan.window_outcome == WindowOutcome.NONE
        assert not SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).exists()
    else:
        assert isinstance(manual, AlreadyActivated)
        assert [result.kind for result in scan.activated] == ["planned"]
        assert plan.window_outcome == WindowOutcome.ACTIVATED
        assert SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).count() == 1
    assert_activated_once(sap_entry, pending)


def test_three_scans_in_one_window(sap_entry, planned, slow_activation):
    plan, at = planned
    pending = PendingSapKey.objects.get()
    mail.outbox.clear()
    outcomes = run_together(*[lambda: auto_activate_due(at + timedelta(minutes=1))] * 3)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3, outcomes
    results = [value for _, value in outcomes]
    assert sum(len(result.activated) for result in results) == 1
    assert all(not result.planned_refused and not result.failed for result in results)
    assert RenewalPlan.objects.get(pk=plan.pk).window_outcome == WindowOutcome.ACTIVATED
    assert SentNotification.objects.filter(kind=NotificationKind.WINDOW_DONE).count() == 1
    assert_activated_once(sap_entry, pending)
