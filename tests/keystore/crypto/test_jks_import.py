"""Tests of keystore.crypto.jks_import: JKS and JCEKS files written by pyjks and keytool."""

from __future__ import annotations

from pathlib import Path

import jks
import pytest
from cryptography import x509

from keystore import crypto
from keystore.crypto import CryptoError
from tests import pki
from tests.keystore.crypto.helpers import PASSWORD, corruptions, needs_keytool

# --------------------------------------------------------------------------- JKS / JCEKS


def test_jks_written_by_pyjks(chain_a, chain_b):
    data = pki.make_jks(
        [
            ("alpha", chain_a.leaf_key, chain_a.chain),
            ("beta_ec", *_ec_pair(chain_b)),
            ("trusted_root", None, [chain_b.root]),
        ],
        PASSWORD,
    )

    items = crypto.load_keystore(data, PASSWORD)

    assert [item.alias for item in items] == ["alpha", "beta_ec", "trusted_root"]
    assert items[0].chain == chain_a.chain
    assert items[0].private_key is not None
    assert crypto.private_key_matches(items[0].private_key, chain_a.leaf)
    assert items[1].private_key is not None
    assert crypto.private_key_matches(items[1].private_key, items[1].chain[0])
    assert items[2].private_key is None
    assert items[2].chain == [chain_b.root]


def _ec_pair(p: pki.Pki) -> tuple[pki.AnyPrivateKey, list[x509.Certificate]]:
    key = pki.make_key("ec")
    return key, [pki.make_cert("Beta EC", key, p.inter, p.inter_key), p.inter, p.root]


def test_wrong_password_for_jks(chain_a):
    data = pki.make_jks([("alpha", chain_a.leaf_key, chain_a.chain)], PASSWORD)

    with pytest.raises(CryptoError, match="Wrong password or damaged Java keystore") as caught:
        crypto.load_keystore(data, "guessed-wrong")

    assert "guessed-wrong" not in str(caught.value)


def test_jks_key_with_its_own_password_is_reported(chain_a, chain_b):
    entry = jks.PrivateKeyEntry.new(
        "alpha", [pki.der(chain_a.leaf)], pki.pkcs8_der(chain_a.leaf_key)
    )
    entry.encrypt("key-password")
    other = jks.PrivateKeyEntry.new(
        "beta", [pki.der(chain_b.leaf)], pki.pkcs8_der(chain_b.leaf_key)
    )
    data = jks.KeyStore.new("jks", [entry, other]).saves(PASSWORD)

    with pytest.raises(CryptoError, match="'alpha' is protected by a password other than"):
        crypto.load_jks(data, PASSWORD)
    alpha, beta = crypto.load_keystore(data, PASSWORD)
    assert (alpha.alias, alpha.private_key) == ("alpha", None)
    assert alpha.problem.startswith("The key 'alpha' is protected by a password other than")
    assert (beta.alias, beta.problem, beta.chain) == ("beta", "", [chain_b.leaf])


def test_damaged_jks_files_raise_only_crypto_errors(chain_a):
    data = pki.make_jks([("alpha", chain_a.leaf_key, chain_a.chain)], PASSWORD)

    for damaged in corruptions(data)[1:]:
        with pytest.raises(CryptoError):
            crypto.load_jks(damaged, PASSWORD)
    with pytest.raises(CryptoError, match="Not a JKS"):
        crypto.load_jks(b"PK\x03\x04 a zip file", PASSWORD)


@pytest.fixture(scope="module")
def store_with_a_dsa_key(tmp_path_factory, chain_a, chain_b) -> tuple[Path, list[str]]:
    """Two key pairs written by pyjks, and a DSA key pair keytool adds to the same JKS."""
    if pki.KEYTOOL is None:
        pytest.skip("keytool is not installed")
    store = tmp_path_factory.mktemp("dsa") / "store.jks"
    entries: list[pki.Entry] = [
        ("alpha", chain_a.leaf_key, chain_a.chain),
        ("beta_ec", *_ec_pair(chain_b)),
    ]
    store.write_bytes(pki.make_jks(entries, PASSWORD))
    pki.run_keytool(
        "-genkeypair", "-alias", "legacy_dsa", "-keyalg", "DSA", "-dname", "CN=Legacy DSA",
        "-validity", "30", "-storetype", "JKS", "-keystore", str(store),
        "-storepass", PASSWORD, "-keypass", PASSWORD,
    )  # fmt: skip
    return store, ["alpha", "beta_ec"]


@pytest.mark.parametrize("store_type", ["JKS", "PKCS12"])
# keytool before JDK 21 writes a NULL parameter into DSA signature algorithms
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_a_dsa_key_is_an_entry_with_a_problem(store_type, store_with_a_dsa_key, tmp_path):
    store, others = store_with_a_dsa_key
    if store_type == "PKCS12":
        converted = tmp_path / "store.p12"
        pki.run_keytool(
            "-importkeystore", "-noprompt", "-srckeystore", str(store), "-srcstoretype", "JKS",
            "-srcstorepass", PASSWORD, "-destkeystore", str(converted),
            "-deststoretype", "PKCS12", "-deststorepass", PASSWORD,
        )  # fmt: skip
        store = converted
    data = store.read_bytes()

    items = {item.alias: item for item in crypto.load_keystore(data, PASSWORD)}

    assert sorted(items) == sorted([*others, "legacy_dsa"])
    dsa_item = items["legacy_dsa"]
    assert (dsa_item.private_key, dsa_item.chain) == (None, [])
    assert dsa_item.problem == "The key 'legacy_dsa' is a DSA key; DSA keys are not supported."
    for alias in others:
        assert items[alias].private_key is not None and not items[alias].problem
    # Read as one key pair (a key pair upload, an SAP key), the DSA key refuses the file.
    reader = crypto.load_jks if store_type == "JKS" else crypto.load_pkcs12
    with pytest.raises(CryptoError, match="'legacy_dsa' is a DSA key"):
        reader(data, PASSWORD)


@needs_keytool
@pytest.mark.parametrize("store_type", ["JKS", "JCEKS"])
def test_keystore_generated_by_keytool(store_type, tmp_path):
    data = pki.make_keytool_store(tmp_path, store_type, PASSWORD, alias="backend", cn="Backend")

    [item] = crypto.load_keystore(data, PASSWORD)

    assert data[:4] == (crypto.JKS_MAGIC if store_type == "JKS" else crypto.JCEKS_MAGIC)
    assert item.alias == "backend"
    assert item.private_key is not None
    assert crypto.private_key_matches(item.private_key, item.chain[0])
    facts = crypto.certificate_facts(item.chain[0])
    assert facts.subject == "CN=Backend,O=SAP SE"
    assert facts.self_signed
    with pytest.raises(CryptoError, match="Wrong password"):
        crypto.load_keystore(data, PASSWORD + "x")
