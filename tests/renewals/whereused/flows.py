"""Flow exports of a small landscape, shared by the where-used tests.

Built in memory with tests/renewals/flowfactory.py; the tests always put them through
import_flow_exports, so every rule is checked end to end: ZIP -> parser -> index -> report.
"""

from __future__ import annotations

from renewals.whereused.importing import FlowImportResult, import_flow_exports
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import channel, flow_zip, iflw, step

CERT_AUTH = {"authentication": "Client Certificate"}
ORDERS = "com.example.orders"
PARTNER = "com.example.partner"

SCRIPT = """\
def Message processData(Message message) {
    def keystore = ITApiFactory.getService(KeystoreService.class, null)
    def key = keystore.getKey("sap_cloudintegrationcertificate")
    return message
}
"""


def orders_flow(alias_parameter: str = SAP_ALIAS, *, with_crm: bool = True) -> bytes:
    """Orders: SOAP to ERP_PROD with the alias externalized, HTTP to CRM with client
    certificate but no alias (may use), a PKCS#7 signer with the alias and a decryptor."""
    components = [
        channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={**CERT_AUTH, "privateKeyAlias": "{{erp_alias}}"},
            receiver="ERP_PROD",
            address="https://erp.example:443/sap/bc/srt/orders",
        ),
        step("CallActivity_1", "Sign order", "PKCS7Signer", {"privateKeyAlias": SAP_ALIAS}),
        step("CallActivity_2", "Decrypt reply", "PKCS7Decryptor"),
    ]
    if with_crm:
        components.append(
            channel(
                "MessageFlow_2",
                "To CRM",
                "HTTP",
                props={"authenticationMethod": "Client Certificate"},
                receiver="CRM",
                address="https://crm.example/api",
            )
        )
    return flow_zip(
        ORDERS,
        iflw(*components),
        parameters={"erp_alias": alias_parameter},
        bundle_name="Orders to ERP",
    )


def partner_flow() -> bytes:
    """Partner: WS-Security signing (SAP key) and encryption (partner_root), IDoc and OData
    with client certificates, switched-off AS2 and Basic HTTP, a script and an unknown step."""
    xml = iflw(
        channel(
            "MessageFlow_1",
            "To partner",
            "SOAP",
            props={
                "WSSecurity_outbound": "ManualConfiguration",
                "WSSecurityType_outbound": "SignAndEncryptMessage",
                "PrivateKeyAliasSigning": SAP_ALIAS,
                "PublicKeyAliasEncryption": "partner_root",
            },
            receiver="PARTNER",
            address="https://partner.example/ws",
        ),
        channel(
            "MessageFlow_2",
            "IDoc to S4",
            "IDoc",
            props={**CERT_AUTH, "privateKeyAlias": "client_key"},
            receiver="S4",
            address="https://s4.example/sap/bc/srt/idoc",
        ),
        channel(
            "MessageFlow_3",
            "OData to S4",
            "OData",
            props={
                "authenticationMethod": "Client Certificate",
                "odataCertAuthPrivateKeyAlias": SAP_ALIAS,
            },
            receiver="S4_ODATA",
            address="https://s4.example/odata",
        ),
        channel(
            "MessageFlow_4",
            "AS2 off",
            "AS2",
            props={
                "authentication": "Basic",
                "privateKeyAliasForSigning": SAP_ALIAS,
                "messageSigning": "false",
                "publicKeyAliasForEncryption": "partner_root",
                "messageEncryption": "false",
            },
            receiver="AS2_PARTNER",
        ),
        channel(
            "MessageFlow_5",
            "HTTP basic",
            "HTTP",
            props={"authenticationMethod": "Basic", "privateKeyAlias": SAP_ALIAS},
            receiver="LEGACY",
        ),
        step("CallActivity_9", "Custom thing", "com.acme:Thing", {"keyStoreAlias": SAP_ALIAS}),
    )
    return flow_zip(
        PARTNER,
        xml,
        parameters={},
        scripts={"Sign.groovy": SCRIPT},
        bundle_name="Partner exchange",
    )


def signer_only_flow(bundle_id: str = "com.example.signer", alias: str = SAP_ALIAS) -> bytes:
    return flow_zip(
        bundle_id,
        iflw(step("CallActivity_1", "Sign", "SimpleSigner", {"privateKeyAlias": alias})),
        parameters={},
        bundle_name=f"Signer {bundle_id}",
    )


def client_cert_flow(
    bundle_id: str, alias: str = SAP_ALIAS, receiver: str = "ERP_PROD", adapter: str = "SOAP"
) -> bytes:
    """One receiver channel with client-certificate authentication (alias "" = no alias)."""
    props = dict(CERT_AUTH)
    if alias:
        props["privateKeyAlias"] = alias
    return flow_zip(
        bundle_id,
        iflw(channel("MessageFlow_1", f"To {receiver}", adapter, props=props, receiver=receiver)),
        parameters={},
        bundle_name=f"Flow {bundle_id}",
    )


def import_all(tenant, *zips: bytes, actor=None) -> list[FlowImportResult]:
    results = import_flow_exports(
        tenant, [(f"file{number}.zip", data) for number, data in enumerate(zips)], actor=actor
    )
    assert all(result.ok for result in results), [result.message for result in results]
    return results


def landscape(tenant):
    """The two flows above, imported."""
    return import_all(tenant, orders_flow(), partner_flow())


def section(backends) -> dict[tuple[str, str], dict[str, set[tuple[str, str]]]]:
    """{(system, address): {bundle_id: {(component name, usage)}}} for compact assertions."""
    return {
        (backend.system, backend.address): {
            flow.bundle_id: {(c.component_name, c.usage) for c in flow.components}
            for flow in backend.flows
        }
        for backend in backends
    }
