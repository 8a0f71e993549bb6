"""Tests of keystore.pkcs12_export: exports and backups that openssl, keytool and our
own reader (within its caps) read."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc7292

from keystore import crypto
from keystore.crypto import CryptoError, kdf
from tests import pki
from tests.keystore.crypto.helpers import PASSWORD, needs_keytool, needs_openssl, openssl

# --------------------------------------------------------------------------- PKCS#12 export


def test_pkcs12_export_parses_back_with_cryptography(chain_a):
    data = crypto.to_pkcs12("client_cert", chain_a.leaf_key, chain_a.chain, PASSWORD)

    loaded = pkcs12.load_pkcs12(data, PASSWORD.encode())

    assert loaded.key is not None
    assert crypto.private_key_matches(loaded.key, chain_a.leaf)
    assert loaded.cert is not None
    assert loaded.cert.certificate == chain_a.leaf
    assert loaded.cert.friendly_name == b"client_cert"
    assert [extra.certificate for extra in loaded.additional_certs] == chain_a.chain[1:]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")


def test_pkcs12_export_parses_back_with_our_reader(chain_a):
    data = crypto.to_pkcs12("client_cert", chain_a.leaf_key, chain_a.chain, PASSWORD)

    [item] = crypto.load_keystore(data, PASSWORD)

    assert item.alias == "client_cert"
    assert item.chain == chain_a.chain
    assert item.private_key is not None
    assert crypto.private_key_matches(item.private_key, chain_a.leaf)


def _exports(chain_a: pki.Pki) -> dict[str, bytes]:
    """One key pair (export) and a keystore of a key pair and a trusted root (backup)."""
    return {
        "export": crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD),
        "backup": crypto.to_pkcs12_keystore(
            [
                crypto.KeystoreItem("client", chain_a.leaf_key, chain_a.chain),
                crypto.KeystoreItem("partner_root", None, [chain_a.root]),
            ],
            PASSWORD,
        ),
    }


@needs_openssl
@pytest.mark.parametrize("kind", ["export", "backup"])
def test_openssl_accepts_the_pkcs12_export(kind, chain_a, tmp_path):
    path = tmp_path / f"{kind}.p12"
    path.write_bytes(_exports(chain_a)[kind])

    result = openssl("pkcs12", "-info", "-noout", "-in", str(path), "-passin", f"pass:{PASSWORD}")
    wrong = openssl("pkcs12", "-info", "-noout", "-in", str(path), "-passin", "pass:nope")

    assert result.returncode == 0, result.stderr
    report = (result.stderr + result.stdout).decode()
    assert "AES-256-CBC" in report
    assert "hmacWithSHA256" in report
    # Guessing the password through the MAC costs as much as through the keys.
    assert f"MAC: sha256, Iteration {crypto.PKCS12_KDF_ROUNDS}" in report
    assert f"PBKDF2, AES-256-CBC, Iteration {crypto.PKCS12_KDF_ROUNDS}," in report
    assert "Iteration 2048" not in report
    assert wrong.returncode != 0


@needs_keytool
@pytest.mark.parametrize("kind", ["export", "backup"])
def test_keytool_accepts_the_pkcs12_export(kind, chain_a, tmp_path):
    path = tmp_path / f"{kind}.p12"
    path.write_bytes(_exports(chain_a)[kind])

    pki.run_keytool("-list", "-keystore", str(path), "-storetype", "PKCS12", "-storepass", PASSWORD)
    with pytest.raises(RuntimeError, match="password was incorrect"):
        pki.run_keytool(
            "-list", "-keystore", str(path), "-storetype", "PKCS12", "-storepass", "nope-123"
        )


def test_a_backup_costs_one_key_derivation_per_key_pair(chain_a, chain_b, monkeypatch):
    """All certificates share one encrypted safe, as in keytool's files, so that restoring a
    backup of many entries stays within MAX_KDF_WORK: a trusted certificate costs nothing."""
    items = [
        crypto.KeystoreItem("alpha", chain_a.leaf_key, chain_a.chain),
        crypto.KeystoreItem("beta", chain_b.leaf_key, chain_b.chain),
        *(crypto.KeystoreItem(f"partner_{n}", None, [chain_b.root]) for n in range(20)),
    ]
    data = crypto.to_pkcs12_keystore(items, PASSWORD)
    derivations: list[str] = []
    real_pbkdf2, real_kdf, real_loader = (
        kdf.PBKDF2HMAC,
        kdf.pkcs12_kdf,
        serialization.load_der_private_key,
    )

    def pbkdf2(*args, **kwargs):
        derivations.append("safe")
        return real_pbkdf2(*args, **kwargs)

    def pkcs12_kdf(*args, **kwargs):
        derivations.append("mac")
        return real_kdf(*args, **kwargs)

    def loader(der, password, **kwargs):
        if password is not None:
            derivations.append("key")
        return real_loader(der, password, **kwargs)

    monkeypatch.setattr(kdf, "PBKDF2HMAC", pbkdf2)
    monkeypatch.setattr(kdf, "pkcs12_kdf", pkcs12_kdf)
    monkeypatch.setattr(serialization, "load_der_private_key", loader)

    read = crypto.load_keystore(data, PASSWORD)

    assert sorted(derivations) == ["key", "key", "mac", "safe"]
    assert [(item.alias, len(item.chain)) for item in read[:2]] == [("alpha", 3), ("beta", 3)]
    assert sorted(item.alias for item in read[2:]) == sorted(f"partner_{n}" for n in range(20))


def test_the_export_mac_takes_the_export_rounds(chain_a):
    for kind, data in _exports(chain_a).items():
        pfx, _ = der_decoder.decode(data, asn1Spec=rfc7292.PFX())

        assert int(pfx["macData"]["iterations"]) == crypto.PKCS12_KDF_ROUNDS, kind
        assert crypto.load_pkcs12(data, PASSWORD), kind
        with pytest.raises(CryptoError, match="Wrong password"):
            crypto.load_pkcs12(data, PASSWORD + "x")


def test_pkcs12_export_refuses_an_empty_password_and_a_foreign_key(chain_a):
    with pytest.raises(CryptoError, match="password is required"):
        crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, "")
    with pytest.raises(CryptoError, match="does not match"):
        crypto.to_pkcs12("client", chain_a.inter_key, chain_a.chain, PASSWORD)
