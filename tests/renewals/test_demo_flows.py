"""The demo's integration flows (issue 15, item 8): seeded once through the one import path, they
make where-used, the renewal pack and "restart required" work on first start."""

from __future__ import annotations

from keystore import demo
from keystore.models import AuditEvent, Tenant
from renewals.activation import activate_pending_key
from renewals.demo import DEMO_ALIAS, SIGNING_ALIAS
from renewals.whereused.models import IntegrationFlow
from renewals.whereused.report import where_used


def components(report, section: str) -> set[str]:
    backends = report.uses if section == "uses" else report.may_use
    return {
        component.component_name
        for backend in backends
        for flow in backend.flows
        for component in flow.components
    }


def test_the_demo_flows_show_every_kind_of_use(db):
    demo.seed()
    tenant = Tenant.objects.get(slug="demo")
    assert set(IntegrationFlow.objects.values_list("bundle_name", flat=True)) == {
        "Orders to ERP",
        "Signed invoices",
        "Payment advice",
        "Partner catalog",
    }
    sap = where_used(tenant, DEMO_ALIAS)
    assert {"To ERP", "Sign payment advice"} <= components(sap, "uses")
    assert "To partner catalog" in components(sap, "may use")
    assert "ERP_PROD" in {backend.system for backend in sap.uses}
    assert "Sign invoice" in components(where_used(tenant, SIGNING_ALIAS), "uses")

    # A second seed imports nothing again.
    events = AuditEvent.objects.count()
    demo.seed()
    assert IntegrationFlow.objects.count() == 4 and AuditEvent.objects.count() == events

    # Activating the waiting SAP key marks the flow with the client-certificate channel.
    activate_pending_key(tenant, DEMO_ALIAS)
    restart = set(
        IntegrationFlow.objects.filter(restart_required=True).values_list("bundle_name", flat=True)
    )
    assert "Orders to ERP" in restart and "Signed invoices" not in restart
