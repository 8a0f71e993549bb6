"""Public downloads from the keystore admin: the bytes parse back to the right certificates, the
content types are right, file names survive any alias, and no private key ever leaves."""

from __future__ import annotations

import base64
import email.message

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.urls import reverse

from keystore import services
from tests import pki as pki_factory
from tests.conftest import client_for


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The users fixture creates five users per test; the default hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def download_url(entry, kind: str) -> str:
    return reverse("admin:keystore_keystoreentry_download", args=[entry.pk, kind])


def filename_of(response) -> str:
    """The file name a mail/HTTP header parser reads from Content-Disposition."""
    header = response["Content-Disposition"]
    header.encode("ascii")  # a header value must be plain ASCII
    assert "\r" not in header and "\n" not in header
    message = email.message.Message()
    message["Content-Disposition"] = header
    assert message.get_content_disposition() == "attachment"
    return message.get_filename()


@pytest.fixture
def reader(users):
    return client_for(users["ReadOnly"])


def test_certificate_download_is_the_leaf_in_der(reader, key_pair_entry, pki):
    response = reader.get(download_url(key_pair_entry, "cer"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-cert"
    assert filename_of(response) == "client_key.cer"
    assert x509.load_der_x509_certificate(response.content) == pki.leaf
    assert response["Content-Length"] == str(len(response.content))


def test_root_download_is_the_self_signed_root(reader, key_pair_entry, pki):
    response = reader.get(download_url(key_pair_entry, "root"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-cert"
    assert filename_of(response) == "client_key_rootCA.cer"
    root = x509.load_der_x509_certificate(response.content)
    assert root == pki.root
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)


def test_root_of_a_self_signed_certificate_is_itself(reader, cert_entry, pki):
    response = reader.get(download_url(cert_entry, "root"))
    assert x509.load_der_x509_certificate(response.content) == pki.root


def test_chain_download_is_pkcs7_with_the_whole_chain(reader, key_pair_entry, pki):
    response = reader.get(download_url(key_pair_entry, "p7b"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs7-certificates"
    assert filename_of(response) == "client_key.p7b"
    certificates = pkcs7.load_der_pkcs7_certificates(response.content)
    assert len(certificates) == 3
    assert set(certificates) == {pki.leaf, pki.inter, pki.root}


def test_pem_chain_download(reader, key_pair_entry, pki):
    response = reader.get(download_url(key_pair_entry, "pem"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert filename_of(response) == "client_key.pem"
    assert x509.load_pem_x509_certificates(response.content) == pki.chain


def test_openssh_public_key_download(reader, key_pair_entry, cert_entry, pki):
    from cryptography.hazmat.primitives import serialization

    page = reader.get(reverse("admin:keystore_keystoreentry_changelist")).content.decode()
    assert download_url(key_pair_entry, "ssh") in page
    assert download_url(cert_entry, "ssh") not in page  # offered for key pairs only
    response = reader.get(download_url(key_pair_entry, "ssh"))
    assert response.status_code == 200 and filename_of(response) == "client_key.pub"
    key = serialization.load_ssh_public_key(response.content.split(b" client_key")[0])
    assert key.public_numbers() == pki.leaf_key.public_key().public_numbers()
    refused = reader.get(download_url(cert_entry, "ssh"), follow=True)
    assert "is a certificate, not a key pair" in refused.content.decode()


def test_sap_entry_downloads_its_own_chain(reader, sap_entry, sap_pki):
    cer = reader.get(download_url(sap_entry, "cer"))
    root = reader.get(download_url(sap_entry, "root"))
    assert filename_of(cer) == "sap_cloudintegrationcertificate.cer"
    assert filename_of(root) == "sap_cloudintegrationcertificate_rootCA.cer"
    assert x509.load_der_x509_certificate(cer.content) == sap_pki.leaf
    assert x509.load_der_x509_certificate(root.content) == sap_pki.root


def test_file_names_are_safe_for_any_alias(tenant, users, pki):
    reader = client_for(users["ReadOnly"])
    cases = [
        # alias, what the header carries, the file name a client reads from it
        ('a"b', 'filename="a\\"b.cer"', 'a"b.cer'),
        ("schlüssel", "filename*=utf-8''schl%C3%BCssel.cer", "schlüssel.cer"),
        ("back\\slash", 'filename="back_slash.cer"', "back_slash.cer"),
        ("dir/name", 'filename="dir_name.cer"', "dir_name.cer"),
    ]
    for alias, header_part, filename in cases:
        entry = services.import_certificate(tenant, alias, pki_factory.der(pki.root))
        response = reader.get(download_url(entry, "cer"))
        assert response.status_code == 200
        assert header_part in response["Content-Disposition"], alias
        assert filename_of(response) == filename
        assert x509.load_der_x509_certificate(response.content) == pki.root


def test_unicode_file_name_round_trips(tenant, users, pki):
    entry = services.import_certificate(tenant, "schlüssel", pki_factory.der(pki.root))
    response = client_for(users["ReadOnly"]).get(download_url(entry, "p7b"))
    assert filename_of(response) == "schlüssel.p7b"


def test_quote_in_alias_round_trips(tenant, users, pki):
    entry = services.import_certificate(tenant, 'a"b', pki_factory.der(pki.root))
    response = client_for(users["ReadOnly"]).get(download_url(entry, "root"))
    assert filename_of(response) == 'a"b_rootCA.cer'


def test_unknown_kind_and_missing_entry_are_404(reader, key_pair_entry):
    assert reader.get(download_url(key_pair_entry, "key")).status_code == 404
    assert reader.get(download_url(key_pair_entry, "p12")).status_code == 404
    missing = reverse(
        "admin:keystore_keystoreentry_download", args=[key_pair_entry.pk + 999, "cer"]
    )
    assert reader.get(missing).status_code == 404


def test_downloads_answer_get_only(reader, key_pair_entry):
    assert reader.post(download_url(key_pair_entry, "cer")).status_code == 405


def secret_markers(key) -> list[bytes]:
    """Byte strings that appear wherever the private key is written out in any usual form.

    The start of a PKCS#8 RSA key holds the public modulus (which the certificate holds too), so
    the markers come from the private half: the private exponent raw and in hex, and the PEM
    lines (64 characters of Base64) of the second half of the DER.
    """
    der = pki_factory.pkcs8_der(key)
    b64 = base64.b64encode(der)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    d = key.private_numbers().d
    # Minimal length, as DER writes it: a fixed 256 would add leading zeros for a short d.
    exponent = d.to_bytes((d.bit_length() + 7) // 8, "big")
    return [
        b"PRIVATE KEY",
        exponent[:32],
        exponent[:32].hex().encode(),
        *lines[len(lines) // 2 : -1],
    ]


def test_no_download_contains_the_private_key(users, key_pair_entry, pki):
    client = client_for(users["Administrator"])
    markers = secret_markers(pki.leaf_key)
    for kind in services.PUBLIC_FORMATS:
        content = client.get(download_url(key_pair_entry, kind)).content
        assert not [marker for marker in markers if marker in content], kind


def test_secret_markers_would_find_a_leaked_key(pki):
    # The scan above must be able to fail: a PEM or DER rendering of the key trips it.
    from cryptography.hazmat.primitives import serialization

    pem = pki.leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    markers = secret_markers(pki.leaf_key)
    assert all(marker in pem for marker in [markers[0], *markers[3:]])
    assert markers[1] in pki_factory.pkcs8_der(pki.leaf_key)


def test_other_tenant_gets_404_and_no_certificate(users, key_pair_entry):
    # The whole role matrix is in test_admin_matrix.py; here the body of a refusal is checked.
    client = client_for(users["other_admin"])
    for kind in services.PUBLIC_FORMATS:
        response = client.get(download_url(key_pair_entry, kind))
        assert response.status_code == 404
        assert b"CERTIFICATE" not in response.content
        assert "Content-Disposition" not in response


def test_anonymous_download_goes_to_login(client, key_pair_entry):
    response = client.get(download_url(key_pair_entry, "cer"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
