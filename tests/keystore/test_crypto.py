"""Tests of keystore.crypto with real keys, certificates and files (openssl and keytool too)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5208, rfc7292, rfc8017, rfc8018

from keystore import crypto
from keystore.crypto import CryptoError
from tests import pki

needs_openssl = pytest.mark.skipif(pki.OPENSSL is None, reason="openssl is not installed")
needs_keytool = pytest.mark.skipif(pki.KEYTOOL is None, reason="keytool is not installed")

PASSWORD = "S3cret-Pw!"


@pytest.fixture(scope="module")
def chain_a() -> pki.Pki:
    return pki.make_pki("Alpha")


@pytest.fixture(scope="module")
def chain_b() -> pki.Pki:
    return pki.make_pki("Beta")


def subjects(certs: list[x509.Certificate]) -> list[str]:
    return [cert.subject.rfc4514_string() for cert in certs]


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert pki.OPENSSL is not None
    return subprocess.run(
        [pki.OPENSSL, *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def write_pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def key_pem(key: pki.AnyPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --------------------------------------------------------------------------- facts


def test_facts_of_an_rsa_leaf():
    root_key = pki.make_key()
    root = pki.make_cert("Facts Root", root_key, ca=True)
    start = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    end = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    leaf = pki.make_cert(
        "facts.example.com",
        pki.make_key(),
        root,
        root_key,
        serial=0x1A2B,
        not_before=start,
        not_after=end,
    )

    facts = crypto.certificate_facts(leaf)

    assert facts.subject == "CN=facts.example.com,O=SAP SE"
    assert facts.issuer == "CN=Facts Root,O=SAP SE"
    assert facts.subject_cn == "facts.example.com"
    assert facts.issuer_cn == "Facts Root"
    assert facts.serial == "1A2B"
    assert facts.not_before == start
    assert facts.not_after == end
    assert facts.not_before.utcoffset() == timedelta(0)
    assert facts.key_type == "RSA"
    assert facts.key_size == 2048
    assert facts.signature_algorithm == "sha256WithRSAEncryption"
    digest = hashlib.sha256(crypto.to_der(leaf)).hexdigest().upper()
    assert facts.fingerprint_sha256.replace(":", "") == digest
    assert facts.fingerprint_sha256.count(":") == 31
    assert facts.self_signed is False
    assert crypto.certificate_facts(root).self_signed is True


@pytest.mark.parametrize(
    ("kind", "size", "key_type", "key_size", "algorithm"),
    [
        ("ec", 256, "EC", 256, "ecdsa-with-SHA256"),
        ("ec", 384, "EC", 384, "ecdsa-with-SHA384"),
        ("ed25519", None, "Ed25519", 256, "ed25519"),
        ("ed448", None, "Ed448", 456, "ed448"),
        ("rsa", 3072, "RSA", 3072, "sha384WithRSAEncryption"),
    ],
)
def test_facts_key_type_size_and_signature(kind, size, key_type, key_size, algorithm):
    key = pki.make_key(kind, size)
    hash_alg = hashes.SHA384() if key_size in (384, 3072) else hashes.SHA256()
    cert = pki.make_cert("keyed", key, hash_alg=hash_alg)

    facts = crypto.certificate_facts(cert)

    assert (facts.key_type, facts.key_size, facts.signature_algorithm) == (
        key_type,
        key_size,
        algorithm,
    )
    assert facts.self_signed is True


def test_facts_without_org_and_of_a_self_issued_cert_signed_by_another_key():
    cert = pki.make_cert("ignored", pki.make_key(), org=None)
    impostor_key = pki.make_key(fresh=True)
    self_issued = pki.make_cert("Self Issued", pki.make_key(), issuer_key=impostor_key)

    assert crypto.certificate_facts(cert).subject == "CN=ignored"
    assert (
        crypto.certificate_facts(self_issued).subject
        == crypto.certificate_facts(self_issued).issuer
    )
    assert crypto.certificate_facts(self_issued).self_signed is False


# --------------------------------------------------------------------------- certificate files


def test_pem_bundle_is_read_in_order(chain_a):
    data = pki.pem(*chain_a.chain)

    assert crypto.load_certificates(data) == chain_a.chain


def test_pem_bundle_tolerates_crlf_bom_and_blank_lines(chain_a):
    text = b"\xef\xbb\xbf\r\n" + b"\r\n\r\n".join(
        pki.pem(cert).replace(b"\n", b"\r\n") for cert in chain_a.chain
    )

    assert crypto.load_certificates(text) == chain_a.chain


def test_der_certificate_is_read(chain_a):
    assert crypto.load_certificates(crypto.to_der(chain_a.leaf)) == [chain_a.leaf]


def test_junk_between_pem_blocks_is_rejected(chain_a):
    data = pki.pem(chain_a.leaf) + b"subject=CN=whatever\n" + pki.pem(chain_a.root)

    with pytest.raises(CryptoError, match="unexpected text before PEM block 2"):
        crypto.load_certificates(data)


def test_junk_after_the_last_block_is_rejected(chain_a):
    with pytest.raises(CryptoError, match="unexpected text after the last PEM block"):
        crypto.load_certificates(pki.pem(chain_a.leaf) + b"garbage\n")


def test_junk_inside_a_pem_block_is_rejected(chain_a):
    lines = pki.pem(chain_a.inter).splitlines(keepends=True)
    lines.insert(3, b"this line is not base64 !\n")
    data = pki.pem(chain_a.leaf) + b"".join(lines)

    with pytest.raises(CryptoError, match="PEM block 2 contains text that is not Base64"):
        crypto.load_certificates(data)


def test_damaged_base64_inside_a_pem_block_is_rejected(chain_a):
    lines = pki.pem(chain_a.leaf).splitlines(keepends=True)
    lines[5] = b"A" * (len(lines[5]) - 1) + b"\n"  # valid Base64, wrong DER

    with pytest.raises(CryptoError, match="PEM block 1 is not a valid X.509 certificate"):
        crypto.load_certificates(b"".join(lines))


def test_private_key_block_is_rejected_without_echoing_the_key(chain_a):
    secret_pem = key_pem(chain_a.leaf_key)
    data = pki.pem(chain_a.leaf) + secret_pem

    with pytest.raises(CryptoError, match="PEM block 2 is a private key") as caught:
        crypto.load_certificates(data)

    body_line = secret_pem.splitlines()[1].decode()
    assert body_line not in str(caught.value)
    assert "PRIVATE KEY-----" not in str(caught.value)


def test_other_pem_block_types_are_named(chain_a):
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(chain_a.leaf.subject)
        .sign(chain_a.leaf_key, hashes.SHA256())
    )
    data = csr.public_bytes(serialization.Encoding.PEM)

    with pytest.raises(CryptoError, match="CERTIFICATE REQUEST block, not a certificate"):
        crypto.load_certificates(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n\t\n", id="whitespace"),
        pytest.param(os.urandom(2000), id="random"),
        pytest.param(b"\x30" + os.urandom(500), id="random-der-looking"),
        pytest.param(b"Hello, this is a text file.\n", id="text"),
    ],
)
def test_unreadable_certificate_files_are_rejected(data):
    with pytest.raises(CryptoError):
        crypto.load_certificates(data)


def test_random_bytes_message():
    with pytest.raises(CryptoError, match="neither PEM nor DER X.509"):
        crypto.load_certificates(b"\x01\x02" + bytes(range(256)))


def test_truncated_certificates_are_rejected(chain_a):
    der = crypto.to_der(chain_a.leaf)
    pem_data = pki.pem(chain_a.leaf)

    with pytest.raises(CryptoError, match="neither PEM nor DER"):
        crypto.load_certificates(der[: len(der) // 2])
    with pytest.raises(CryptoError, match="no END line"):
        crypto.load_certificates(pem_data[: len(pem_data) // 2])
    with pytest.raises(CryptoError, match="no END line"):
        crypto.load_certificates(pem_data[:-30] + pki.pem(chain_a.root))


def test_size_cap_is_checked_before_any_parsing(monkeypatch):
    def must_not_parse(*args, **kwargs):
        raise AssertionError("parsed a file that is over the size limit")

    monkeypatch.setattr(crypto.x509, "load_der_x509_certificate", must_not_parse)
    monkeypatch.setattr(crypto.x509, "load_pem_x509_certificates", must_not_parse)
    monkeypatch.setattr(crypto.base64, "b64decode", must_not_parse)

    with pytest.raises(CryptoError, match="larger than 64 KiB"):
        crypto.load_certificates(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (64 * 1024))
    with pytest.raises(CryptoError, match="larger than 64 KiB"):
        crypto.load_p7b(b"\x30" * (crypto.MAX_CERTIFICATE_BYTES + 1))


def test_a_file_at_the_size_cap_is_parsed():
    data = b"\x30" * crypto.MAX_CERTIFICATE_BYTES

    with pytest.raises(CryptoError, match="neither PEM nor DER"):
        crypto.load_certificates(data)


# --------------------------------------------------------------------------- chains


def test_order_chain_sorts_a_shuffled_chain_and_drops_duplicates(chain_a):
    shuffled = [chain_a.root, chain_a.leaf, chain_a.inter, chain_a.root]

    assert crypto.order_chain(shuffled) == chain_a.chain


def test_order_chain_accepts_a_chain_without_its_root(chain_a):
    assert crypto.order_chain([chain_a.inter, chain_a.leaf]) == [chain_a.leaf, chain_a.inter]
    assert crypto.order_chain([chain_a.leaf]) == [chain_a.leaf]


def test_order_chain_rejects_an_unrelated_certificate(chain_a, chain_b):
    with pytest.raises(CryptoError, match="Beta Root CA") as caught:
        crypto.order_chain([*chain_a.chain, chain_b.root])

    assert "do not form one chain" in str(caught.value)


def test_order_chain_rejects_a_gap_in_the_middle(chain_a):
    with pytest.raises(CryptoError, match="not linked"):
        crypto.order_chain([chain_a.leaf, chain_a.root])


def test_order_chain_rejects_nothing():
    with pytest.raises(CryptoError):
        crypto.order_chain([])


def test_verify_chain_accepts_a_good_chain(chain_a):
    crypto.verify_chain(chain_a.chain)
    crypto.verify_chain([chain_a.leaf, chain_a.inter])


def test_verify_chain_detects_a_forged_link(chain_a):
    forger_key = pki.make_key(fresh=True)
    forged_leaf = pki.make_cert("Forged Leaf", chain_a.leaf_key, chain_a.inter, forger_key)

    with pytest.raises(CryptoError, match="Link 1 .*signature of 'Forged Leaf' does not verify"):
        crypto.verify_chain([forged_leaf, chain_a.inter, chain_a.root])
    with pytest.raises(CryptoError, match="not linked"):
        crypto.order_chain([forged_leaf, chain_a.inter, chain_a.root])


def test_verify_chain_detects_a_wrong_issuer_name(chain_a):
    with pytest.raises(CryptoError, match="Link 2 .*issued by 'CN=Alpha Root CA"):
        crypto.verify_chain([chain_a.leaf, chain_a.inter, chain_a.leaf])


def test_verify_chain_detects_a_forged_root_self_signature(chain_a):
    fake_root = pki.make_cert(
        "Alpha Root CA", chain_a.root_key, issuer_key=pki.make_key(fresh=True), ca=True
    )

    with pytest.raises(CryptoError, match="self-signature of the root"):
        crypto.verify_chain([fake_root])


def test_check_strength_accepts_a_modern_chain(chain_a):
    assert crypto.check_strength(chain_a.chain) == []


def test_check_strength_rejects_rsa_1024(chain_a):
    weak = pki.make_cert("Weak Leaf", pki.make_key("rsa", 1024), chain_a.inter, chain_a.inter_key)

    with pytest.raises(CryptoError, match="1024-bit RSA key; at least 2048"):
        crypto.check_strength([weak, chain_a.inter, chain_a.root])


def test_check_strength_rejects_a_small_curve():
    cert = pki.make_cert("P-192", pki.make_key("ec", 192))

    with pytest.raises(CryptoError, match="secp192r1 curve of 192 bits"):
        crypto.check_strength([cert])


def test_check_strength_rejects_dsa():
    cert = pki.make_cert("DSA Leaf", pki.make_key("dsa"))

    with pytest.raises(CryptoError, match="DSA key; DSA is no longer accepted"):
        crypto.check_strength([cert])


def test_check_strength_rejects_a_sha1_signed_leaf(chain_a):
    leaf = pki.make_cert(
        "SHA1 Leaf", pki.make_key(), chain_a.inter, chain_a.inter_key, hash_alg=hashes.SHA1()
    )

    assert crypto.certificate_facts(leaf).signature_algorithm == "sha1WithRSAEncryption"
    crypto.verify_chain([leaf, chain_a.inter, chain_a.root])  # the signature itself is fine
    with pytest.raises(CryptoError, match="'SHA1 Leaf' is signed with SHA-1"):
        crypto.check_strength([leaf, chain_a.inter, chain_a.root])


def test_check_strength_rejects_an_md5_signed_intermediate(chain_a):
    inter = pki.make_cert(
        "MD5 CA", chain_a.inter_key, chain_a.root, chain_a.root_key, ca=True, hash_alg=hashes.MD5()
    )
    leaf = pki.make_cert("Leaf", chain_a.leaf_key, inter, chain_a.inter_key)

    with pytest.raises(CryptoError, match="'MD5 CA' is signed with MD5"):
        crypto.check_strength([leaf, inter, chain_a.root])


def test_check_strength_only_warns_about_a_sha1_self_signed_root():
    root_key = pki.make_key()
    root = pki.make_cert("Old Root", root_key, ca=True, hash_alg=hashes.SHA1())
    leaf = pki.make_cert("Fine Leaf", pki.make_key(), root, root_key)

    assert crypto.certificate_facts(root).self_signed is True
    crypto.verify_chain([leaf, root])
    warnings = crypto.check_strength([leaf, root])
    assert len(warnings) == 1
    assert "Old Root" in warnings[0] and "SHA-1" in warnings[0]
    assert len(crypto.check_strength([root])) == 1


def test_check_strength_rejects_sha1_on_a_root_that_is_not_at_the_top(chain_a):
    root_key = pki.make_key()
    sha1_root = pki.make_cert("Middle Root", root_key, ca=True, hash_alg=hashes.SHA1())
    leaf = pki.make_cert("Leaf", pki.make_key(), sha1_root, root_key)

    with pytest.raises(CryptoError, match="SHA-1"):
        crypto.check_strength([leaf, sha1_root, chain_a.root])


def test_root_certificate(chain_a):
    assert crypto.root_certificate(chain_a.chain) is chain_a.root
    assert crypto.root_certificate([chain_a.leaf]) is chain_a.leaf
    with pytest.raises(CryptoError):
        crypto.root_certificate([])


def test_private_key_matches(chain_a):
    assert crypto.private_key_matches(chain_a.leaf_key, chain_a.leaf)
    assert not crypto.private_key_matches(chain_a.leaf_key, chain_a.inter)
    ec_key = pki.make_key("ec")
    assert crypto.private_key_matches(ec_key, pki.make_cert("ec", ec_key))
    assert not crypto.private_key_matches(ec_key, chain_a.leaf)


def test_private_key_der_round_trip(chain_a):
    for key in (chain_a.leaf_key, pki.make_key("ec", 384), pki.make_key("ed25519")):
        again = crypto.private_key_from_der(crypto.private_key_to_der(key))
        assert crypto.private_key_to_der(again) == crypto.private_key_to_der(key)

    with pytest.raises(CryptoError):
        crypto.private_key_from_der(b"not a key")


def test_generate_key_pair():
    assert crypto.generate_key_pair("ec", 384).curve.key_size == 384
    with pytest.raises(CryptoError):
        crypto.generate_key_pair("rsa", 1024)


# --------------------------------------------------------------------------- .cer and .p7b


def test_cer_download_parses_back(chain_a):
    der = crypto.to_der(chain_a.leaf)

    assert der[:1] == b"\x30"
    assert x509.load_der_x509_certificate(der) == chain_a.leaf
    assert crypto.load_certificates(der) == [chain_a.leaf]


def test_pem_chain_parses_back(chain_a):
    assert crypto.load_certificates(crypto.to_pem_chain(chain_a.chain)) == chain_a.chain


def test_p7b_round_trip_holds_the_whole_chain(chain_a):
    data = crypto.to_p7b(chain_a.chain)

    loaded = crypto.load_p7b(data)

    assert sorted(subjects(loaded)) == sorted(subjects(chain_a.chain))
    assert crypto.order_chain(loaded) == chain_a.chain
    pem_p7b = b"-----BEGIN PKCS7-----\n" + base64.encodebytes(data) + b"-----END PKCS7-----\n"
    assert crypto.order_chain(crypto.load_p7b(pem_p7b)) == chain_a.chain


@needs_openssl
def test_openssl_reads_the_p7b(chain_a):
    result = openssl("pkcs7", "-inform", "DER", "-print_certs", stdin=crypto.to_p7b(chain_a.chain))

    assert result.returncode == 0, result.stderr
    certs = crypto.load_certificates(
        b"".join(
            line + b"\n"
            for line in result.stdout.splitlines()
            if line and not line.startswith((b"subject=", b"issuer="))
        )
    )
    assert crypto.order_chain(certs) == chain_a.chain


@pytest.mark.parametrize("data", [b"", os.urandom(300), b"-----BEGIN PKCS7-----\nAAAA\n"])
def test_unreadable_p7b_is_rejected(data):
    with pytest.raises(CryptoError):
        crypto.load_p7b(data)


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
        crypto.PBKDF2HMAC,
        crypto._pkcs12_kdf,
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

    monkeypatch.setattr(crypto, "PBKDF2HMAC", pbkdf2)
    monkeypatch.setattr(crypto, "_pkcs12_kdf", pkcs12_kdf)
    monkeypatch.setattr(crypto.serialization, "load_der_private_key", loader)

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

    monkeypatch.setattr(crypto.serialization, "load_der_private_key", plaintext_only)

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
        ours = crypto._pkcs12_kdf(
            PASSWORD.encode("utf-16-be") + b"\x00\x00", salt, iterations, purpose, size
        )
        theirs = jks.rfc7292.derive_key(hashlib.sha1, purpose, PASSWORD, salt, iterations, size)
        assert ours == theirs


def corruptions(data: bytes) -> list[bytes]:
    return [
        b"",
        data[: len(data) // 2],
        data[:-40],
        os.urandom(len(data)),
        data[:4] + os.urandom(200),
    ]


def test_damaged_pkcs12_files_raise_only_crypto_errors(chain_a):
    data = crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD)

    for damaged in corruptions(data):
        with pytest.raises(CryptoError):
            crypto.load_pkcs12(damaged, PASSWORD)
        with pytest.raises(CryptoError):
            crypto.load_keystore(damaged, PASSWORD)


def forbid_key_derivation(monkeypatch) -> None:
    """Fail the test if any key is derived: PBKDF2, scrypt, the PKCS#12 KDF, cryptography's
    decryption of an encrypted key or PKCS#12 file, and pyjks's JKS and JCEKS key protection."""

    def derived(*args, **kwargs):
        raise AssertionError("a key was derived before the file's key-derivation work was priced")

    real_loader = serialization.load_der_private_key

    def unencrypted_only(data, password, **kwargs):
        if password is not None:
            derived()
        return real_loader(data, password, **kwargs)

    monkeypatch.setattr(crypto, "PBKDF2HMAC", derived)
    monkeypatch.setattr(crypto, "Scrypt", derived)
    monkeypatch.setattr(crypto, "_pkcs12_kdf", derived)
    monkeypatch.setattr(crypto.serialization, "load_der_private_key", unencrypted_only)
    monkeypatch.setattr(crypto.pkcs12, "load_pkcs12", derived)
    monkeypatch.setattr(jks.sun_crypto, "jce_pbe_decrypt", derived)
    monkeypatch.setattr(jks.sun_crypto, "jks_pkey_decrypt", derived)


def test_a_derivation_over_the_cap_is_refused_before_any_key_is_derived(chain_a, monkeypatch):
    data = crypto.to_pkcs12("client", chain_a.leaf_key, chain_a.chain, PASSWORD)
    # The MAC's key is the dearest derivation of an export: 100,000 SHA-256 hashes in Python.
    mac_cost = crypto.PKCS12_KDF_ROUNDS * 3
    forbid_key_derivation(monkeypatch)
    monkeypatch.setattr(crypto, "MAX_KDF_ITERATIONS", mac_cost - 1)

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
    monkeypatch.setattr(crypto, "MAX_KDF_WORK", total - 1)

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

    monkeypatch.setattr(crypto.pkcs12, "load_pkcs12", must_not_parse)
    monkeypatch.setattr(crypto.jks.KeyStore, "loads", must_not_parse)
    monkeypatch.setattr(crypto.ber_decoder, "decode", must_not_parse)
    too_big = crypto.JKS_MAGIC + b"\x00" * crypto.MAX_KEYSTORE_BYTES

    for load in (crypto.load_keystore, crypto.load_pkcs12, crypto.load_jks):
        with pytest.raises(CryptoError, match="larger than 1 MiB"):
            load(too_big, PASSWORD)


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


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_issue_certificate_builds_a_chain_that_verifies(kind):
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = crypto.generate_key_pair(kind)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")])
    ca = crypto.issue_certificate(
        ca_name, ca_key, not_before=now, not_after=now + timedelta(days=30), ca=True
    )
    leaf_key = crypto.generate_key_pair("rsa")
    names = x509.SubjectAlternativeName([x509.DNSName("tenant.example")])
    leaf = crypto.issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
        leaf_key,
        issuer=(ca, ca_key),
        not_before=now,
        not_after=now + timedelta(days=10),
        server_auth=True,
        alternative_names=names,
    )
    crypto.verify_chain([leaf, ca])
    assert crypto.private_key_matches(leaf_key, leaf)
    assert crypto.certificate_facts(ca).self_signed
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == names


# --------------------------------------------------------------------------- RSA keys from uploads
#
# cryptography's validation of an RSA key costs 0.3 s at 4096 bits and seconds beyond, so keys
# from files are loaded without it: too large a key is refused before it is used, and the
# others prove their consistency with arithmetic and one signature.


def rsa_key_of(numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateKey:
    """The key as the numbers say, consistent or not (no validation)."""
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def crafted_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key of exactly ``bits`` bits made of random odd numbers, in microseconds: no
    primes, so that nothing but the size check would accept it. A real key of 16384 bits takes
    minutes to generate."""

    def odd(size: int) -> int:
        return int.from_bytes(os.urandom(-(-size // 8)), "big") >> (-size % 8) | 3 << size - 2 | 1

    p, q = odd(bits // 2), odd(bits - bits // 2)
    n = p * q
    assert n.bit_length() == bits
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=odd(bits - 8),
        dmp1=odd(bits // 2 - 8),
        dmq1=odd(bits // 2 - 8),
        iqmp=odd(bits // 2 - 8),
        public_numbers=rsa.RSAPublicNumbers(65537, n),
    )
    return rsa_key_of(numbers)


def uploads(alias: str, key, chain) -> dict[str, tuple[bytes, object]]:
    """The key pair as PKCS#12 (encrypted key, and plain key bag) and JKS, each with its reader."""
    plain = pkcs12.serialize_key_and_certificates(
        alias.encode(), key, chain[0], chain[1:] or None, serialization.NoEncryption()
    )
    return {
        "pkcs12": (pki.make_pkcs12_single(alias, key, chain, PASSWORD), crypto.load_pkcs12),
        "pkcs12 key bag": (crypto._sealed_pfx(crypto._pfx_parts(plain)[2], PASSWORD, 2048), None),
        "jks": (pki.make_jks([(alias, key, chain)], PASSWORD), crypto.load_jks),
    }


def only_unvalidated_loads(monkeypatch) -> list[object]:
    """Fail the test if a key from a file is loaded with cryptography's RSA validation; the
    keys that were loaded come back in the list."""
    real_loader = serialization.load_der_private_key
    loaded: list[object] = []

    def loader(data, password, **kwargs):
        assert kwargs.get("unsafe_skip_rsa_key_validation") is True, "a validating load"
        key = real_loader(data, password, **kwargs)
        loaded.append(key)
        return key

    monkeypatch.setattr(crypto.serialization, "load_der_private_key", loader)
    return loaded


@pytest.mark.parametrize(
    ("kind", "size"), [("rsa", 2048), ("rsa", 3072), ("rsa", 4096), ("ec", 256), ("ec", 384)]
)
def test_good_keys_import_without_the_costly_validation(kind, size, monkeypatch):
    key = pki.make_key(kind, size)
    chain = [pki.make_cert(f"Good {kind} {size}", key)]
    files = uploads("good", key, chain)
    loaded = only_unvalidated_loads(monkeypatch)

    for name, (data, reader) in files.items():
        for read in (crypto.load_keystore, reader or crypto.load_pkcs12):
            [item] = read(data, PASSWORD)

            assert (item.alias, item.problem, item.chain) == ("good", "", chain), name
            assert crypto.private_key_to_der(item.private_key) == pki.pkcs8_der(key), name
    assert len(loaded) == 2 * len(files)


@pytest.mark.parametrize("bits", [384, 4097, 8192, 16384])
def test_an_rsa_key_of_an_unsupported_size_is_refused_before_it_is_used(bits, monkeypatch):
    key = crafted_rsa_key(bits)
    issuer_key = pki.make_key("ec")
    issuer = pki.make_cert("Hostile CA", issuer_key, ca=True)
    chain = [pki.make_cert("Hostile", key, issuer, issuer_key), issuer]
    files = uploads("hostile", key, chain)
    only_unvalidated_loads(monkeypatch)

    def used(*args, **kwargs):
        raise AssertionError("the key was used before its size was checked")

    monkeypatch.setattr(crypto, "_prove_key", used)
    limit = "above 4096" if bits > 4096 else "below 512"
    message = (
        f"The key 'hostile' is an RSA key of {bits} bits; keys {limit} bits are not supported."
    )

    for name, (data, reader) in files.items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = [item for item in crypto.load_keystore(data, PASSWORD) if item.problem]

        assert str(refused.value) == message, name
        assert (item.alias, item.private_key, item.chain, item.problem) == (
            "hostile",
            None,
            [],
            message,
        ), name


def damaged_copy(key: rsa.RSAPrivateKey, part: str) -> rsa.RSAPrivateKey:
    """The key with one private parameter changed: same public key, so same certificate."""
    numbers = key.private_numbers()
    parts = {name: getattr(numbers, name) for name in ("p", "q", "d", "dmp1", "dmq1", "iqmp")}
    parts[part] ^= 2  # stays odd where it must, and below its bound
    return rsa_key_of(rsa.RSAPrivateNumbers(**parts, public_numbers=numbers.public_numbers))


@pytest.mark.parametrize("part", ["iqmp", "dmp1", "dmq1", "d"])
def test_an_rsa_key_with_a_damaged_private_parameter_is_refused(part, monkeypatch):
    good = pki.make_key("rsa", 2048)
    damaged = damaged_copy(good, part)
    chain = [pki.make_cert("Damaged", good)]
    # What cryptography's validation would have caught, and the certificate check does not.
    with pytest.raises(ValueError):
        serialization.load_der_private_key(pki.pkcs8_der(damaged), None)
    assert crypto.private_key_matches(damaged, chain[0])
    files = uploads("damaged", damaged, chain)
    only_unvalidated_loads(monkeypatch)
    message = "The key 'damaged' is damaged: its RSA private parameters do not fit together."

    for name, (data, reader) in files.items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = crypto.load_keystore(data, PASSWORD)

        assert str(refused.value) == message, name
        assert (item.alias, item.private_key, item.chain, item.problem) == (
            "damaged",
            None,
            [],
            message,
        ), name


def test_a_signature_alone_does_not_show_a_damaged_crt_parameter():
    """Why _prove_key checks the arithmetic too: OpenSSL checks its CRT result and quietly
    recomputes a wrong one with d, so the damaged key signs correctly here, while Java, which
    uses the CRT parameters as they are, would not."""
    good = pki.make_key("rsa", 2048)
    message = b"any message"
    for part in ("iqmp", "dmp1"):
        signature = damaged_copy(good, part).sign(message, PKCS1v15(), hashes.SHA256())

        good.public_key().verify(signature, message, PKCS1v15(), hashes.SHA256())
        assert not crypto._rsa_parameters_fit(damaged_copy(good, part).private_numbers())


def test_an_rsa_key_with_a_composite_factor_is_refused_by_its_signature(monkeypatch):
    """Parameters that fit together but a factor that is not prime: only the signature shows
    it (the primality tests are what the skipped validation costs)."""
    small = rsa.generate_private_key(65537, 1024).private_numbers()
    q = pki.make_key("rsa", 2048).private_numbers().p
    p, e = small.p * small.q, 65537
    assert p % e != 1 and q % e != 1
    d = pow(e, -1, (p - 1) * (q - 1) // math.gcd(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    key = rsa_key_of(numbers)
    issuer_key = pki.make_key("ec")
    issuer = pki.make_cert("Composite CA", issuer_key, ca=True)
    chain = [pki.make_cert("Composite", key, issuer, issuer_key), issuer]
    assert crypto._rsa_parameters_fit(numbers)
    only_unvalidated_loads(monkeypatch)
    message = (
        "The key 'composite' is damaged: a signature made with it does not verify with its "
        "certificate."
    )

    for name, (data, reader) in uploads("composite", key, chain).items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = [item for item in crypto.load_keystore(data, PASSWORD) if item.problem]

        assert str(refused.value) == item.problem == message, name
        assert (item.alias, item.private_key, item.chain) == ("composite", None, []), name


def test_keys_sealed_before_the_size_limit_still_open():
    """The limit is for uploads: a larger key stored earlier must not become unusable."""
    key = crafted_rsa_key(8192)

    assert crypto.private_key_from_der(crypto.private_key_to_der(key)).key_size == 8192


def test_an_rsa_key_with_a_private_exponent_beyond_its_modulus_is_refused():
    """Equal to the right one modulo p - 1 and q - 1, so it signs correctly, but OpenSSL would
    compute with all its bits wherever it falls back on d. cryptography loads it unvalidated."""
    good = pki.make_key("rsa", 2048)
    numbers = good.private_numbers()
    n = numbers.public_numbers.n
    key = rfc8017.RSAPrivateKey()
    for name, value in (
        ("version", 0),
        ("modulus", n),
        ("publicExponent", numbers.public_numbers.e),
        ("privateExponent", numbers.d + (numbers.p - 1) * (numbers.q - 1) * n**8),
        ("prime1", numbers.p),
        ("prime2", numbers.q),
        ("exponent1", numbers.dmp1),
        ("exponent2", numbers.dmq1),
        ("coefficient", numbers.iqmp),
    ):
        key[name] = value
    info = rfc5208.PrivateKeyInfo()
    info["version"] = 0
    info["privateKeyAlgorithm"]["algorithm"] = rfc8017.rsaEncryption
    info["privateKeyAlgorithm"]["parameters"] = der_encoder.encode(univ.Null(""))
    info["privateKey"] = der_encoder.encode(key)
    cert = pki.make_cert("Long d", good)
    bags = crypto._bags_of(
        pkcs12.serialize_key_and_certificates(
            b"long_d", good, cert, None, serialization.NoEncryption()
        )
    )
    for bag in bags:
        if bag["bagId"] == rfc7292.id_keyBag:
            bag["bagValue"] = der_encoder.encode(info)
    data = crypto._sealed_pfx([crypto._plain_safe(bags)], PASSWORD, 2048)

    with pytest.raises(CryptoError) as refused:
        crypto.load_pkcs12(data, PASSWORD)

    assert str(refused.value) == (
        "The key 'long_d' is damaged: its RSA private parameters do not fit together."
    )
