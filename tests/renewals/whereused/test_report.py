"""The where-used report and counts: uses and may-use rows grouped by backend, flow and
component, the numbers list pages show, and a fixed number of queries.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keystore.models import KeystoreEntry
from renewals.whereused.importing import import_flow_exports
from renewals.whereused.report import (
    UsageCounts,
    WhereUsedCounts,
    annotate_usage_counts,
    usage_counts,
    where_used,
)
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import (
    as2_receiver,
    channel,
    encryptor_step,
    flow_zip,
    iflw,
    pkcs7_signer_without_alias,
    verifier_step,
)
from tests.renewals.whereused.flows import (
    ORDERS,
    PARTNER,
    client_cert_flow,
    import_all,
    landscape,
    orders_flow,
    section,
    signer_only_flow,
)

# --- the rules, as the report shows them ------------------------------------------------------


def test_report_groups_uses_and_may_use_by_backend_flow_and_component(
    tenant, sap_entry, key_pair_entry, cert_entry
):
    landscape(tenant)
    report = where_used(tenant, SAP_ALIAS)

    assert section(report.uses) == {
        ("ERP_PROD", "https://erp.example:443/sap/bc/srt/orders"): {
            ORDERS: {("To ERP", "client-certificate authentication")}  # externalized alias
        },
        ("PARTNER", "https://partner.example/ws"): {PARTNER: {("To partner", "signing")}},
        ("S4_ODATA", "https://s4.example/odata"): {
            PARTNER: {("OData to S4", "client-certificate authentication")}
        },
        ("", ""): {
            ORDERS: {("Sign order", "signing")},
            PARTNER: {("Sign.groovy", "named in script"), ("Custom thing", "unclassified")},
        },
    }
    assert section(report.may_use) == {
        ("CRM", "https://crm.example/api"): {
            ORDERS: {("To CRM", "client-certificate authentication")}
        },
        ("", ""): {ORDERS: {("Decrypt reply", "decryption")}},
    }
    # Named backends first, steps and scripts without a backend last; flows by name.
    assert [b.label for b in report.uses][-1] == "No backend system (steps and scripts)"
    assert [f.bundle_name for f in report.uses[-1].flows] == ["Orders to ERP", "Partner exchange"]
    # Switched off (AS2 with Basic auth, HTTP Basic) and other aliases (IDoc) are not listed.
    systems = {b.system for b in (*report.uses, *report.may_use)}
    assert not systems & {"AS2_PARTNER", "LEGACY", "S4"}
    assert report.counts == WhereUsedCounts(uses=6, may_use=2, backends=4, flows=2)
    erp = report.uses[0].flows[0].components[0]
    assert (erp.component_id, erp.component_type, erp.direction, erp.property_key) == (
        "MessageFlow_1",
        "SOAP",
        "Receiver",
        "privateKeyAlias",
    )
    assert erp.outbound and erp.alias == SAP_ALIAS


def test_other_aliases_and_certificate_entries(tenant, sap_entry, key_pair_entry, cert_entry):
    landscape(tenant)
    idoc = where_used(tenant, "client_key")
    assert section(idoc.uses) == {
        ("S4", "https://s4.example/sap/bc/srt/idoc"): {
            PARTNER: {("IDoc to S4", "client-certificate authentication")}
        }
    }
    # A trusted certificate cannot authenticate or decrypt: no private-key "may use" rows.
    root = where_used(tenant, "partner_root", key_pair=False)
    assert section(root.uses) == {
        ("PARTNER", "https://partner.example/ws"): {PARTNER: {("To partner", "encryption")}}
    }
    assert root.may_use == []
    assert where_used(tenant, "partner_root").counts.may_use == 2
    # Configured aliases are compared exactly, as the keystore stores them; what a script
    # passes to the keystore ignoring case, as the keystore reads it.
    upper = where_used(tenant, SAP_ALIAS.upper())
    assert section(upper.uses) == {("", ""): {PARTNER: {("Sign.groovy", "named in script")}}}


def test_counts_for_list_pages_match_the_report(tenant, other_tenant, sap_entry, key_pair_entry):
    landscape(tenant)
    import_all(other_tenant, client_cert_flow("com.other"))
    aliases = [SAP_ALIAS, "client_key", "nowhere"]
    with CaptureQueriesContext(connection) as queries:
        counts = usage_counts(tenant, aliases)
    assert len(queries) == 2
    assert counts == {
        SAP_ALIAS: UsageCounts(6, 2),
        "client_key": UsageCounts(1, 2),
        "nowhere": UsageCounts(0, 2),
    }
    for alias in aliases:
        report = where_used(tenant, alias).counts
        assert (report.uses, report.may_use) == counts[alias]

    entries = annotate_usage_counts(KeystoreEntry.objects.order_by("alias"))
    with CaptureQueriesContext(connection) as queries:
        annotated = {e.alias: (e.where_used_uses, e.where_used_may_use) for e in entries}
    assert len(queries) == 1
    assert annotated == {SAP_ALIAS: (6, 2), "client_key": (1, 2)}


def test_an_authentication_from_an_unset_parameter_may_use_the_named_alias_only(
    tenant, sap_entry, key_pair_entry
):
    """The channel names client_key but its authentication is an unset parameter: "may use"
    client_key, in client_key's report only, and counted alike on list pages."""
    flow = flow_zip(
        "com.example.unset",
        iflw(
            channel(
                "MessageFlow_1",
                "To S4",
                "SOAP",
                props={"authentication": "{{S4 authentication}}", "privateKeyAlias": "client_key"},
                receiver="S4",
                address="https://s4.example/soap",
            )
        ),
        parameters={},
    )
    import_all(tenant, flow, signer_only_flow())
    client = where_used(tenant, "client_key")
    assert client.uses == []
    ((component,),) = [flow.components for b in client.may_use for flow in b.flows if b.system]
    assert (component.alias, component.reason) == (
        "client_key",
        "authentication from parameter {{S4 authentication}}, not set in the export",
    )
    assert where_used(tenant, SAP_ALIAS).may_use == []  # named: not every key's business
    counts = usage_counts(tenant, ["client_key", SAP_ALIAS])
    assert counts == {"client_key": UsageCounts(0, 1), SAP_ALIAS: UsageCounts(1, 0)}
    annotated = {
        e.alias: (e.where_used_uses, e.where_used_may_use)
        for e in annotate_usage_counts(KeystoreEntry.objects.all())
    }
    assert annotated == {"client_key": (0, 1), SAP_ALIAS: (1, 0)}
    # Its connection holds the key: restart after activating client_key.
    assert [f.bundle_id for f in client.flows_to_restart_after_activation] == ["com.example.unset"]


def test_certificate_entries_list_verifiers_encryptors_and_as2(tenant, cert_entry):
    flow = flow_zip(
        "com.example.partner.certs",
        iflw(
            verifier_step("CallActivity_1", "XML", "partner_root"),
            verifier_step("CallActivity_2", "Simple", "partner_root"),
            encryptor_step("CallActivity_3", "PKCS7", "partner_root"),
            pkcs7_signer_without_alias("CallActivity_4"),
            as2_receiver(
                props={
                    "publicKeyAliasForEncryption": "partner_root",
                    "encryptMessage": "true",
                    "publicKeyAliasForMDNVerification": "partner_root",
                    "requestMdnSigned": "true",
                }
            ),
        ),
        parameters={},
    )
    import_all(tenant, flow)
    report = where_used(tenant, "partner_root", key_pair=False)
    assert section(report.uses) == {
        ("AS2_PARTNER", "https://as2.partner.example/as2"): {
            "com.example.partner.certs": {
                ("AS2 to partner", "encryption"),
                ("AS2 to partner", "signature verification"),
            }
        },
        ("", ""): {
            "com.example.partner.certs": {
                ("Verify (XML)", "signature verification"),
                ("Verify (Simple)", "signature verification"),
                ("Encrypt (PKCS7)", "encryption"),
            }
        },
    }
    # A signer without an alias needs a private key: not a certificate's business...
    assert report.may_use == []
    # ... but every key pair's.
    any_pair = where_used(tenant, "any_key_pair")
    assert section(any_pair.may_use) == {
        ("", ""): {"com.example.partner.certs": {("PKCS7 Signer", "signing")}}
    }


def test_flows_of_other_tenants_are_not_seen(tenant, other_tenant, sap_entry):
    import_all(other_tenant, orders_flow())
    assert where_used(tenant, SAP_ALIAS).is_empty
    import_all(tenant, signer_only_flow())
    assert where_used(tenant, SAP_ALIAS).counts.flows == 1
    assert where_used(other_tenant, SAP_ALIAS).counts.flows == 1


# --- performance ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [5, 50])
def test_where_used_query_count_does_not_grow_with_flows(tenant, sap_entry, count):
    import_flow_exports(
        tenant, [(f"{n}.zip", client_cert_flow(f"com.example.f{n}")) for n in range(count)]
    )
    with CaptureQueriesContext(connection) as queries:
        report = where_used(tenant, SAP_ALIAS)
    assert report.counts.flows == count
    assert len(queries) == 1
