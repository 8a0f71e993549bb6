"""The renewals part of the demo: one new SAP key waiting for activation, and a few integration
flows that use the demo's keys, so that where-used, renewal packs and "restart required" show
something on first start without real exports.

`keystore.demo.seed()` calls `seed_pending_key(tenant)` and `seed_flows(tenant)`; both are
idempotent (a flow imported before is left as it is).
"""

from __future__ import annotations

import io

from keystore import sapca
from keystore.models import KeystoreEntry, Owner, Tenant
from renewals.activation import provision_sap_key
from renewals.models import PendingSapKey
from renewals.whereused import exportwriter as export
from renewals.whereused.importing import import_flow_exports
from renewals.whereused.models import IntegrationFlow

DEMO_ALIAS = "sap_cloudintegrationcertificate"
# A renewed key outlives its predecessor by about the 20 days the demo's current key has left.
DEMO_VALID_DAYS = 365 + 20
#: The tenant key pair of keystore.demo that the signer uses.
SIGNING_ALIAS = "erp_client"

_PAYMENT_SCRIPT = f"""import com.sap.gateway.ip.core.customdev.util.Message
import com.sap.it.api.ITApiFactory
import com.sap.it.api.keystore.KeystoreService

def Message processData(Message message) {{
    def keystore = ITApiFactory.getService(KeystoreService.class, null)
    def key = keystore.getKey("{DEMO_ALIAS}")
    message.setProperty("signedBy", "{DEMO_ALIAS}")
    return message
}}
"""


def demo_flows() -> list[tuple[str, bytes]]:
    """(bundle ID, export ZIP) of the demo's flows: a client-certificate channel to a backend,
    a signer, a script naming the SAP key, and a channel that may use any key."""
    orders = export.iflw(
        export.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": DEMO_ALIAS},
            receiver="ERP_PROD",
            address="https://erp.demo.example:443/sap/bc/srt/orders",
        )
    )
    invoices = export.iflw(
        export.step(
            "CallActivity_1", "Sign invoice", "PKCS7Signer", {"privateKeyAlias": SIGNING_ALIAS}
        ),
        export.channel(
            "MessageFlow_1",
            "To tax office",
            "HTTP",
            props={"authentication": "None"},
            receiver="TAX_OFFICE",
            address="https://tax.demo.example/invoices",
        ),
    )
    payments = export.iflw(
        export.step(
            "CallActivity_1",
            "Sign payment advice",
            "GroovyScript",
            {"script": "SignPayment.groovy", "scriptFunction": "processData"},
            activity_type="Script",
            version="1.1.2",
        )
    )
    catalog = export.iflw(
        export.channel(
            "MessageFlow_1",
            "To partner catalog",
            "HTTP",
            props={"authentication": "Client Certificate", "privateKeyAlias": ""},
            receiver="PARTNER_CATALOG",
            address="https://catalog.partner.demo.example/api",
        )
    )
    flows = [
        ("com.demo.orders", "Orders to ERP", orders, {}),
        ("com.demo.invoices", "Signed invoices", invoices, {}),
        ("com.demo.payments", "Payment advice", payments, {"SignPayment.groovy": _PAYMENT_SCRIPT}),
        ("com.demo.catalog", "Partner catalog", catalog, {}),
    ]
    return [
        (bundle_id, export.flow_zip(bundle_id, xml, bundle_name=name, scripts=scripts))
        for bundle_id, name, xml, scripts in flows
    ]


def seed_flows(tenant: Tenant) -> None:
    """Import the demo's flows that the tenant does not hold yet (through the one import path)."""
    present = set(IntegrationFlow.objects.filter(tenant=tenant).values_list("bundle_id", flat=True))
    missing = [
        (f"{bundle_id}.zip", io.BytesIO(data))
        for bundle_id, data in demo_flows()
        if bundle_id not in present
    ]
    if not missing:
        return
    failed = [r for r in import_flow_exports(tenant, missing) if not r.ok]
    if failed:
        raise RuntimeError("demo flows not imported: " + "; ".join(r.message for r in failed))


def seed_pending_key(tenant: Tenant) -> None:
    """Provide a new SAP key for the tenant's SAP key pair unless one is waiting already."""
    entry = KeystoreEntry.objects.filter(tenant=tenant, alias=DEMO_ALIAS, owner=Owner.SAP).first()
    if entry is None or PendingSapKey.objects.filter(entry=entry).exists():
        return
    provision_sap_key(tenant, DEMO_ALIAS, valid_days=DEMO_VALID_DAYS, ca=sapca.sap_ca())
