"""The where-used index service: import, the report, counts, CSV, renewal pack and restart.

Flows are built in memory with tests/renewals/flowfactory.py and always go through
import_flow_exports, so every rule is checked end to end: ZIP -> parser -> index -> report.
The builders at the top are shared with the admin and command tests.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keystore import crypto
from keystore.models import AuditEvent, KeystoreEntry
from renewals.whereused import parser, services
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from renewals.whereused.services import import_flow_exports, where_used
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import FLOW_DIR, channel, flow_zip, iflw, manifest, step, zip_bytes

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


def import_all(tenant, *zips: bytes, actor=None) -> list[services.FlowImportResult]:
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


# --- import and the rules ---------------------------------------------------------------------


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
    assert report.counts == services.WhereUsedCounts(uses=6, may_use=2, backends=4, flows=2)
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
    # Aliases are compared exactly, as the keystore stores them.
    assert where_used(tenant, SAP_ALIAS.upper()).uses == []


def test_counts_for_list_pages_match_the_report(tenant, other_tenant, sap_entry, key_pair_entry):
    landscape(tenant)
    import_all(other_tenant, client_cert_flow("com.other"))
    aliases = [SAP_ALIAS, "client_key", "nowhere"]
    with CaptureQueriesContext(connection) as queries:
        counts = services.usage_counts(tenant, aliases)
    assert len(queries) == 2
    assert counts == {
        SAP_ALIAS: services.UsageCounts(6, 2),
        "client_key": services.UsageCounts(1, 2),
        "nowhere": services.UsageCounts(0, 2),
    }
    for alias in aliases:
        report = where_used(tenant, alias).counts
        assert (report.uses, report.may_use) == counts[alias]

    entries = services.annotate_usage_counts(KeystoreEntry.objects.order_by("alias"))
    with CaptureQueriesContext(connection) as queries:
        annotated = {e.alias: (e.where_used_uses, e.where_used_may_use) for e in entries}
    assert len(queries) == 1
    assert annotated == {SAP_ALIAS: (6, 2), "client_key": (1, 2)}


def test_alias_in_script_is_reported_in_the_tenant_spelling(tenant, key_pair_entry):
    script = 'def x = "CLIENT_KEY"  // a literal naming a real alias in other case'
    data = flow_zip("com.example.script", iflw(), parameters={}, scripts={"x.groovy": script})
    import_all(tenant, data)
    (usage,) = KeyUsageRecord.objects.all()
    assert (usage.alias, usage.usage, usage.component_type) == (
        "client_key",
        "named in script",
        "Script",
    )


def test_import_records_the_flow_and_an_audit_event(tenant, admin_user):
    (result,) = import_all(tenant, orders_flow(), actor=admin_user)
    assert (result.ok, result.bundle_id, result.usage_count, result.replaced) == (
        True,
        ORDERS,
        4,
        False,
    )
    assert result.message == f"bundle {ORDERS}, 4 usages"
    flow = IntegrationFlow.objects.get()
    assert (flow.tenant, flow.bundle_name, flow.version, flow.flow_names) == (
        tenant,
        "Orders to ERP",
        "1.0.0",
        [ORDERS],
    )
    assert (flow.imported_by, flow.imported_by_label) == (admin_user, admin_user.username)
    event = AuditEvent.objects.exclude(action="role").get()
    assert event.actor == admin_user and event.detail.startswith("flow imported: Orders to ERP")


def test_reimport_replaces_the_usages(tenant, sap_entry):
    import_all(tenant, orders_flow())
    assert where_used(tenant, SAP_ALIAS).counts.uses == 2
    (again,) = import_all(tenant, orders_flow(alias_parameter="other_alias", with_crm=False))
    assert again.replaced and again.message.endswith("(replaced)")
    assert IntegrationFlow.objects.count() == 1
    assert KeyUsageRecord.objects.count() == 3
    report = where_used(tenant, SAP_ALIAS)
    assert report.counts == services.WhereUsedCounts(uses=1, may_use=1, backends=0, flows=1)
    assert where_used(tenant, "other_alias").counts.uses == 1
    # The same file twice stays one copy.
    import_all(tenant, orders_flow(), orders_flow())
    assert KeyUsageRecord.objects.count() == 4
    assert AuditEvent.objects.filter(detail__startswith="flow imported").count() == 4


def test_flows_of_other_tenants_are_not_seen(tenant, other_tenant, sap_entry):
    import_all(other_tenant, orders_flow())
    assert where_used(tenant, SAP_ALIAS).is_empty
    import_all(tenant, signer_only_flow())
    assert where_used(tenant, SAP_ALIAS).counts.flows == 1
    assert where_used(other_tenant, SAP_ALIAS).counts.flows == 1


# --- bad input --------------------------------------------------------------------------------


def test_each_bad_file_gets_its_message_and_the_others_are_imported(tenant, monkeypatch):
    good_one = signer_only_flow("com.example.good1")
    good_two = signer_only_flow("com.example.good2")
    big = flow_zip("com.example.big", iflw(), extra_members={"big.bin": os.urandom(60_000)})
    many = zip_bytes(
        {
            "META-INF/MANIFEST.MF": manifest("com.example.many"),
            FLOW_DIR + "f.iflw": iflw(),
            **{f"junk/{i}.txt": b"" for i in range(20)},
        }
    )
    bomb = flow_zip("com.example.bomb", iflw(), extra_members={"pad.bin": b"\0" * 3_000_000})
    dtd = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]>'
        b'<bpmn2:definitions xmlns:bpmn2="b">&e;</bpmn2:definitions>'
    )
    missing_parameter = flow_zip(
        "com.example.param",
        iflw(step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "{{undefined_alias}}"})),
        parameters={"other": "x"},
    )
    monkeypatch.setattr(parser, "MAX_ZIP_BYTES", 50_000)
    monkeypatch.setattr(parser, "MAX_ZIP_ENTRIES", 10)
    monkeypatch.setattr(parser, "MAX_UNCOMPRESSED_BYTES", 1_000_000)
    files = [
        ("good1.zip", good_one),
        ("notes.txt", b"this is not a zip file"),
        ("noflow.zip", zip_bytes({"META-INF/MANIFEST.MF": manifest("x"), "a.txt": b"a"})),
        ("malformed.zip", flow_zip("com.example.bad", b"<bpmn2:definitions><unclosed>")),
        ("dtd.zip", flow_zip("com.example.dtd", dtd)),
        ("big.zip", big),
        ("many.zip", many),
        ("bomb.zip", bomb),
        ("param.zip", missing_parameter),
        ("good2.zip", good_two),
    ]
    assert len(big) > 50_000 and len(bomb) < 50_000
    results = import_flow_exports(tenant, files)
    messages = {result.name: result.message for result in results if not result.ok}
    assert [result.name for result in results if result.ok] == ["good1.zip", "good2.zip"]
    expected = {
        "notes.txt": "not a ZIP file",
        "noflow.zip": "no integration flow in the ZIP",
        "malformed.zip": "malformed XML",
        "dtd.zip": "DTD or entity declarations is refused",
        "big.zip": "ZIP file too large",
        "many.zip": "too many entries",
        "bomb.zip": "expands too far",
        "param.zip": "{{undefined_alias}} used by 'Sign' is not defined in parameters.prop",
    }
    assert messages.keys() == expected.keys()
    for name, text in expected.items():
        assert text in messages[name], (name, messages[name])
        assert "\n" not in messages[name]
    assert set(IntegrationFlow.objects.values_list("bundle_id", flat=True)) == {
        "com.example.good1",
        "com.example.good2",
    }
    assert KeyUsageRecord.objects.count() == 2
    assert AuditEvent.objects.count() == 2


def test_a_failing_reimport_keeps_the_earlier_import(tenant, sap_entry):
    import_all(tenant, orders_flow())
    before = IntegrationFlow.objects.get()
    usages = set(KeyUsageRecord.objects.values_list("pk", flat=True))
    broken = flow_zip(
        ORDERS,
        iflw(step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "{{gone}}"})),
        parameters={},
        bundle_name="Orders v2",
    )
    (result,) = import_flow_exports(tenant, [("orders-v2.zip", broken)])
    assert not result.ok and "{{gone}}" in result.message
    after = IntegrationFlow.objects.get()
    assert (after.bundle_name, after.imported_at) == ("Orders to ERP", before.imported_at)
    assert set(KeyUsageRecord.objects.values_list("pk", flat=True)) == usages


def test_a_storage_failure_stores_nothing_for_that_file(tenant, sap_entry, monkeypatch):
    import_all(tenant, orders_flow())
    usages = set(KeyUsageRecord.objects.values_list("pk", flat=True))
    orders_id = IntegrationFlow.objects.get(bundle_id=ORDERS).pk
    real_bulk_create = KeyUsageRecord.objects.bulk_create
    real_execute_many = services._execute_many

    def bulk_create(records, **kwargs):  # the file-by-file path
        if records and records[0].flow.bundle_id == ORDERS:
            raise DatabaseError("disk full")
        return real_bulk_create(records, **kwargs)

    def execute_many(model, statement, rows):  # the group's path
        if model is KeyUsageRecord and any(row[1] == orders_id for row in rows):
            raise DatabaseError("disk full")
        return real_execute_many(model, statement, rows)

    monkeypatch.setattr(KeyUsageRecord.objects, "bulk_create", bulk_create)
    monkeypatch.setattr(services, "_execute_many", execute_many)
    changed = orders_flow(alias_parameter="other", with_crm=False)
    results = import_flow_exports(tenant, [("a.zip", changed), ("b.zip", signer_only_flow())])
    assert [result.ok for result in results] == [False, True]
    assert "could not be stored (disk full)" in results[0].message
    assert set(KeyUsageRecord.objects.filter(flow__bundle_id=ORDERS).values_list("pk", flat=True))
    assert usages <= set(KeyUsageRecord.objects.values_list("pk", flat=True))
    assert IntegrationFlow.objects.get(bundle_id=ORDERS).usages.count() == 4
    assert AuditEvent.objects.filter(detail__contains=ORDERS).count() == 1


def test_import_needs_deploy_on_the_tenant(tenant, users):
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(services.WhereUsedError, match="not allowed"):
            import_flow_exports(tenant, [("a.zip", orders_flow())], actor=users[role])
    assert not IntegrationFlow.objects.exists()
    import_all(tenant, orders_flow(), actor=users["Administrator"])
    assert IntegrationFlow.objects.count() == 1


def test_sources_are_read_lazily_one_at_a_time(tenant, tmp_path):
    paths = []
    for number in range(3):
        path = tmp_path / f"flow{number}.zip"
        path.write_bytes(signer_only_flow(f"com.example.f{number}"))
        paths.append(path)
    read_before_next = []

    def sources():
        for path in paths:
            with path.open("rb") as handle:
                yield path.name, handle
                # The importer asks for the next file: this one must have been read already.
                read_before_next.append(handle.tell() > 0)

    results = import_flow_exports(tenant, sources())
    assert [result.ok for result in results] == [True, True, True]
    assert read_before_next == [True, True, True]
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == 3


@pytest.mark.django_db(transaction=True)
def test_an_import_holds_no_transaction_while_it_reads(tenant, monkeypatch):
    """Parsing takes most of an import's time: it must not keep other writers waiting."""
    in_transaction = []
    real = services._read_one

    def spy(*args, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "_read_one", spy)
    monkeypatch.setattr(services, "STORE_GROUP", 2)
    import_flow_exports(
        tenant, [(f"{n}.zip", signer_only_flow(f"com.example.f{n}")) for n in range(5)]
    )
    assert in_transaction == [False] * 5
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == 5


# --- performance ------------------------------------------------------------------------------


def _import_queries(tenant, numbers) -> int:
    with CaptureQueriesContext(connection) as queries:
        results = import_flow_exports(
            tenant, [(f"{n}.zip", client_cert_flow(f"com.example.f{n}")) for n in numbers]
        )
    assert all(result.ok for result in results)
    return len(queries)


def test_a_group_of_files_is_written_with_the_same_statements_as_one_file(tenant, sap_entry):
    few, many = _import_queries(tenant, range(2)), _import_queries(tenant, range(2, 40))
    assert few == many
    # Re-importing replaces the flows' usages, still with a fixed number of statements.
    assert _import_queries(tenant, range(2)) == _import_queries(tenant, range(2, 40))
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == 40
    assert KeyUsageRecord.objects.filter(tenant=tenant).count() == 40
    assert (
        AuditEvent.objects.filter(tenant=tenant, detail__startswith="flow imported").count() == 80
    )
    assert AuditEvent.objects.filter(detail__contains="replaced the earlier import").count() == 40


def _stored(tenant, actor) -> list[list[tuple]]:
    """Every stored column of the tenant's flows, usages and import audit records, ids and times
    left out; the actor checked and then left out too (each tenant has its own)."""
    flows = list(
        IntegrationFlow.objects.filter(tenant=tenant)
        .order_by("bundle_id")
        .values_list(
            "bundle_id", "bundle_name", "version", "flow_names", "warnings", "restart_required",
            "restart_reason", "imported_by", "imported_by_label",
        )
    )  # fmt: skip
    usages = list(
        KeyUsageRecord.objects.filter(tenant=tenant)
        .order_by("flow__bundle_id", "component_id", "usage", "alias")
        .values_list(
            "flow__bundle_id", "component_id", "component_name", "component_type", "direction",
            "usage", "certainty", "alias", "property_key", "system", "address", "outbound",
        )
    )  # fmt: skip
    audit = sorted(
        AuditEvent.objects.filter(tenant=tenant, detail__startswith="flow imported").values_list(
            "alias", "action", "old_fingerprint", "new_fingerprint", "detail", "actor",
            "actor_label",
        )
    )  # fmt: skip
    label = services.actor_label(actor)
    assert {row[-2:] for row in flows + audit} == {(actor.pk, label)}
    return [[row[:-2] for row in flows], usages, [row[:-2] for row in audit]]


def test_the_group_and_the_file_by_file_path_store_the_same_rows(
    tenant, other_tenant, users, monkeypatch
):
    files = [
        ("a.zip", orders_flow()),
        ("b.zip", signer_only_flow()),
        ("c.zip", client_cert_flow("com.example.c", alias="")),
    ]
    import_flow_exports(tenant, files, actor=users["Administrator"])
    import_flow_exports(tenant, files[:1], actor=users["Administrator"])  # re-imported

    def fail(*args):
        raise DatabaseError("the group path is off")

    monkeypatch.setattr(services, "_execute_many", fail)
    import_flow_exports(other_tenant, files, actor=users["other_admin"])
    import_flow_exports(other_tenant, files[:1], actor=users["other_admin"])
    group = _stored(tenant, users["Administrator"])
    one_by_one = _stored(other_tenant, users["other_admin"])
    assert len(group[0]) == 3 and len(group[1]) > 3 and len(group[2]) == 4
    assert group == one_by_one


def test_a_reimport_keeps_the_restart_mark(tenant, sap_entry):
    import_all(tenant, orders_flow())
    services.mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    import_all(tenant, orders_flow(with_crm=False))
    flow = IntegrationFlow.objects.get(bundle_id=ORDERS)
    assert flow.restart_required and flow.restart_reason == "activated"
    assert flow.usages.count() == 3


def test_the_group_writes_name_every_column():
    """The group inserts plain tuples without the model's defaults: a new column must be named."""
    for model, statement in (
        (IntegrationFlow, services._INSERT_FLOW),
        (KeyUsageRecord, services._INSERT_USAGE),
        (AuditEvent, services._INSERT_AUDIT),
    ):
        fields = {field.name for field in model._meta.concrete_fields if not field.primary_key}
        assert sorted(statement.columns) == sorted(fields), model


@pytest.mark.parametrize("count", [5, 50])
def test_where_used_query_count_does_not_grow_with_flows(tenant, sap_entry, count):
    import_flow_exports(
        tenant, [(f"{n}.zip", client_cert_flow(f"com.example.f{n}")) for n in range(count)]
    )
    with CaptureQueriesContext(connection) as queries:
        report = where_used(tenant, SAP_ALIAS)
    assert report.counts.flows == count
    assert len(queries) == 1


# --- CSV --------------------------------------------------------------------------------------


def test_csv_has_one_line_per_usage_and_defuses_formulas(tenant, sap_entry):
    landscape(tenant)
    import_all(
        tenant,
        flow_zip(
            "com.example.formula",
            iflw(
                channel(
                    "MF",
                    "=HYPERLINK(1)",
                    props={**CERT_AUTH, "privateKeyAlias": SAP_ALIAS},
                    receiver="+ERP",
                )
            ),
            parameters={},
        ),
    )
    report = where_used(tenant, SAP_ALIAS)
    content = services.where_used_csv(report)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert len(rows) == 9
    assert {row["section"] for row in rows} == {"uses", "may use"}
    erp = next(row for row in rows if row["component name"] == "To ERP")
    assert erp == {
        "section": "uses",
        "backend system": "ERP_PROD",
        "backend address": "https://erp.example:443/sap/bc/srt/orders",
        "flow": "Orders to ERP",
        "bundle id": ORDERS,
        "flow restart required": "no",
        "component id": "MessageFlow_1",
        "component name": "To ERP",
        "component type": "SOAP",
        "direction": "Receiver",
        "usage": "client-certificate authentication",
        "alias": SAP_ALIAS,
        "property": "privateKeyAlias",
        "outbound connection": "yes",
    }
    crm = next(row for row in rows if row["component name"] == "To CRM")
    assert (crm["section"], crm["alias"]) == ("may use", "any key")
    formula = next(row for row in rows if "HYPERLINK" in row["component name"])
    assert formula["component name"] == "'=HYPERLINK(1)"
    assert formula["backend system"] == "'+ERP"


# --- renewal pack -----------------------------------------------------------------------------


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    cert.public_key().verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    return True


def _blocks(text: str, heading: str, next_heading: str) -> str:
    return text.split(heading, 1)[1].split(next_heading, 1)[0]


def test_renewal_pack_holds_the_files_and_instructions_per_backend(tenant, sap_entry, sap_pki):
    landscape(tenant)
    download = services.renewal_pack(sap_entry, where_used(tenant, SAP_ALIAS))
    assert download.filename == f"{SAP_ALIAS}_renewal_pack.zip"
    assert download.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert set(files) == {
        f"{SAP_ALIAS}.cer",
        f"{SAP_ALIAS}_rootCA.cer",
        f"{SAP_ALIAS}.p7b",
        f"{SAP_ALIAS}.pem",
        "INSTRUCTIONS.txt",
    }
    leaf = x509.load_der_x509_certificate(files[f"{SAP_ALIAS}.cer"])
    root = x509.load_der_x509_certificate(files[f"{SAP_ALIAS}_rootCA.cer"])
    assert leaf == sap_pki.leaf and root == sap_pki.root and _self_signed(root)
    # PKCS#7 keeps certificates in a SET: the whole chain, in any order.
    assert set(crypto.load_p7b(files[f"{SAP_ALIAS}.p7b"])) == set(sap_pki.chain)
    assert x509.load_pem_x509_certificates(files[f"{SAP_ALIAS}.pem"]) == sap_pki.chain

    text = files["INSTRUCTIONS.txt"].decode("utf-8")
    assert sap_entry.fingerprint_sha256 in text
    assert sap_entry.root_fingerprint_sha256 in text and sap_entry.root_subject in text
    assert f"until {sap_entry.valid_until:%Y-%m-%d %H:%M} UTC" in text
    uses = _blocks(text, "Backends that use this alias (3)", "Backends that may use it")
    may_use = _blocks(text, "Backends that may use it (1)", "Restart after activation")
    erp = _blocks(uses, "ERP_PROD (https://erp.example:443/sap/bc/srt/orders)", "\n2. ")
    assert "into the backend's trust store" in erp and "Map the client certificate" in erp
    partner = _blocks(uses, "PARTNER (https://partner.example/ws)", "\n3. ")
    assert f"signing certificate {SAP_ALIAS}.cer" in partner and "trust store" not in partner
    odata = _blocks(uses, "S4_ODATA", "\n4. ")
    assert "Map the client certificate" in odata
    steps = uses.split("\n4. ", 1)[1]
    assert "Sign order" in steps and "Sign.groovy" in steps and "Check how the component" in steps
    assert "CRM (https://crm.example/api)" in may_use and "Map the client certificate" in may_use
    assert "Import the encryption certificate" in may_use  # the decryptor
    restart = text.split("Restart after activation", 1)[1]
    assert "Orders to ERP" in restart and "Partner exchange" in restart
    for absent in ("AS2_PARTNER", "LEGACY", "S4 ("):
        assert absent not in text


def test_renewal_pack_of_the_pending_key(tenant, sap_entry, pending):
    import_all(tenant, client_cert_flow("com.example.erp"))
    download = services.renewal_pack(pending, where_used(tenant, SAP_ALIAS))
    assert download.filename == f"{SAP_ALIAS}_new_key_renewal_pack.zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        leaf = x509.load_der_x509_certificate(archive.read(f"{SAP_ALIAS}.cer"))
        text = archive.read("INSTRUCTIONS.txt").decode()
    assert leaf == pending.certificate() and leaf != sap_entry.certificate()
    assert "the new SAP key waiting for activation" in text
    assert pending.fingerprint_sha256 in text and "ERP_PROD" in text
    with pytest.raises(services.WhereUsedError):
        services.renewal_pack(pending, where_used(tenant, "another_alias"))


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
    count = services.mark_restart_required(
        tenant, SAP_ALIAS, reason=f"{SAP_ALIAS} activated", at=at
    )
    assert count == 3
    assert marked() == {ORDERS, "com.example.odata", "com.example.anykey"}
    assert marked() == marked(tenant)  # the other tenant's flow is not touched
    flow = IntegrationFlow.objects.get(tenant=tenant, bundle_id=ORDERS)
    assert (flow.restart_required_since, flow.restart_reason) == (at, f"{SAP_ALIAS} activated")
    assert where_used(tenant, SAP_ALIAS).restart_required_flows[0].bundle_id == "com.example.anykey"


def test_restart_clears_the_mark_and_records_who_and_when(tenant, restart_landscape, users):
    admin = users["Administrator"]
    services.mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    flows = IntegrationFlow.objects.filter(bundle_id__in=[ORDERS, "com.example.odata"])
    results = services.restart_flows(flows.order_by("tenant__slug", "bundle_id"), actor=admin)
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
        (result,) = services.restart_flows(anykey, actor=users[role])
        assert not result.ok and "not allowed" in result.message
    assert marked() == {"com.example.anykey"}


calls = []


def restart_in_runtime(flow):
    calls.append(flow.bundle_id)


def failing_restart(flow):
    raise RuntimeError("runtime unreachable\n(connection refused)")


def activation_during_restart(flow):
    services.mark_restart_required(
        flow.tenant, SAP_ALIAS, reason="activated again", at=timezone.now() + timedelta(seconds=1)
    )


def test_restart_calls_the_configured_callable(tenant, restart_landscape, settings):
    services.mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    flows = IntegrationFlow.objects.for_tenant(tenant).restart_required()

    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.failing_restart"
    results = services.restart_flows(flows)
    assert [result.ok for result in results] == [False, False, False]
    assert "restart failed: runtime unreachable (connection refused)" in results[0].message
    assert marked() == {ORDERS, "com.example.odata", "com.example.anykey"}
    assert not IntegrationFlow.objects.filter(last_restart_at__isnull=False).exists()

    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.restart_in_runtime"
    calls.clear()
    results = services.restart_flows(flows.filter(bundle_id=ORDERS))
    assert [result.ok for result in results] == [True] and calls == [ORDERS]
    assert ORDERS not in marked()
    assert (
        "; recorded only"
        not in AuditEvent.objects.filter(detail__startswith="flow restarted")[0].detail
    )

    # An activation while the runtime restarts: the flow may hold the old key, the mark stays.
    settings.WHEREUSED_RESTART_CALLABLE = f"{__name__}.activation_during_restart"
    (result,) = services.restart_flows(flows.filter(bundle_id="com.example.odata"))
    assert result.ok
    flow = IntegrationFlow.objects.get(tenant=tenant, bundle_id="com.example.odata")
    assert flow.restart_required and flow.restart_reason == "activated again"
    assert flow.last_restart_at is not None


def test_a_bad_restart_setting_is_reported(settings, tenant):
    from django.core.exceptions import ImproperlyConfigured

    settings.WHEREUSED_RESTART_CALLABLE = "no.such.module.restart"
    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        services.restart_flows([])


# --- removing flows from the index ------------------------------------------------------------


def test_remove_flows_takes_them_and_their_usages_out_of_where_used(
    tenant, other_tenant, sap_entry, users
):
    landscape(tenant)
    import_all(other_tenant, orders_flow())  # the same bundle in another tenant stays
    before = where_used(tenant, SAP_ALIAS).counts
    orders = IntegrationFlow.objects.get(tenant=tenant, bundle_id=ORDERS)
    orders_usages = orders.usages.count()
    admin = users["Administrator"]
    results = services.remove_flows(tenant, [ORDERS, ORDERS], actor=admin)  # named twice
    assert [(result.bundle_id, result.ok) for result in results] == [(ORDERS, True)]
    assert f"removed with its {orders_usages} key usages" in results[0].message
    assert not IntegrationFlow.objects.filter(tenant=tenant, bundle_id=ORDERS).exists()
    assert not KeyUsageRecord.objects.filter(flow_id=orders.pk).exists()
    assert IntegrationFlow.objects.filter(tenant=other_tenant, bundle_id=ORDERS).exists()
    after = where_used(tenant, SAP_ALIAS).counts
    assert after.flows == before.flows - 1
    assert ORDERS not in services.where_used_csv(where_used(tenant, SAP_ALIAS)).decode()
    audit = AuditEvent.objects.get(tenant=tenant, detail__startswith="flow removed")
    assert audit.actor == admin
    assert audit.detail == (
        f"flow removed from the where-used index: Orders to ERP ({ORDERS}), "
        f"{orders_usages} key usages"
    )
    # Importing the export again brings it back.
    import_all(tenant, orders_flow())
    assert where_used(tenant, SAP_ALIAS).counts == before


def test_removing_what_is_not_in_the_index_changes_nothing(tenant, sap_entry):
    import_all(tenant, orders_flow(), signer_only_flow())
    services.remove_flows(tenant, [ORDERS])
    flows = set(IntegrationFlow.objects.values_list("pk", flat=True))
    events = AuditEvent.objects.count()
    # A second click, and a bundle never imported: reported, nothing changes.
    results = services.remove_flows(tenant, [ORDERS, "com.example.never"])
    assert [result.ok for result in results] == [False, False]
    assert "not in the where-used index" in results[0].message
    assert "nothing changed" in results[1].message
    assert set(IntegrationFlow.objects.values_list("pk", flat=True)) == flows
    assert AuditEvent.objects.count() == events


def test_remove_flows_needs_deploy_on_the_tenant(tenant, sap_entry, users):
    import_all(tenant, orders_flow())
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(services.WhereUsedError, match="not allowed to remove"):
            services.remove_flows(tenant, [ORDERS], actor=users[role])
    assert IntegrationFlow.objects.filter(bundle_id=ORDERS).exists()
    assert not AuditEvent.objects.filter(detail__startswith="flow removed").exists()
