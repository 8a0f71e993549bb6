"""Making certificates and signing requests: self-signed and CA-signed certificates, the renewed
certificate of an SAP-owned key pair (when the site stands in for SAP), and PKCS#10 requests
with the subject an operator typed."""

from __future__ import annotations

import re
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from keystore.crypto.errors import CryptoError
from keystore.crypto.keys import PrivateKey

MAX_SUBJECT_LENGTH = 1024


def issue_certificate(
    subject: x509.Name,
    key: PrivateKey,
    *,
    not_before: datetime,
    not_after: datetime,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    ca: bool = False,
    server_auth: bool = False,
    alternative_names: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (certificate, key) or self-signed.

    Leaves are for client authentication (and server authentication when asked), CAs sign
    certificates and CRLs; both carry key identifiers so chains link unambiguously.
    """
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before.replace(microsecond=0))
        .not_valid_after(not_after.replace(microsecond=0))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=not ca and isinstance(key, ec.EllipticCurvePrivateKey),
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if not ca:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server_auth:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if alternative_names is not None:
        builder = builder.add_extension(alternative_names, critical=False)
    # Edwards keys sign without a separate hash; every other key signs with SHA-256.
    edwards = isinstance(issuer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    return builder.sign(issuer_key, None if edwards else hashes.SHA256())


def issue_renewed_certificate(
    current: x509.Certificate,
    new_key: PrivateKey,
    ca_key: PrivateKey,
    ca_chain: list[x509.Certificate],
    *,
    not_before: datetime,
    not_after: datetime,
) -> list[x509.Certificate]:
    """The new chain (leaf first) of an SAP-owned key pair renewed by the SAP issuing CA (the
    first certificate of `ca_chain`, whose key is `ca_key`): a certificate for `new_key` with
    `current`'s subject and subject alternative names."""
    try:
        alternative_names = current.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        alternative_names = None
    certificate = issue_certificate(
        current.subject,
        new_key,
        issuer=(ca_chain[0], ca_key),
        not_before=not_before,
        not_after=not_after,
        server_auth=True,
        alternative_names=alternative_names,
    )
    return [certificate, *ca_chain]


def parse_subject(text: str) -> x509.Name:
    """A distinguished name written as in RFC 4514, most specific part first:
    ``CN=orders.example.com, OU=Integration, O=Example AG, C=DE``. It must name a CN."""
    text = (text or "").strip()
    example = "such as 'CN=orders.example.com, O=Example AG, C=DE'"
    if not text:
        raise CryptoError(f"Enter a subject, {example}.")
    if len(text) > MAX_SUBJECT_LENGTH:
        raise CryptoError(f"The subject is longer than {MAX_SUBJECT_LENGTH} characters.")
    # Operators write "CN=a, O=b"; RFC 4514 has no blank after the comma, which would become
    # part of the next attribute type.
    normalized = re.sub(r"(?<!\\),\s+", ",", text)
    try:
        name = x509.Name.from_rfc4514_string(normalized)
    except ValueError as error:
        if "length" in str(error):  # the only length rule: C is two letters
            detail = "the country (C) must be a two-letter code such as DE"
        else:
            detail = (
                "each part must be TYPE=value, TYPE one of CN, OU, O, L, ST, C, DC or a "
                "dotted OID, and a comma inside a value written as \\,"
            )
        raise CryptoError(f"The subject is not a distinguished name {example}: {detail}.")
    if not name.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        raise CryptoError(f"The subject names no common name (CN=...), {example}.")
    if any(not attribute.value for attribute in name):
        raise CryptoError(f"The subject has an empty part, {example}.")
    return name


def certificate_signing_request(
    key: PrivateKey,
    subject: x509.Name,
    alternative_names: x509.SubjectAlternativeName | None = None,
) -> bytes:
    """A PKCS#10 request (PEM) for the key's public half, signed with the key."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if alternative_names is not None:
        builder = builder.add_extension(alternative_names, critical=False)
    edwards = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    request = builder.sign(key, None if edwards else hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)
