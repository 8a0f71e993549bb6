"""Merging a keystore writes its rows and audit records in a few statements, completes a key
pair's short chain from the file's own trusted certificates before storing it, and still refuses
each entry on its own: one whose alias another session added meanwhile is rejected alone."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keystore import merging, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from tests import pki as pki_factory

PASSWORD = "merge-pw-1"


def key_pairs(pki, count: int, *, leaf_only: bool = False) -> list[pki_factory.Entry]:
    entries: list[pki_factory.Entry] = []
    for number in range(count):
        key = pki_factory.make_key("ec", 256)
        leaf = pki_factory.make_cert(f"Merged {number}", key, pki.inter, pki.inter_key)
        chain = [leaf] if leaf_only else [leaf, pki.inter, pki.root]
        entries.append((f"merged_{number}", key, chain))
    return entries


def test_a_leaf_only_key_is_stored_with_the_chain_from_the_files_certificates(tenant, pki):
    [(alias, key, chain)] = key_pairs(pki, 1, leaf_only=True)
    data = pki_factory.make_jks(
        [(alias, key, chain), ("issuing_ca", None, [pki.inter]), ("root_ca", None, [pki.root])],
        PASSWORD,
    )

    summary = merging.import_keystore(tenant, data, PASSWORD)

    entry = KeystoreEntry.objects.get(tenant=tenant, alias=alias)
    assert entry.certificate_chain() == [chain[0], pki.inter, pki.root] and entry.root_known
    assert entry.open_private_key().private_numbers() == key.private_numbers()
    # issuing_ca got its root from the file as well; the root needs nothing.
    assert sorted(summary.chains_completed) == ["issuing_ca", alias]
    actions = list(
        AuditEvent.objects.filter(alias=alias).order_by("at", "pk").values_list("action", flat=True)
    )
    assert actions == [AuditAction.ADD, AuditAction.CHAIN]


def test_the_writes_do_not_grow_with_the_entries(tenant, other_tenant, pki):
    def queries(target, count: int) -> int:
        data = pki_factory.make_jks(key_pairs(pki, count), PASSWORD)
        with CaptureQueriesContext(connection) as captured:
            summary = merging.import_keystore(target, data, PASSWORD)
        assert len(summary.added) == count
        assert AuditEvent.objects.filter(tenant=target, action=AuditAction.ADD).count() == count
        return len(captured)

    few, many = queries(tenant, 5), queries(other_tenant, 60)
    # SQLite takes at most 999 parameters a statement: 60 rows need a second INSERT or two.
    assert many <= few + 4, (few, many)


def test_an_alias_added_meanwhile_is_rejected_alone(tenant, pki, monkeypatch):
    entries = key_pairs(pki, 3)
    data = pki_factory.make_jks(entries, PASSWORD)
    # Another session adds merged_1 after the merge looked for existing aliases.
    racer_key = pki_factory.make_key("ec", 256)
    racer = pki_factory.make_cert("Racer", racer_key, pki.inter, pki.inter_key)
    looked_up = merging._locked_namesakes

    def lookup_then_race(*args, **kwargs):
        found = looked_up(*args, **kwargs)
        services.import_key_pair(
            tenant,
            "MERGED_1",
            pki_factory.make_pkcs12_single("r", racer_key, [racer, pki.inter, pki.root], "pw"),
            "pw",
        )
        return found

    monkeypatch.setattr(merging, "_locked_namesakes", lookup_then_race)

    summary = merging.import_keystore(tenant, data, PASSWORD)

    assert [outcome.alias for outcome in summary.added] == ["merged_0", "merged_2"]
    [rejected] = summary.rejected
    assert rejected.alias == "merged_1" and "exists already" in rejected.reason
    stored = dict(KeystoreEntry.objects.filter(tenant=tenant).values_list("alias", "subject_cn"))
    assert stored == {"merged_0": "Merged 0", "MERGED_1": "Racer", "merged_2": "Merged 2"}
    assert not AuditEvent.objects.filter(alias="merged_1").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_merge_over_existing_aliases(tenant, pki, overwrite):
    first = key_pairs(pki, 2)
    merging.import_keystore(tenant, pki_factory.make_jks(first, PASSWORD), PASSWORD)
    before = dict(KeystoreEntry.objects.values_list("alias", "fingerprint_sha256"))
    again = key_pairs(pki, 3)

    summary = merging.import_keystore(
        tenant, pki_factory.make_jks(again, PASSWORD), PASSWORD, overwrite=overwrite
    )

    after = dict(KeystoreEntry.objects.values_list("alias", "fingerprint_sha256"))
    assert [outcome.alias for outcome in summary.added] == ["merged_2"]
    if overwrite:
        assert [outcome.alias for outcome in summary.overwritten] == ["merged_0", "merged_1"]
        assert all(after[alias] != before[alias] for alias in before)
        assert set(KeystoreEntry.objects.values_list("version", flat=True)) == {1, 2}
    else:
        assert [outcome.reason for outcome in summary.rejected] == [
            "An entry with alias 'merged_0' exists already. Choose overwrite to replace it.",
            "An entry with alias 'merged_1' exists already. Choose overwrite to replace it.",
        ]
        assert all(after[alias] == before[alias] for alias in before)
