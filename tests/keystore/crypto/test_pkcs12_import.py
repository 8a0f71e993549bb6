"""Tests of keystore.pkcs12_import with real files (cryptography, openssl, keytool):
every entry of a multi-key file, the schemes of every writer, the MAC, and the key-derivation caps
applied before anything is derived."""

from __future__ import annotations

import hashlib
import hmac
import os

import jks
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc7292, rfc8018

from keystore import crypto
from keystore.crypto import CryptoError, kdf
from tests import pki
from tests.keystore.crypto.helpers import (
    PASSWORD,
    corruptions,
    forbid_key_derivation,
    key_pem,
    needs_keytool,
    needs_openssl,
    openssl,
    write_pem,
)

# --------------------------------------------------------------------------- PKCS#12 import


@pytest.fixture(scope="module")
def multi_store(tmp_path_factory, chain_a, chain_b):
    """3 key pairs + 2 trusted certificates in one PKCS#12 file written by keytool."""
    if pki.KEYTOOL is None:
        pytest.skip("keytool is not installed")
    ec_key = pki.make_key("ec", 384)
    ec_cert = pki.make_cert("Gamma EC", ec_key, chain_b.inter, chain_b.inter_key)
    entries: list[pki.Entry] = [
        ("alpha_key", chain_a.leaf_key, chain_a.chain),
        ("beta_key", chain_b.leaf_key, chain_b.chain),
        ("gamma_ec", ec_key, [ec_cert, chain_b.inter, chain_b.root]),
        ("alpha_root", None, [chain_a.root]),
        ("partner_ca", None, [chain_b.inter]),
    ]
    data = pki.make_multi_pkcs12(tmp_path_factory.mktemp("multi"), entries, PASSWORD)
    return data, entries


def test_multi_key_pkcs12_yields_every_entry(multi_store):
    data, entries = multi_store

    items = {item.alias: item for item in crypto.load_keystore(data, PASSWORD)}

    assert sorted(items) == sorted(alias for alias, _, _ in entries)
    for alias, key, chain in entries:
        item = items[alias]
        assert item.chain == chain, alias
        if key is None:
            assert item.private_key is None
        else:
            assert item.private_key is not None
            assert crypto.private_key_matches(item.private_key, item.chain[0])
            assert crypto.private_key_to_der(item.private_key) == pki.pkcs8_der(key)
            crypto.verify_chain(item.chain)


def test_cryptography_alone_would_lose_keys(multi_store):
    """Why load_pkcs12 walks the file itself: cryptography returns a single key."""
    data, _ = multi_store

    loaded = pkcs12.load_pkcs12(data, PASSWORD.encode())

    assert loaded.key is not None
    assert len([item for item in crypto.load_pkcs12(data, PASSWORD) if item.private_key]) == 3


@needs_keytool
def test_make_pkcs12_helper_writes_key_pairs_and_trusted_certificates(chain_a):
    single = pki.make_pkcs12([("one", chain_a.leaf_key, chain_a.chain)], PASSWORD)
    mixed = pki.make_pkcs12(
        [("one", chain_a.leaf_key, chain_a.chain), ("trusted", None, [chain_a.root])], PASSWORD
    )

    assert [item.alias for item in crypto.load_pkcs12(single, PASSWORD)] == ["one"]
    assert [item.alias for item in crypto.load_pkcs12(mixed, PASSWORD)] == ["one", "trusted"]


def test_wrong_password_for_pkcs12(multi_store):
    data, _ = multi_store

    with pytest.raises(CryptoError, match="Wrong password or damaged PKCS#12 file") as caught:
        crypto.load_keystore(data, "not-the-password")

    assert "not-the-password" not in str(caught.value)
    with pytest.raises(CryptoError, match="Wrong password"):
        crypto.load_pkcs12(data, "")


def test_single_pkcs12_from_cryptography_without_a_friendly_name(chain_a):
    data = pkcs12.serialize_key_and_certificates(
        None,
        chain_a.leaf_key,
        chain_a.leaf,
        [chain_a.root, chain_a.inter],
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )

    [item] = crypto.load_pkcs12(data, PASSWORD)

    assert item.alias == ""
    assert item.chain == chain_a.chain


@needs_openssl
@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="openssl3-default-aes"),
        pytest.param(["-certpbe", "PBE-SHA1-3DES", "-keypbe", "PBE-SHA1-3DES"], id="sha1-3des"),
        pytest.param(["-certpbe", "DES-EDE3-CBC", "-keypbe", "AES-128-CBC"], id="pbes2-3des"),
        pytest.param(["-certpbe", "PBE-SHA1-2DES", "-macalg", "sha1"], id="sha1-2des"),
        pytest.param(["-legacy"], id="legacy-rc2-40"),
    ],
)
def test_pkcs12_written_by_openssl(options, chain_a, chain_b, tmp_path):
    key = write_pem(tmp_path / "key.pem", key_pem(chain_a.leaf_key))
    cert = write_pem(tmp_path / "cert.pem", pki.pem(chain_a.leaf))
    # a chain out of order plus a certificate that belongs to no chain
    extra = write_pem(tmp_path / "cas.pem", pki.pem(chain_a.root, chain_b.root, chain_a.inter))
    out = tmp_path / "openssl.p12"
    result = openssl(
        "pkcs12",
        "-export",
        "-in",
        cert,
        "-inkey",
        key,
        "-certfile",
        extra,
        "-name",
        "from openssl",
        "-out",
        str(out),
        "-passout",
        f"pass:{PASSWORD}",
        *options,
    )
    if result.returncode != 0:
        if options:
            pytest.skip(f"this openssl cannot write {options}: {result.stderr[-200:]!r}")
        raise AssertionError(result.stderr)

    items = crypto.load_pkcs12(out.read_bytes(), PASSWORD)

    assert [(item.alias, item.private_key is not None) for item in items] == [
        ("from openssl", True),
        ("", False),
    ]
    assert items[0].chain == chain_a.chain
    assert items[1].chain == [chain_b.root]
    assert items[0].private_key is not None
    assert crypto.private_key_to_der(items[0].private_key) == pki.pkcs8_der(chain_a.leaf_key)


@needs_openssl
@pytest.mark.parametrize("keypbe", ["AES-256-CBC", "PBE-SHA1-3DES"])
def test_our_own_key_decryption_when_cryptography_declines(keypbe, chain_a, tmp_path, monkeypatch):
    """For the PKCS#12 schemes our decryption takes over; for PBES2 cryptography's answer is
    final (a second attempt would derive the same key again), and the key is unreadable."""
    key = write_pem(tmp_path / "key.pem", key_pem(chain_a.leaf_key))
    cert = write_pem(tmp_path / "cert.pem", pki.pem(chain_a.leaf))
    out = tmp_path / "k.p12"
    result = openssl(
        "pkcs12",
        "-export",
        "-in",
        cert,
        "-inkey",
        key,
        "-name",
        "k",
        "-keypbe",
        keypbe,
        "-out",
        str(out),
        "-passout",
        f"pass:{PASSWORD}",
    )
    assert result.returncode == 0, result.stderr
    real_loader = serialization.load_der_private_key

    def plaintext_only(data, password, **kwargs):
        if password is not None:
            raise ValueError("pretend this scheme is unsupported")
        return real_loader(data, password, **kwargs)

    monkeypatch.setattr(serialization, "load_der_private_key", plaintext_only)

    if keypbe.startswith("AES"):
        with pytest.raises(CryptoError, match="password does not open it"):
            crypto.load_pkcs12(out.read_bytes(), PASSWORD)
        [item] = crypto.load_keystore(out.read_bytes(), PASSWORD)
        assert (item.alias, item.private_key, item.chain) == ("k", None, [])
        return
    [item] = crypto.load_pkcs12(out.read_bytes(), PASSWORD)

    assert item.private_key is not None
    assert crypto.private_key_matches(item.private_key, chain_a.leaf)


def test_pkcs12_kdf_matches_the_independent_pyjks_implementation():
    salt, iterations = b"\x01\x02\x03\x04\x05\x06\x07\x08", 2048
    for purpose, size in ((1, 24), (2, 8), (1, 5)):
        ours = kdf.pkcs12_kdf(
            PASSWORD.encode("utf-16-be") + b"\x00\x00", salt, iterations, purpose, size
        )
        theirs = jks.rfc7292.derive_key(hashlib.sha1, purpose, PASSWORD, salt, iterations, size)
        assert ours == theirs


def test_damaged_pkcs12_files_raise_only_crypto_errors(chain_a):
    data = crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD)

    for damaged in corruptions(data):
        with pytest.raises(CryptoError):
            crypto.load_pkcs12(damaged, PASSWORD)
        with pytest.raises(CryptoError):
            crypto.load_keystore(damaged, PASSWORD)


def test_a_derivation_over_the_cap_is_refused_before_any_key_is_derived(chain_a, monkeypatch):
    data = crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD)
    # The MAC's key is the dearest derivation of an export: 100,000 SHA-256 hashes in Python.
    mac_cost = crypto.PKCS12_KDF_ROUNDS * 3
    forbid_key_derivation(monkeypatch)
    monkeypatch.setattr(kdf, "MAX_KDF_ITERATIONS", mac_cost - 1)

    with pytest.raises(CryptoError) as refused:
        crypto.load_pkcs12(data, PASSWORD)

    assert str(refused.value) == (
        f"A key derivation in the file needs {mac_cost:,} PBKDF2-equivalent iterations; "
        f"the limit is {mac_cost - 1:,}."
    )


def test_the_total_work_of_a_file_is_capped_before_any_key_is_derived(chain_a, monkeypatch):
    data = crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD)
    # MAC (300,000), the certificates' safe and the key (100,000 PBKDF2-SHA256 each)
    total = 500_000
    forbid_key_derivation(monkeypatch)
    monkeypatch.setattr(kdf, "MAX_KDF_WORK", total - 1)

    with pytest.raises(CryptoError) as refused:
        crypto.load_keystore(data, PASSWORD)

    assert str(refused.value) == (
        f"The file needs more key-derivation work than allowed ({total:,} PBKDF2-equivalent "
        f"iterations in total; the limit is {total - 1:,})."
    )


@needs_keytool
def test_a_keystore_made_by_keytool_with_its_defaults_imports(tmp_path):
    store = tmp_path / "keytool.p12"
    for number in range(5):
        pki.run_keytool(
            "-genkeypair", "-alias", f"pair{number}", "-keyalg", "EC", "-groupname", "secp256r1",
            "-dname", f"CN=Pair {number},O=SAP SE", "-validity", "30", "-storetype", "PKCS12",
            "-keystore", str(store), "-storepass", PASSWORD,
        )  # fmt: skip
    data = store.read_bytes()

    items = crypto.load_keystore(data, PASSWORD)

    assert sorted(item.alias for item in items) == [f"pair{number}" for number in range(5)]
    assert all(item.private_key is not None and not item.problem for item in items)
    assert all(crypto.private_key_matches(item.private_key, item.chain[0]) for item in items)
    if pki.OPENSSL is not None:  # the defaults the caps were sized for
        report = openssl("pkcs12", "-info", "-noout", "-passin", f"pass:{PASSWORD}", stdin=data)
        text = (report.stdout + report.stderr).decode()
        assert "MAC: sha256, Iteration 10000" in text
        assert "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 10000" in text


@pytest.mark.parametrize("mac_hash", ["SHA1", "SHA256", "SHA384", "SHA512"])
def test_the_mac_is_checked_with_its_own_hash(mac_hash, chain_a):
    """SHA-384 and SHA-512 feed the PKCS#12 key derivation in 128-byte blocks, not 64."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(getattr(hashes, mac_hash)())
        .build("Pässwort-1".encode())
    )
    data = pkcs12.serialize_key_and_certificates(
        b"k", chain_a.leaf_key, chain_a.leaf, None, encryption
    )

    [item] = crypto.load_pkcs12(data, "Pässwort-1")

    assert item.alias == "k"
    with pytest.raises(CryptoError, match="Wrong password"):
        crypto.load_pkcs12(data, "Passwort-1")


def test_a_pbmac1_mac_is_read_like_openssl_reads_it(chain_a):
    """RFC 9579's MAC (PBKDF2 over the UTF-8 password, then HMAC), which OpenSSL 3.4 and later
    write on request; cryptography's own reader is the reference."""
    password = "Pässwort-1"
    data = pki.make_pkcs12_single("k", chain_a.leaf_key, chain_a.chain, password)
    pfx, _ = der_decoder.decode(data, asn1Spec=rfc7292.PFX())
    content = bytes(der_decoder.decode(bytes(pfx["authSafe"]["content"]))[0])
    salt = os.urandom(16)
    kdf = rfc8018.PBKDF2_params()
    kdf["salt"]["specified"] = salt
    kdf["iterationCount"] = 2048
    kdf["keyLength"] = 32
    kdf["prf"]["algorithm"] = rfc8018.id_hmacWithSHA256
    kdf["prf"]["parameters"] = der_encoder.encode(univ.Null(""))
    params = rfc8018.PBMAC1_params()
    params["keyDerivationFunc"]["algorithm"] = rfc8018.id_PBKDF2
    params["keyDerivationFunc"]["parameters"] = der_encoder.encode(kdf)
    params["messageAuthScheme"]["algorithm"] = rfc8018.id_hmacWithSHA256
    params["messageAuthScheme"]["parameters"] = der_encoder.encode(univ.Null(""))
    mac = pfx["macData"]
    mac["mac"]["digestAlgorithm"]["algorithm"] = rfc8018.id_PBMAC1
    mac["mac"]["digestAlgorithm"]["parameters"] = der_encoder.encode(params)
    mac["iterations"] = 1
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 2048, 32)
    mac["mac"]["digest"] = hmac.new(key, content, hashlib.sha256).digest()
    data = der_encoder.encode(pfx)
    assert pkcs12.load_pkcs12(data, password.encode()).key is not None

    [item] = crypto.load_pkcs12(data, password)

    assert item.alias == "k"
    with pytest.raises(CryptoError, match="Wrong password"):
        crypto.load_pkcs12(data, "Passwort-1")


def test_keystore_size_cap_is_checked_before_parsing(monkeypatch):
    def must_not_parse(*args, **kwargs):
        raise AssertionError("parsed a file that is over the size limit")

    monkeypatch.setattr(pkcs12, "load_pkcs12", must_not_parse)
    monkeypatch.setattr(jks.KeyStore, "loads", must_not_parse)
    monkeypatch.setattr(ber_decoder, "decode", must_not_parse)
    too_big = crypto.JKS_MAGIC + b"\x00" * crypto.MAX_KEYSTORE_BYTES

    for load in (crypto.load_keystore, crypto.load_pkcs12, crypto.load_jks):
        with pytest.raises(CryptoError, match="larger than 1 MiB"):
            load(too_big, PASSWORD)
