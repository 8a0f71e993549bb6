"""Whether one certificate signed another, and what such a check costs.

Every signature check of a certificate by its (candidate) issuer goes through :func:`signed_by`:
the self-signed fact, chain ordering and verification, chain building in the keystore readers
and the connectivity test's view of a server chain. :func:`check_weight` prices one check by the
issuer's key, so that the chain code can cap the checks an uploaded file may cause (see
keystore.crypto.chains).
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
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


# What one signature check costs, in checks with an RSA-2048 key (about 50 µs on the 2-core
# machine of docs/performance.md): measured there with cryptography 48 (OpenSSL 3.0) as P-256
# 1.9, P-384 and P-521 12, Ed25519 2.6, Ed448 5, DSA-2048 7.5, RSA-4096 2.6. RSA and DSA are
# priced by the square of their size, which is what their verification grows with.
_EC_WEIGHTS = {"secp256r1": 2}  # OpenSSL has fast code for P-256 alone
_OTHER_CURVE_WEIGHT = 12
_ED25519_WEIGHT = 3
_ED448_WEIGHT = 6
_DSA_WEIGHT = 8  # per (2048 bits) squared


def check_weight(issuer: x509.Certificate) -> int:
    """The price of checking one signature with ``issuer``'s public key (at least 1)."""
    try:
        key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return 1  # a check with a key nobody can read fails at once
    if isinstance(key, rsa.RSAPublicKey):
        return max(1, -(-(key.key_size**2) // 2048**2))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_WEIGHTS.get(key.curve.name, _OTHER_CURVE_WEIGHT)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return _ED25519_WEIGHT
    if isinstance(key, ed448.Ed448PublicKey):
        return _ED448_WEIGHT
    if isinstance(key, dsa.DSAPublicKey):
        return max(_DSA_WEIGHT, -(-(key.key_size**2) * _DSA_WEIGHT // 2048**2))
    return 1
