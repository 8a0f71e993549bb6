"""The where-used import: what a file leaves in the index, bad input, how the groups are
stored, and removing flows from the index.

Flows are built in memory with tests/renewals/whereused/flows.py and always go through
import_flow_exports.
"""

from __future__ import annotations

import os

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from keystore.models import AuditEvent, KeystoreEntry
from keystore.services import actor_label
from renewals.whereused import importing, parser
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.importing import import_flow_exports, remove_flows
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from renewals.whereused.pack import where_used_csv
from renewals.whereused.report import (
    WhereUsedCounts,
    annotate_usage_counts,
    usage_counts,
    where_used,
)
from renewals.whereused.restart import mark_restart_required
from tests import pki as pki_factory
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import (
    FLOW_DIR,
    credential_script,
    flow_zip,
    iflw,
    keystore_script,
    mail_receiver_with_unset_parameter,
    manifest,
    script_step,
    step,
    zip_bytes,
)
from tests.renewals.whereused.flows import (
    ORDERS,
    client_cert_flow,
    import_all,
    landscape,
    orders_flow,
    signer_only_flow,
)

# --- import -----------------------------------------------------------------------------------


def test_a_key_pair_created_after_the_import_is_found_in_scripts(tenant, pki):
    """What a script passes to the keystore is stored as written and matched when where-used
    is asked (ignoring case, as the keystore does): no re-import once the key exists."""
    from keystore import services

    data = flow_zip(
        "com.example.script",
        iflw(script_step("CallActivity_1", "Sign payload", "sign.groovy")),
        parameters={},
        scripts={"sign.groovy": keystore_script("CLIENT_KEY", through="variable")},
    )
    import_all(tenant, data)
    (usage,) = KeyUsageRecord.objects.all()
    assert (usage.alias, usage.script_file) == (
        "CLIENT_KEY",
        "src/main/resources/script/sign.groovy",
    )
    assert not where_used(tenant, "client_key").is_empty  # asked before the key exists

    p12 = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "pw")
    entry = services.import_key_pair(tenant, "client_key", p12, "pw")
    report = where_used(tenant, entry.alias)
    (component,) = report.uses[0].flows[0].components
    assert (component.component_name, component.usage, component.script_file) == (
        "Sign payload",
        "named in script",
        "src/main/resources/script/sign.groovy",
    )
    assert report.counts.uses == 1
    assert usage_counts(tenant, [entry.alias])[entry.alias].uses == 1
    annotated = annotate_usage_counts(KeystoreEntry.objects.filter(pk=entry.pk)).get()
    assert annotated.where_used_uses == 1
    # Configured aliases still compare exactly; other tenants see nothing.
    assert where_used(tenant, "client_key_2").is_empty


def test_credential_names_in_scripts_never_match_a_key(tenant, pki):
    from keystore import services

    p12 = pki_factory.make_pkcs12_single("aws", pki.leaf_key, pki.chain, "pw")
    services.import_key_pair(tenant, "AWS_ACCESS_KEY", p12, "pw")
    data = flow_zip(
        "com.example.aws",
        iflw(script_step("CallActivity_1", "Call AWS", "aws.groovy")),
        parameters={},
        scripts={"aws.groovy": credential_script("AWS_ACCESS_KEY")},
    )
    import_all(tenant, data)
    assert KeyUsageRecord.objects.count() == 0
    assert where_used(tenant, "AWS_ACCESS_KEY").is_empty


def test_unset_parameters_are_kept_per_flow_and_change_nothing_else(tenant):
    data = flow_zip(
        "com.example.mail",
        iflw(
            mail_receiver_with_unset_parameter(),
            step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "{{signing alias}}"}),
        ),
        parameters={"unrelated": "x"},
    )
    (result,) = import_all(tenant, data)
    assert result.unresolved_parameters == ("From email address", "signing alias")
    flow = IntegrationFlow.objects.get()
    assert flow.unresolved_parameters == ["From email address", "signing alias"]
    (usage,) = KeyUsageRecord.objects.all()
    assert (usage.certainty, usage.alias, usage.reason) == (
        "may use",
        "",
        "alias from parameter {{signing alias}}, not set in the export",
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
    assert report.counts == WhereUsedCounts(uses=1, may_use=1, backends=0, flows=1)
    assert where_used(tenant, "other_alias").counts.uses == 1
    # The same file twice stays one copy.
    import_all(tenant, orders_flow(), orders_flow())
    assert KeyUsageRecord.objects.count() == 4
    assert AuditEvent.objects.filter(detail__startswith="flow imported").count() == 4


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
        b"<bpmn2:definitions><unclosed>",
        parameters={},
        bundle_name="Orders v2",
    )
    (result,) = import_flow_exports(tenant, [("orders-v2.zip", broken)])
    assert not result.ok and "malformed XML" in result.message
    after = IntegrationFlow.objects.get()
    assert (after.bundle_name, after.imported_at) == ("Orders to ERP", before.imported_at)
    assert set(KeyUsageRecord.objects.values_list("pk", flat=True)) == usages


def test_a_storage_failure_stores_nothing_for_that_file(tenant, sap_entry, monkeypatch):
    import_all(tenant, orders_flow())
    usages = set(KeyUsageRecord.objects.values_list("pk", flat=True))
    real_bulk_create = KeyUsageRecord.objects.bulk_create

    def bulk_create(records, **kwargs):  # the one write path: the group's, then file by file
        if records and records[0].flow.bundle_id == ORDERS:
            raise DatabaseError("disk full")
        return real_bulk_create(records, **kwargs)

    monkeypatch.setattr(KeyUsageRecord.objects, "bulk_create", bulk_create)
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
        with pytest.raises(WhereUsedError, match="not allowed"):
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
    real = importing._read_one

    def spy(*args, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return real(*args, **kwargs)

    monkeypatch.setattr(importing, "_read_one", spy)
    monkeypatch.setattr(importing, "STORE_GROUP", 2)
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
    label = actor_label(actor)
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

    real_write = importing._write

    def group_fails(tenant, actor, label, files):  # then each file is written on its own
        if len(files) > 1:
            raise DatabaseError("the group path is off")
        return real_write(tenant, actor, label, files)

    monkeypatch.setattr(importing, "_write", group_fails)
    import_flow_exports(other_tenant, files, actor=users["other_admin"])
    import_flow_exports(other_tenant, files[:1], actor=users["other_admin"])
    group = _stored(tenant, users["Administrator"])
    one_by_one = _stored(other_tenant, users["other_admin"])
    assert len(group[0]) == 3 and len(group[1]) > 3 and len(group[2]) == 4
    assert group == one_by_one


def test_a_reimport_keeps_the_restart_mark(tenant, sap_entry):
    import_all(tenant, orders_flow())
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    import_all(tenant, orders_flow(with_crm=False))
    flow = IntegrationFlow.objects.get(bundle_id=ORDERS)
    assert flow.restart_required and flow.restart_reason == "activated"
    assert flow.usages.count() == 3


def test_a_reimport_updates_every_column_the_import_writes():
    """A re-import is an upsert of the import's columns that keeps the restart marks: a new
    column of the flow must be named as one or the other."""
    restart_marks = {
        "restart_required",
        "restart_required_since",
        "restart_reason",
        "last_restart_at",
        "last_restart_by_label",
    }
    fields = {field.name for field in IntegrationFlow._meta.concrete_fields}
    written = fields - {"id", "tenant", "bundle_id"} - restart_marks
    assert sorted(written) == sorted(importing.IMPORT_FIELDS)


def test_usage_rows_are_made_in_the_models_column_order():
    """The import makes usage rows from positional values: the model's columns must not move."""
    columns = tuple(field.attname for field in KeyUsageRecord._meta.concrete_fields)
    assert columns == importing.USAGE_COLUMNS


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
    results = remove_flows(tenant, [ORDERS, ORDERS], actor=admin)  # named twice
    assert [(result.bundle_id, result.ok) for result in results] == [(ORDERS, True)]
    assert f"removed with its {orders_usages} key usages" in results[0].message
    assert not IntegrationFlow.objects.filter(tenant=tenant, bundle_id=ORDERS).exists()
    assert not KeyUsageRecord.objects.filter(flow_id=orders.pk).exists()
    assert IntegrationFlow.objects.filter(tenant=other_tenant, bundle_id=ORDERS).exists()
    after = where_used(tenant, SAP_ALIAS).counts
    assert after.flows == before.flows - 1
    assert ORDERS not in where_used_csv(where_used(tenant, SAP_ALIAS)).decode()
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
    remove_flows(tenant, [ORDERS])
    flows = set(IntegrationFlow.objects.values_list("pk", flat=True))
    events = AuditEvent.objects.count()
    # A second click, and a bundle never imported: reported, nothing changes.
    results = remove_flows(tenant, [ORDERS, "com.example.never"])
    assert [result.ok for result in results] == [False, False]
    assert "not in the where-used index" in results[0].message
    assert "nothing changed" in results[1].message
    assert set(IntegrationFlow.objects.values_list("pk", flat=True)) == flows
    assert AuditEvent.objects.count() == events


def test_remove_flows_needs_deploy_on_the_tenant(tenant, sap_entry, users):
    import_all(tenant, orders_flow())
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(WhereUsedError, match="not allowed to remove"):
            remove_flows(tenant, [ORDERS], actor=users[role])
    assert IntegrationFlow.objects.filter(bundle_id=ORDERS).exists()
    assert not AuditEvent.objects.filter(detail__startswith="flow removed").exists()
