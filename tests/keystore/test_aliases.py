"""Aliases that look like others: case-only twins are one alias (as in Java keystores and Cloud
Integration), and look-alike letters cannot spell a reserved SAP prefix; on every way an alias
arrives, and in the database."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from keystore import merging, services
from keystore.aliases import skeleton
from keystore.crypto import to_der
from keystore.models import AuditEvent, KeystoreEntry, Owner
from keystore.services import KeystoreError
from tests import pki as pki_factory

LOOK_ALIKES = [
    "ѕap_cloudintegrationcertificate",  # Cyrillic dze
    "sаp_partner",  # Cyrillic a
    "ｓａｐ＿partner",  # full-width
    "ꜱap_partner",  # Latin small capital S
    "hcіcertificate",  # Cyrillic i
    "SAP_partner",
    "HciCertificate2",
]


def state() -> list[tuple[str, str, int]]:
    return sorted(KeystoreEntry.objects.values_list("alias", "fingerprint_sha256", "version"))


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("ѕap_cloudintegrationcertificate", "sap_cloudintegrationcertificate"),
        ("ｓａｐ＿key", "sap_key"),
        ("Partner_Root_CA", "partner_root_ca"),
        ("müller_cert", "müller_cert"),  # a real letter stays itself
    ],
)
def test_skeleton(alias, expected):
    assert skeleton(alias) == expected


@pytest.mark.parametrize("alias", LOOK_ALIKES)
def test_look_alikes_of_reserved_prefixes_are_refused_everywhere(
    db, tenant, pki, key_pair_entry, alias
):
    before = state()
    with pytest.raises(KeystoreError, match="reserved for SAP"):
        services.import_certificate(tenant, alias, to_der(pki.root))
    with pytest.raises(KeystoreError, match="reserved for SAP"):
        services.import_key_pair(
            tenant,
            alias,
            pki_factory.make_pkcs12_single("k", pki.leaf_key, pki.chain, "secret-pw"),
            "secret-pw",
        )
    with pytest.raises(KeystoreError, match="reserved for SAP"):
        services.create_key_pair(tenant, alias, "CN=look alike")
    with pytest.raises(KeystoreError, match="reserved for SAP"):
        services.rename_entry(key_pair_entry, alias)
    assert state() == before


def test_a_merged_look_alike_is_rejected_with_its_reason(db, tenant, pki, tmp_path):
    data = pki_factory.make_pkcs12(
        [("ѕap_fake", pki.leaf_key, pki.chain), ("partner", None, [pki.root])], "secret-pw"
    )
    summary = merging.import_keystore(tenant, data, "secret-pw")
    assert [o.alias for o in summary.added] == ["partner"]
    [rejected] = summary.rejected
    assert rejected.alias == "ѕap_fake" and "reserved for SAP" in rejected.reason


def test_a_real_sap_key_still_arrives_through_the_sap_path(db, tenant, sap_pki):
    entry = services.create_sap_entry(
        tenant, "sap_cloudintegrationcertificate", sap_pki.leaf_key, sap_pki.chain
    )
    assert entry.owner == Owner.SAP


def test_a_case_only_twin_is_the_same_alias(db, tenant, pki):
    services.import_certificate(tenant, "Partner_Root_CA", to_der(pki.root))
    before = state()
    with pytest.raises(KeystoreError, match="'Partner_Root_CA' \\(case ignored\\) exists already"):
        services.import_certificate(tenant, "partner_root_ca", to_der(pki.inter))
    with pytest.raises(KeystoreError, match="exists already"):
        services.create_key_pair(tenant, "PARTNER_ROOT_CA", "CN=twin")
    assert state() == before
    # Overwrite replaces the entry under its stored spelling.
    entry = services.import_certificate(
        tenant, "partner_root_ca", to_der(pki.inter), overwrite=True
    )
    assert entry.alias == "Partner_Root_CA" and entry.version == 2
    assert KeystoreEntry.objects.count() == 1


def test_a_merge_meeting_a_case_only_twin(db, tenant, pki):
    services.import_certificate(tenant, "Partner_Root_CA", to_der(pki.root))
    # JKS stores aliases in lower case: a merge meets the twin as in real life.
    data = pki_factory.make_jks([("partner_root_ca", None, [pki.inter])], "secret-pw")
    summary = merging.import_keystore(tenant, data, "secret-pw")
    [rejected] = summary.rejected
    assert "'Partner_Root_CA' (case ignored) exists already" in rejected.reason
    assert "Choose overwrite" in rejected.reason
    assert KeystoreEntry.objects.get().certificate() == pki.root
    summary = merging.import_keystore(tenant, data, "secret-pw", overwrite=True)
    assert [o.alias for o in summary.overwritten] == ["partner_root_ca"]
    entry = KeystoreEntry.objects.get()
    assert entry.alias == "Partner_Root_CA" and entry.certificate() == pki.inter


def test_case_twins_in_one_file_keep_the_first(db, tenant, pki):
    from keystore import crypto

    data = crypto.to_pkcs12_keystore(
        [
            crypto.KeystoreItem("Partner", None, [pki.root]),
            crypto.KeystoreItem("partner", None, [pki.inter]),
        ],
        "a-Long-export-Passw0rd",
    )
    summary = merging.import_keystore(tenant, data, "a-Long-export-Passw0rd")
    assert [o.alias for o in summary.added] == ["Partner"]
    [rejected] = summary.rejected
    assert rejected.alias == "partner" and "appears twice in the file" in rejected.reason
    assert KeystoreEntry.objects.get().certificate() == pki.root


def test_rename_ignores_case_of_other_entries_but_may_change_its_own(db, tenant, pki):
    root = services.import_certificate(tenant, "partner_root", to_der(pki.root))
    inter = services.import_certificate(tenant, "partner_inter", to_der(pki.inter))
    with pytest.raises(KeystoreError, match="'partner_root' exists already"):
        services.rename_entry(inter, "Partner_Root")
    renamed = services.rename_entry(root, "Partner_Root")
    assert renamed.alias == "Partner_Root"
    assert AuditEvent.objects.filter(alias="Partner_Root", action="rename").exists()


def test_the_database_refuses_case_only_twins(db, tenant, pki):
    services.import_certificate(tenant, "partner_root", to_der(pki.root))
    twin = KeystoreEntry(tenant=tenant, alias="PARTNER_ROOT", owner=Owner.TENANT)
    twin.set_material([pki.inter], None)
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()


@pytest.mark.django_db(transaction=True)
def test_the_migration_names_existing_twins_and_changes_nothing(tenant, pki):
    executor = MigrationExecutor(connection)
    before_case_rule = [("keystore", "0003_site_audit_and_root_known")]
    latest = executor.loader.graph.leaf_nodes("keystore")
    executor.migrate(before_case_rule)
    try:
        old_apps = executor.loader.project_state(before_case_rule).apps
        Entry = old_apps.get_model("keystore", "KeystoreEntry")
        for alias in ("partner_root_CA", "partner_root_ca", "other"):
            entry = KeystoreEntry(tenant=tenant, alias=alias, owner=Owner.TENANT)
            entry.set_material([pki.root], None)
            Entry.objects.create(
                **{
                    field.attname: getattr(entry, field.attname)
                    for field in Entry._meta.concrete_fields
                    if field.attname != "id"
                }
            )
        executor = MigrationExecutor(connection)
        with pytest.raises(Exception, match="differ only in case") as refused:
            executor.migrate(latest)
        assert "tenant tenant-a: 'partner_root_CA', 'partner_root_ca'" in str(refused.value)
        assert "'other'" not in str(refused.value)
        assert Entry.objects.count() == 3
        Entry.objects.filter(alias="partner_root_CA").delete()
    finally:
        # Every app's latest state: going back to keystore 0003 also unapplied the migrations
        # of other apps that came after it (the API clients, renewal plans, ...).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert KeystoreEntry.objects.count() == 2
