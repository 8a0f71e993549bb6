"""Tests of keystore.crypto.certfiles: PEM, DER and PKCS#7 certificate files."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from keystore import crypto
from keystore.crypto import CryptoError
from tests import pki
from tests.keystore.crypto.helpers import key_pem, needs_openssl, openssl, subjects

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

    monkeypatch.setattr(x509, "load_der_x509_certificate", must_not_parse)
    monkeypatch.setattr(x509, "load_pem_x509_certificates", must_not_parse)
    monkeypatch.setattr(base64, "b64decode", must_not_parse)

    with pytest.raises(CryptoError, match="larger than 64 KiB"):
        crypto.load_certificates(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (64 * 1024))
    with pytest.raises(CryptoError, match="larger than 64 KiB"):
        crypto.load_p7b(b"\x30" * (crypto.MAX_CERTIFICATE_BYTES + 1))


def test_a_file_at_the_size_cap_is_parsed():
    data = b"\x30" * crypto.MAX_CERTIFICATE_BYTES

    with pytest.raises(CryptoError, match="neither PEM nor DER"):
        crypto.load_certificates(data)


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
