"""Fixtures of the renewal-plan tests: flows that use the SAP alias (one backend that uses it,
one that may use it), imported before the new key arrives."""

from __future__ import annotations

import pytest

from tests.renewals import flowfactory as flows
from tests.renewals.conftest import SAP_ALIAS


def import_flows(tenant, *channels, bundle: str = "com.example.orders") -> None:
    from renewals.whereused.importing import import_flow_exports

    [result] = import_flow_exports(
        tenant, [(f"{bundle}.zip", flows.flow_zip(bundle, flows.iflw(*channels)))]
    )
    assert result.ok, result.message


def erp_channel(address: str = "https://erp.example:443/sap/bc/srt", receiver: str = "ERP_PROD"):
    return flows.channel(
        "MessageFlow_1",
        "To ERP",
        "SOAP",
        props={"authentication": "Client Certificate", "privateKeyAlias": SAP_ALIAS},
        receiver=receiver,
        address=address,
    )


def crm_channel(address: str = "https://crm.example:8443/api", receiver: str = "CRM"):
    # Client certificate without an alias: any fitting key, so it "may use" the SAP key.
    return flows.channel(
        "MessageFlow_2",
        "To CRM",
        "HTTP",
        props={"authenticationMethod": "Client Certificate"},
        receiver=receiver,
        address=address,
    )


@pytest.fixture
def two_backends(sap_entry):
    import_flows(sap_entry.tenant, erp_channel(), crm_channel())
    return sap_entry.tenant


@pytest.fixture
def plan(two_backends, provide):
    from renewals.plans.models import RenewalPlan

    pending = provide(two_backends)
    return RenewalPlan.objects.get(occasion=pending.material_id)
