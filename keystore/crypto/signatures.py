"""Whether one certificate signed another.

Every signature check of a certificate by its (candidate) issuer goes through :func:`signed_by`:
the self-signed fact, chain ordering and verification, and chain building in the keystore
readers.
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PSS, PKCS1v15


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether the certificate names itself as issuer and its signature verifies with its own
    key (a name match alone is not enough)."""
    return signed_by(cert, cert)


# A keystore's key pairs share their issuers, and parsing, ordering, verifying and describing a
# chain each ask again: each (certificate, issuer) signature is verified once. Certificates are
# immutable and compare (and hash) by their DER bytes.
@functools.lru_cache(maxsize=2048)
def signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """Whether ``parent`` names and signed ``child``.

    cryptography refuses to verify SHA-1 and MD5 signatures at all; those are checked by hand
    here because old roots still use them (check_strength decides whether that is acceptable).
    """
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    try:
        return _verify_signature_by_hand(child, parent)
    except Exception:
        return False


def _verify_signature_by_hand(child: x509.Certificate, parent: x509.Certificate) -> bool:
    key = parent.public_key()
    signature, tbs = child.signature, child.tbs_certificate_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey):
            scheme = child.signature_algorithm_parameters
            hash_alg = child.signature_hash_algorithm
            if not isinstance(scheme, PSS | PKCS1v15) or hash_alg is None:
                return False
            key.verify(signature, tbs, scheme, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            ecdsa = child.signature_algorithm_parameters
            if not isinstance(ecdsa, ec.ECDSA):
                return False
            key.verify(signature, tbs, ecdsa)
        elif isinstance(key, dsa.DSAPublicKey):
            hash_alg = child.signature_hash_algorithm
            if hash_alg is None:
                return False
            key.verify(signature, tbs, hash_alg)
        else:
            return False
    except InvalidSignature:
        return False
    return True
