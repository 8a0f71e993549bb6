"""A keystore entry that cannot be taken (here a DSA key made by keytool) is rejected on its own,
with its alias and reason, and the rest of the keystore is merged; an upload or SAP key import
of one key pair refuses such a file with the same reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore import merging, services
from keystore.models import AuditEvent, KeystoreEntry
from renewals.activation import RenewalError, import_sap_key
from tests import pki as pki_factory

pytestmark = [
    pytest.mark.skipif(pki_factory.KEYTOOL is None, reason="keytool is not installed"),
    # keytool before JDK 21 writes a NULL parameter into DSA signature algorithms
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

PASSWORD = "store-pw-1"
DSA_REASON = "The key 'legacy_dsa' is a DSA key; DSA keys are not supported."


def add_dsa_key(store: Path, store_type: str, alias: str = "legacy_dsa") -> None:
    pki_factory.run_keytool(
        "-genkeypair", "-alias", alias, "-keyalg", "DSA", "-dname", f"CN={alias}",
        "-validity", "30", "-storetype", store_type, "-keystore", str(store),
        "-storepass", PASSWORD, "-keypass", PASSWORD,
    )  # fmt: skip


@pytest.fixture
def eight_and_a_dsa_key(tmp_path) -> tuple[bytes, list[str]]:
    """A JKS of eight RSA and EC key pairs (written by pyjks) to which keytool adds a DSA key."""
    pki = pki_factory.make_pki("Merge")
    entries: list[pki_factory.Entry] = []
    for number in range(8):
        kind, size = ("rsa", 2048) if number % 2 else ("ec", 256)
        key = pki_factory.make_key(kind, size)
        leaf = pki_factory.make_cert(f"Pair {number}", key, pki.inter, pki.inter_key)
        entries.append((f"pair_{number}", key, [leaf, pki.inter, pki.root]))
    store = tmp_path / "store.jks"
    store.write_bytes(pki_factory.make_jks(entries, PASSWORD))
    add_dsa_key(store, "JKS")
    return store.read_bytes(), [alias for alias, _, _ in entries]


def test_a_dsa_key_among_eight_is_rejected_alone(tenant, eight_and_a_dsa_key):
    data, aliases = eight_and_a_dsa_key

    summary = merging.import_keystore(tenant, data, PASSWORD)

    assert sorted(outcome.alias for outcome in summary.added) == aliases
    [rejected] = summary.rejected
    assert (rejected.alias, rejected.reason) == ("legacy_dsa", DSA_REASON)
    stored = KeystoreEntry.objects.filter(tenant=tenant)
    assert sorted(stored.values_list("alias", flat=True)) == aliases
    assert all(entry.has_private_key for entry in stored)


def test_a_single_dsa_key_pair_is_refused_with_its_reason(tenant, sap_entry, tmp_path):
    store = tmp_path / "dsa.p12"
    add_dsa_key(store, "PKCS12")
    entries, events = KeystoreEntry.objects.count(), AuditEvent.objects.count()

    with pytest.raises(services.KeystoreError) as refused:
        services.import_key_pair(tenant, "my_dsa", store.read_bytes(), PASSWORD)
    assert str(refused.value) == DSA_REASON

    sap_store = tmp_path / "sap.p12"
    add_dsa_key(sap_store, "PKCS12", alias=sap_entry.alias)
    with pytest.raises(RenewalError, match=f"The key '{sap_entry.alias}' is a DSA key"):
        import_sap_key(tenant, sap_entry.alias, sap_store.read_bytes(), PASSWORD)
    assert (KeystoreEntry.objects.count(), AuditEvent.objects.count()) == (entries, events)
