"""Strength checks of a chain: keys too small or of a withdrawn kind, and broken signature
hashes, refused; the outdated self-signature of a root only warned about."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from keystore.crypto.errors import CryptoError
from keystore.crypto.facts import describe
from keystore.crypto.signatures import is_self_signed

_WEAK_SIGNATURE_OIDS = {
    "1.2.840.113549.1.1.2": "MD2",
    "1.2.840.113549.1.1.3": "MD4",
    "1.2.840.113549.1.1.4": "MD5",
    "1.2.840.113549.1.1.5": "SHA-1",
    "1.3.14.3.2.29": "SHA-1",
    "1.2.840.10040.4.3": "SHA-1",
    "1.2.840.10045.4.1": "SHA-1",
}


def _weak_signature_hash(cert: x509.Certificate) -> str | None:
    name = _WEAK_SIGNATURE_OIDS.get(cert.signature_algorithm_oid.dotted_string)
    if name:
        return name
    try:
        hash_alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if isinstance(hash_alg, hashes.SHA1):
        return "SHA-1"
    if isinstance(hash_alg, hashes.MD5):
        return "MD5"
    return None


def check_strength(chain: list[x509.Certificate], leaf_name: str | None = None) -> list[str]:
    """Reject weak keys and signatures in a chain; return warnings that do not block. Messages
    name each certificate by its subject, the leaf by `leaf_name` (its alias) when given.

    Refused: RSA keys under 2048 bits, elliptic curves under 256 bits, DSA keys, and SHA-1 or
    MD5 signatures. The one exception is the self-signature of the root at the top of the
    chain: nobody checks it (the root is trusted as such), so it only yields a warning.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for index, cert in enumerate(chain):
        name = leaf_name if index == 0 and leaf_name else describe(cert)
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            problems.append(
                f"'{name}' has a {key.key_size}-bit RSA key; at least 2048 bits are required."
            )
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
            problems.append(
                f"'{name}' uses the {key.curve.name} curve of {key.curve.key_size} bits; "
                "at least 256 bits are required."
            )
        elif isinstance(key, dsa.DSAPublicKey):
            problems.append(
                f"'{name}' has a DSA key; DSA is no longer accepted (NIST withdrew it for "
                "signatures in FIPS 186-5 and TLS 1.3 does not support it)."
            )
        weak_hash = _weak_signature_hash(cert)
        if weak_hash is None:
            continue
        if index == len(chain) - 1 and is_self_signed(cert):
            warnings.append(
                f"The root '{name}' signs itself with {weak_hash}; this is harmless because a "
                "root's own signature is not checked, but the root is outdated."
            )
        else:
            problems.append(
                f"'{name}' is signed with {weak_hash}, which is broken; "
                "SHA-256 or stronger is required."
            )
    if problems:
        raise CryptoError(" ".join(problems))
    return warnings
