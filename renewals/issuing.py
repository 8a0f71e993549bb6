"""Pure crypto for standing in as SAP: issue the renewed certificate of an SAP-owned key pair.

No Django here. The renewed certificate keeps the current certificate's subject and subject
alternative names, gets a new key, and is signed by the SAP issuing CA (the first certificate of
`ca_chain`, whose key is `ca_key`).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from keystore.crypto import PrivateKey


def issue_renewed_certificate(
    current: x509.Certificate,
    new_key: PrivateKey,
    ca_key: PrivateKey,
    ca_chain: list[x509.Certificate],
    *,
    not_before: datetime,
    not_after: datetime,
) -> list[x509.Certificate]:
    """The new chain (leaf first): a certificate for `new_key` with `current`'s subject."""
    issuer = ca_chain[0]
    public_key = new_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(new_key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=isinstance(new_key, ec.EllipticCurvePrivateKey),
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    try:
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    # Edwards keys sign without a separate hash; every other CA key signs with SHA-256.
    edwards = isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    certificate = builder.sign(ca_key, None if edwards else hashes.SHA256())
    return [certificate, *ca_chain]
