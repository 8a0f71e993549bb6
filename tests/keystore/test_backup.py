"""Backing up a whole tenant keystore into one PKCS#12 file, and restoring it with the keystore
upload: read back by our reader, by cryptography, openssl and keytool; the role matrix."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import call_command
from django.core.management.base import CommandError
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc5652, rfc5958, rfc8018

from keystore import crypto, merging, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.keystore.test_admin import form_errors, state, url

PASSWORD = "backup-pw-1"
BACKUP = url("keystoreentry_backup")


@pytest.fixture
def keystore(tenant, key_pair_entry, cert_entry, sap_entry):
    """A tenant key pair (3-level chain), a trusted root and an SAP-owned key pair."""
    services.create_key_pair(tenant, "ec_signer", "CN=signer.example.com", key_type="ec-256")
    return tenant


def test_backup_holds_every_entry_with_its_key_and_chain(keystore, users):
    admin = users["Administrator"]
    download = services.backup_keystore(keystore, PASSWORD, actor=admin)
    assert download.filename.startswith(f"{keystore.slug}-keystore-")
    assert download.filename.endswith(".p12")
    items = {item.alias: item for item in crypto.load_pkcs12(download.content, PASSWORD)}
    entries = {entry.alias: entry for entry in KeystoreEntry.objects.filter(tenant=keystore)}
    assert (
        set(items)
        == set(entries)
        == {
            "client_key",
            "ec_signer",
            "partner_root",
            "sap_cloudintegrationcertificate",
        }
    )
    for alias, entry in entries.items():
        item = items[alias]
        assert item.chain == entry.certificate_chain(), alias
        if entry.has_private_key:
            assert crypto.private_key_to_der(item.private_key) == crypto.private_key_to_der(
                entry.open_private_key()
            ), alias
        else:
            assert item.private_key is None, alias
    # cryptography checks the MAC (a wrong password is refused) and reads the first key.
    assert pkcs12.load_pkcs12(download.content, PASSWORD.encode()).key is not None
    with pytest.raises(crypto.CryptoError, match="Wrong password"):
        crypto.load_pkcs12(download.content, "another-pw")
    audit = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert audit.actor == admin
    assert audit.detail == "keystore backup: 3 key pairs, 1 certificates"


@pytest.mark.skipif(pki_factory.OPENSSL is None, reason="openssl is not installed")
def test_openssl_and_keytool_read_the_backup(keystore, tmp_path):
    path = tmp_path / "backup.p12"
    path.write_bytes(services.backup_keystore(keystore, PASSWORD).content)
    info = subprocess.run(
        [pki_factory.OPENSSL, "pkcs12", "-in", str(path), "-passin", f"pass:{PASSWORD}"]
        + ["-info", "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert info.returncode == 0, info.stderr  # the MAC verifies
    assert "AES-256-CBC" in info.stderr
    keytool = subprocess.run(
        ["keytool", "-list", "-keystore", str(path), "-storetype", "PKCS12"]
        + ["-storepass", PASSWORD],
        capture_output=True,
        text=True,
        check=False,
    )
    if keytool.returncode == 127:
        pytest.skip("keytool is not installed")
    assert keytool.returncode == 0, keytool.stdout + keytool.stderr
    listing = keytool.stdout
    assert "Your keystore contains 4 entries" in listing
    assert "client_key," in listing and "partner_root, " in listing
    assert listing.count("PrivateKeyEntry") == 3 and listing.count("trustedCertEntry") == 1


def test_restore_brings_the_tenant_entries_back(keystore, other_tenant):
    before = {
        entry.alias: entry.fingerprint_sha256
        for entry in KeystoreEntry.objects.filter(tenant=keystore)
    }
    backup = services.backup_keystore(keystore, PASSWORD).content
    # A lost tenant key pair and a changed certificate: the upload with overwrite restores both.
    KeystoreEntry.objects.get(tenant=keystore, alias="ec_signer").delete()
    services.delete_entry(KeystoreEntry.objects.get(tenant=keystore, alias="partner_root"))
    summary = merging.import_keystore(keystore, backup, PASSWORD, overwrite=True)
    results = {outcome.alias: outcome.result for outcome in summary.outcomes}
    assert results["ec_signer"] == "added" and results["partner_root"] == "added"
    assert results["client_key"] == "overwritten"
    # SAP-owned keys come back only from SAP.
    assert results["sap_cloudintegrationcertificate"] == "rejected"
    after = {
        entry.alias: entry.fingerprint_sha256
        for entry in KeystoreEntry.objects.filter(tenant=keystore)
    }
    assert after == before


def test_backup_refusals_change_nothing(keystore, other_tenant, users):
    events = AuditEvent.objects.count()
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(services.KeystoreError, match="not allowed"):
            services.backup_keystore(keystore, PASSWORD, actor=users[role])
    with pytest.raises(services.KeystoreError, match="at least 8 characters"):
        services.backup_keystore(keystore, "short")
    with pytest.raises(services.KeystoreError, match="empty: nothing to back up"):
        services.backup_keystore(other_tenant, PASSWORD)
    assert AuditEvent.objects.count() == events


def test_backup_page_role_matrix_and_form(keystore, users):
    client = client_for(users["Administrator"])
    assert BACKUP.encode() in client.get(url("keystoreentry_changelist")).content
    assert client.get(BACKUP).status_code == 200
    before = state()
    mismatch = client.post(
        BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": "other-pw-2"}
    )
    assert "The two passwords differ." in form_errors(mismatch)
    assert state() == before
    response = client.post(
        BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs12"
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert len(crypto.load_pkcs12(content, PASSWORD)) == 4
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        other = client_for(users[role])
        posted = other.post(
            BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": PASSWORD}
        )
        assert posted.status_code == 403, role
        assert posted.get("Content-Type") != "application/x-pkcs12"
        if role in ("ReadOnly", "IntegrationDeveloper"):
            listing = other.get(url("keystoreentry_changelist")).content
            assert BACKUP.encode() not in listing
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT).count() == 1


def test_backup_command(keystore, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_PW", PASSWORD)
    target = tmp_path / "tenant.p12"
    out = io.StringIO()
    call_command(
        "backup_keystore", "--tenant", keystore.slug, "--password-env", "BACKUP_PW",
        "-o", str(target), stdout=out,
    )  # fmt: skip
    assert out.getvalue().startswith(f"Wrote {target}")
    assert len(crypto.load_pkcs12(target.read_bytes(), PASSWORD)) == 4
    with pytest.raises(CommandError, match="NO_SUCH_PW is not set or empty"):
        call_command(
            "backup_keystore", "--tenant", keystore.slug, "--password-env", "NO_SUCH_PW",
            "-o", str(tmp_path / "x.p12"),
        )  # fmt: skip
    assert not (tmp_path / "x.p12").exists()


# -- a backup of many key pairs stays restorable under the key-derivation caps ----------------

MANY = 300  # at PKCS12_KDF_ROUNDS for everything, more than 236 would exceed MAX_KDF_WORK
MANY_ROUNDS = 75_000  # 95% of MAX_KDF_WORK over 300 keys, the certificates' safe and the MAC


@pytest.fixture(scope="module")
def many_key_pairs() -> list[crypto.KeystoreItem]:
    """300 EC P-256 key pairs issued by one CA, and the CA as a trusted certificate."""
    ca_key = pki_factory.make_key("ec")
    ca = pki_factory.make_cert("Backup CA", ca_key, ca=True)
    items = []
    for number in range(MANY):
        key = pki_factory.make_key("ec", fresh=True)
        leaf = pki_factory.make_cert(f"Pair {number}", key, ca, ca_key)
        items.append(crypto.KeystoreItem(f"pair_{number:03}", key, [leaf, ca]))
    items.append(crypto.KeystoreItem("backup_ca", None, [ca]))
    return items


@pytest.fixture(scope="module")
def big_backup(many_key_pairs) -> bytes:
    return crypto.to_pkcs12_keystore(many_key_pairs, PASSWORD)


def iteration_counts(data: bytes) -> dict[str, list[int]]:
    """The iteration counts a PKCS#12 file asks for, read from its structure."""
    mac_data, _, contents = crypto._pfx_parts(data)
    counts: dict[str, list[int]] = {"mac": [int(mac_data["iterations"])], "safe": [], "key": []}

    def pbkdf2_iterations(algorithm) -> int:
        params, _ = der_decoder.decode(
            bytes(algorithm["parameters"]), asn1Spec=rfc8018.PBES2_params()
        )
        kdf, _ = der_decoder.decode(
            bytes(params["keyDerivationFunc"]["parameters"]), asn1Spec=rfc8018.PBKDF2_params()
        )
        return int(kdf["iterationCount"])

    for content_info in contents:
        bags = crypto._plain_bags(content_info)
        if bags is None:
            encrypted, _ = der_decoder.decode(
                bytes(content_info["content"]), asn1Spec=rfc5652.EncryptedData()
            )
            algorithm = encrypted["encryptedContentInfo"]["contentEncryptionAlgorithm"]
            counts["safe"].append(pbkdf2_iterations(algorithm))
            continue
        for bag, _ in bags:
            info, _ = der_decoder.decode(
                bytes(bag["bagValue"]), asn1Spec=rfc5958.EncryptedPrivateKeyInfo()
            )
            counts["key"].append(pbkdf2_iterations(info["encryptionAlgorithm"]))
    return counts


def test_a_backup_of_300_key_pairs_is_restored_within_the_caps(
    many_key_pairs, big_backup, monkeypatch
):
    spent: list[int] = []
    real_spend = crypto._KdfBudget.spend

    def spend(budget, cost):
        spent.append(cost)
        real_spend(budget, cost)

    monkeypatch.setattr(crypto._KdfBudget, "spend", spend)

    read = {item.alias: item for item in crypto.load_keystore(big_backup, PASSWORD)}

    # the rounds that fit, as the reader prices them: what it spent, within 95% of the cap
    assert iteration_counts(big_backup) == {
        "mac": [MANY_ROUNDS],
        "safe": [MANY_ROUNDS],
        "key": [MANY_ROUNDS] * MANY,
    }
    assert len(spent) == MANY + 2
    assert sum(spent) == crypto._backup_kdf_cost(MANY_ROUNDS, MANY) == 22_800_000
    assert sum(spent) <= 0.95 * crypto.MAX_KDF_WORK
    assert crypto._backup_kdf_cost(crypto.PKCS12_KDF_ROUNDS, MANY) > crypto.MAX_KDF_WORK
    assert len(big_backup) < crypto.MAX_KEYSTORE_BYTES
    assert set(read) == {item.alias for item in many_key_pairs}
    for item in many_key_pairs:
        restored = read[item.alias]
        assert (restored.chain, restored.problem) == (item.chain, ""), item.alias
        if item.private_key is None:
            assert restored.private_key is None, item.alias
        else:
            assert crypto.private_key_to_der(restored.private_key) == crypto.private_key_to_der(
                item.private_key
            ), item.alias


@pytest.mark.skipif(pki_factory.OPENSSL is None, reason="openssl is not installed")
def test_openssl_sees_the_mac_take_the_rounds_of_the_keys(big_backup, tmp_path):
    path = tmp_path / "big.p12"
    path.write_bytes(big_backup)

    info = subprocess.run(
        [pki_factory.OPENSSL, "pkcs12", "-in", str(path), "-passin", f"pass:{PASSWORD}"]
        + ["-info", "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert info.returncode == 0, info.stderr
    report = info.stdout + info.stderr
    assert f"MAC: sha256, Iteration {MANY_ROUNDS}\n" in report
    assert (
        report.count(f"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration {MANY_ROUNDS},")
        == MANY
    )
    assert set(re.findall(r"Iteration (\d+)", report)) == {str(MANY_ROUNDS)}


@pytest.mark.skipif(pki_factory.KEYTOOL is None, reason="keytool is not installed")
def test_keytool_reads_a_backup_of_300_key_pairs(big_backup, tmp_path):
    path = tmp_path / "big.p12"
    path.write_bytes(big_backup)

    listing = subprocess.run(
        [pki_factory.KEYTOOL, "-list", "-keystore", str(path), "-storetype", "PKCS12"]
        + ["-storepass", PASSWORD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert f"Your keystore contains {MANY + 1} entries" in listing.stdout
    assert listing.stdout.count("PrivateKeyEntry") == MANY
    assert listing.stdout.count("trustedCertEntry") == 1


def test_a_small_backup_keeps_the_full_rounds(many_key_pairs):
    counts = iteration_counts(crypto.to_pkcs12_keystore(many_key_pairs[-3:], PASSWORD))

    rounds = crypto.PKCS12_KDF_ROUNDS
    assert counts == {"mac": [rounds], "safe": [rounds], "key": [rounds, rounds]}


def test_backup_rounds_shrink_with_the_key_pairs_down_to_keytools_default():
    rounds = {pairs: crypto._backup_rounds(pairs) for pairs in (0, 224, 225, 300, 2000, 2276)}

    assert rounds == {
        0: 100_000,
        224: 100_000,
        225: 99_000,
        300: 75_000,
        2000: 11_000,
        2276: 10_000,
    }
    for pairs, each in rounds.items():
        assert crypto._backup_kdf_cost(each, pairs) <= 0.95 * crypto.MAX_KDF_WORK, pairs
    # keytool's own defaults for 2,000 key pairs, the size the caps were chosen for
    assert crypto._backup_kdf_cost(crypto.MIN_BACKUP_KDF_ROUNDS, 2000) == 20_040_000


def test_a_keystore_too_large_to_restore_is_refused_before_anything_is_written(
    many_key_pairs, monkeypatch
):
    pair = many_key_pairs[0]
    items = [crypto.KeystoreItem(f"pair_{n}", pair.private_key, pair.chain) for n in range(2277)]
    monkeypatch.setattr(crypto.pkcs12, "serialize_key_and_certificates", None)

    with pytest.raises(crypto.CryptoError) as refused:
        crypto.to_pkcs12_keystore(items, PASSWORD)

    assert str(refused.value) == (
        "The keystore has 2,277 key pairs; a backup can hold at most 2,276, so that restoring "
        "it stays within the key-derivation limit for one file (24,000,000 PBKDF2-equivalent "
        "iterations)."
    )
