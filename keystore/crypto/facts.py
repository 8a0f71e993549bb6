"""The derived facts of a certificate that the keystore stores in indexed columns and shows.

Subject, issuer, their common names, serial, validity, key type and size, signature algorithm,
SHA-256 fingerprint and whether it is self-signed; and the short name messages use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from keystore.crypto.signatures import is_self_signed


@dataclass(frozen=True)
class CertificateFacts:
    """What the keystore shows (and indexes) about a certificate."""

    subject: str
    issuer: str
    subject_cn: str
    issuer_cn: str
    serial: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_size: int
    signature_algorithm: str
    fingerprint_sha256: str
    self_signed: bool
    # What the Cloud Integration API also reports for each entry.
    fingerprint_sha1: str = ""
    fingerprint_sha512: str = ""
    elliptic_curve: str = ""


# An import asks for the facts of each leaf and root when it stores a row, and again when it
# completes chains from the tenant's trusted certificates; the facts are immutable and
# certificates compare (and hash) by their DER bytes.
@functools.lru_cache(maxsize=4096)
def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """The derived facts of a certificate, as stored in indexed columns."""
    key_type, key_size = _key_type_and_size(cert)
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        subject_cn=common_name(cert.subject),
        issuer_cn=common_name(cert.issuer),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_algorithm_name(cert),
        fingerprint_sha256=fingerprint(cert, hashes.SHA256()),
        self_signed=is_self_signed(cert),
        fingerprint_sha1=fingerprint(cert, hashes.SHA1()),  # noqa: S303  a name, not a check
        fingerprint_sha512=fingerprint(cert, hashes.SHA512()),
        elliptic_curve=_curve_name(cert),
    )


def fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    """The certificate's digest as colon-separated upper-case hex pairs (keytool's way)."""
    digest = cert.fingerprint(algorithm).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _curve_name(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return ""
    return key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else ""


def common_name(name: x509.Name) -> str:
    """The first CN of ``name``, or ``""``."""
    attributes = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not attributes:
        return ""
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _key_type_and_size(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "Unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519", 256
    if isinstance(key, x448.X448PublicKey):
        return "X448", 448
    return "Unknown", 0


def _signature_algorithm_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = oid._name
    return oid.dotted_string if not name or name == "Unknown OID" else name


def describe(cert: x509.Certificate) -> str:
    """A short name for messages: the CN, or the whole subject when there is no CN."""
    return common_name(cert.subject) or cert.subject.rfc4514_string() or "(empty subject)"
