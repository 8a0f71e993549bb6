"""Restart after an activation: which flows are marked, and clearing the mark through the
configured callable.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from keystore.models import AuditEvent
from renewals.whereused.models import IntegrationFlow
from renewals.whereused.report import where_used
from renewals.whereused.restart import mark_restart_required, restart_flows
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.whereused.flows import (
    ORDERS,
    client_cert_flow,
    import_all,
    orders_flow,
    signer_only_flow,
)

# --- restart ----------------------------------------------------------------------------------


@pytest.fixture
def restart_landscape(tenant, other_tenant):
    import_all(
        tenant,
        orders_flow(),  # outbound with the alias (ERP) and with any key (CRM)
        client_cert_flow("com.example.odata", adapter="OData"),  # outbound with the alias
        signer_only_flow(),  # signing only: picks up the new key at once
        client_cert_flow("com.example.idoc", alias="client_key", adapter="IDoc"),  # other alias
        client_cert_flow("com.example.anykey", alias=""),  # outbound with any key
    )
    import_all(other_tenant, client_cert_flow("com.example.odata"))
    return {flow.bundle_id: flow for flow in IntegrationFlow.objects.for_tenant(tenant)}


def marked(tenant=None) -> set[str]:
    flows = IntegrationFlow.objects.restart_required()
    if tenant is not None:
        flows = flows.for_tenant(tenant)
    return set(flows.values_list("bundle_id", flat=True))


def test_mark_restart_required_marks_only_outbound_flows(tenant, restart_landscape):
    at = timezone.now()
    count = mark_restart_required(tenant, SAP_ALIAS, reason=f"{SAP_ALIAS} activated", at=at)
    assert count == 3
    assert marked() == {ORDERS, "com.example.odata", "com.example.anykey"}
    assert marked() == marked(tenant)  # the other tenant's flow is not touched
    flow = IntegrationFlow.objects.get(tenant=tenant, bundle_id=ORDERS)
    assert (flow.restart_required_since, flow.restart_reason) == (at, f"{SAP_ALIAS} activated")
    assert where_used(tenant, SAP_ALIAS).restart_required_flows[0].bundle_id == "com.example.anykey"


def test_restart_clears_the_mark_and_records_who_and_when(tenant, restart_landscape, users):
    admin = users["Administrator"]
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    flows = IntegrationFlow.objects.filter(bundle_id__in=[ORDERS, "com.example.odata"])
    results = restart_flows(flows.order_by("tenant__slug", "bundle_id"), actor=admin)
    # The other tenant's copy of com.example.odata is refused to this administrator.
    assert [(r.flow.tenant.slug, r.ok) for r in results] == [
        ("tenant-a", True),
        ("tenant-a", True),
        ("tenant-b", False),
    ]
    other = IntegrationFlow.objects.get(tenant__slug="tenant-b")
    assert other.last_restart_at is None
    assert marked() == {"com.example.anykey"}
    flow = IntegrationFlow.objects.get(tenant=tenant, bundle_id=ORDERS)
    assert flow.last_restart_by_label == admin.username and flow.last_restart_at is not None
    assert flow.restart_required_since is None and flow.restart_reason == ""
    event = AuditEvent.objects.filter(detail__startswith="flow restarted").first()
    assert event.actor == admin and "recorded only" in event.detail

    # Read roles and other tenants' administrators change nothing.
    anykey = IntegrationFlow.objects.filter(tenant=tenant, bundle_id="com.example.anykey")
    for role in ("ReadOnly", "IntegrationDeveloper", "other_admin"):
        (result,) = restart_flows(anykey, actor=users[role])
        assert not result.ok and "not allowed" in result.message
    assert marked() == {"com.example.anykey"}


calls = []


def restart_in_runtime(flow):
    calls.append(flow.bundle_id)


def failing_restart(flow):
    raise RuntimeError("runtime unreachable\n(connection refused)")


def activation_during_restart(flow):
    mark_restart_required(
        flow.tenant, SAP_ALIAS, reason="activated again", at=timezone.now() + timedelta(seconds=1)
    )


def test_restart_calls_the_configured_callable(tenant, restart_landscape, settings):
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    flows = IntegrationFlow.objects.for_tenant(tenant).restart_required()

    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.failing_restart"
    results = restart_flows(flows)
    assert [result.ok for result in results] == [False, False, False]
    assert "restart failed: runtime unreachable (connection refused)" in results[0].message
    assert marked() == {ORDERS, "com.example.odata", "com.example.anykey"}
    assert not IntegrationFlow.objects.filter(last_restart_at__isnull=False).exists()

    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.restart_in_runtime"
    calls.clear()
    results = restart_flows(flows.filter(bundle_id=ORDERS))
    assert [result.ok for result in results] == [True] and calls == [ORDERS]
    assert ORDERS not in marked()
    assert (
        "; recorded only"
        not in AuditEvent.objects.filter(detail__startswith="flow restarted")[0].detail
    )

    # An activation while the runtime restarts: the flow may hold the old key, the mark stays.
    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.activation_during_restart"
    (result,) = restart_flows(flows.filter(bundle_id="com.example.odata"))
    assert result.ok
    flow = IntegrationFlow.objects.get(tenant=tenant, bundle_id="com.example.odata")
    assert flow.restart_required and flow.restart_reason == "activated again"
    assert flow.last_restart_at is not None


def test_a_bad_restart_setting_is_reported(settings, tenant):
    from django.core.exceptions import ImproperlyConfigured

    settings.WHEREUSED_RESTART_CALLABLE = "no.such.module.restart"
    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        restart_flows([])
