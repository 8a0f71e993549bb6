"""Private keys: the types the keystore takes, matching a key to its certificate, storing and
generating keys, and making sure a key from an uploaded file is what it claims at little cost.

Private keys from files are loaded without cryptography's RSA validation, whose primality tests
cost more than any other step (84 s for a 1 MiB file of RSA-4096 key pairs): an RSA key above
MAX_RSA_KEY_BITS is refused before it is used, and every other one proves its consistency with
a few multiplications and one signature (see prove_key).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from keystore.crypto.errors import CryptoError

#: The largest RSA key an uploaded file may hold. A private-key operation costs about the cube
#: of the size (2 to 5 ms at 4096 bits, eight times as much for each doubling), and
#: cryptography's validation of a key, skipped for uploads (see prove_key), 0.3 s at 4096 bits
#: and seconds beyond.
MAX_RSA_KEY_BITS = 4096
#: The smallest: the proof of consistency signs a SHA-256 digest, which needs 496 bits.
MIN_RSA_KEY_BITS = 512

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

_PRIVATE_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def private_key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` carries the public half of ``key``."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return key.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ) == cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    except Exception:
        return False


def public_key_der(holder: x509.Certificate | PrivateKeyTypes) -> bytes | None:
    """The SubjectPublicKeyInfo of a certificate or a private key, as private_key_matches
    compares them; None when there is none to compare."""
    try:
        public_key = holder.public_key()
        return public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:
        return None


def untrusted_key(der: bytes, password: bytes | None) -> PrivateKeyTypes:
    """A private key from an uploaded file, loaded without cryptography's validation of RSA
    keys: its primality tests cost 0.3 s per 4096-bit key (84 s for a 1 MiB keystore) and
    seconds for one larger key, whatever the file's other limits. uploaded_key and prove_key
    do the work of that validation at the cost of one signature.

    With a ``password``, cryptography derives the key of an encrypted PKCS#8 structure: the
    caller prices that derivation first (keystore.crypto.kdf).
    """
    return serialization.load_der_private_key(
        der, password=password, unsafe_skip_rsa_key_validation=True
    )


def loaded_key(der: bytes, what: str) -> PrivateKeyTypes:
    """An unencrypted PKCS#8 key from an uploaded file, or a CryptoError naming ``what``."""
    try:
        return untrusted_key(der, None)
    except Exception:
        raise CryptoError(f"{what} could not be read; the file may be damaged.") from None


def supported_key(key: object, what: str) -> PrivateKey:
    """``key`` if the keystore takes its type (RSA, EC, Ed25519, Ed448), else a CryptoError."""
    if isinstance(key, dsa.DSAPrivateKey):
        raise CryptoError(f"{what} is a DSA key; DSA keys are not supported.")
    if not isinstance(key, _PRIVATE_KEY_TYPES):
        raise CryptoError(f"{what} is of a type that is not supported (RSA, EC, Ed25519, Ed448).")
    return key


def uploaded_key(key: object, what: str) -> PrivateKey:
    """A supported key of a size whose use is cheap, refused before it is ever used.

    Only for keys from uploads: keys sealed before the size limit existed must still open.
    """
    key = supported_key(key, what)
    if isinstance(key, rsa.RSAPrivateKey):
        bits = key.key_size
        if bits > MAX_RSA_KEY_BITS:
            raise CryptoError(
                f"{what} is an RSA key of {bits} bits; "
                f"keys above {MAX_RSA_KEY_BITS} bits are not supported."
            )
        if bits < MIN_RSA_KEY_BITS:
            raise CryptoError(
                f"{what} is an RSA key of {bits} bits; "
                f"keys below {MIN_RSA_KEY_BITS} bits are not supported."
            )
    return key


_PROOF_MESSAGE = b"keystore: this RSA key signs what its certificate verifies"


def prove_key(key: PrivateKey, cert: x509.Certificate, what: str) -> None:
    """Stand in for the RSA validation that untrusted_key skips, once ``key`` is known to match
    ``cert`` (same modulus and exponent).

    Two checks, because neither is enough alone. The arithmetic proves that the private
    parameters belong together: OpenSSL checks every CRT result against the public exponent and
    silently recomputes a wrong one with d, so a signature does not reveal a damaged dP, dQ or
    qInv, which other software (Java) would use as they are. The signature proves what the
    arithmetic cannot: that p and q behave as primes, because with a composite factor both
    ways of signing give a wrong result.
    """
    if not isinstance(key, rsa.RSAPrivateKey):
        return  # cryptography validated it on loading, cheaply
    if not rsa_parameters_fit(key.private_numbers()):
        raise CryptoError(f"{what} is damaged: its RSA private parameters do not fit together.")
    try:
        signature = key.sign(_PROOF_MESSAGE, PKCS1v15(), hashes.SHA256())
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise InvalidSignature
        public_key.verify(signature, _PROOF_MESSAGE, PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        # ValueError: OpenSSL will not use the key at all (a public exponent over 64 bits)
        raise CryptoError(
            f"{what} is damaged: a signature made with it does not verify with its certificate."
        ) from None


def rsa_parameters_fit(numbers: rsa.RSAPrivateNumbers) -> bool:
    """OpenSSL's RSA_check_key without its primality tests: a few multiplications and
    remainders, microseconds at any size that uploaded_key lets through."""
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    return (
        p > 2
        and q > 2
        and p % 2 == 1
        and q % 2 == 1
        and p * q == n
        and 1 < e < n
        # OpenSSL falls back on d when a CRT result is wrong: a d beyond n would cost its length
        and 0 < d < n
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        # d inverts e modulo p - 1 and q - 1, so modulo their lcm, as RSA needs
        and e * numbers.dmp1 % (p - 1) == 1
        and e * numbers.dmq1 % (q - 1) == 1
        and 0 < numbers.iqmp < p
        and numbers.iqmp * q % p == 1
    )


def private_key_to_der(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 DER; the caller seals it before it is stored."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(data: bytes) -> PrivateKey:
    """Read a key written by private_key_to_der.

    Only keys that were checked on import get here, and the AEAD seal proves they were not
    altered since, so the costly RSA consistency check is skipped.
    """
    try:
        key = serialization.load_der_private_key(
            bytes(data), password=None, unsafe_skip_rsa_key_validation=True
        )
    except Exception:
        raise CryptoError("The private key could not be read; it may be damaged.") from None
    return supported_key(key, "The private key")


_EC_CURVES: dict[int, ec.EllipticCurve] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}


def generate_key_pair(kind: str = "rsa", size: int | None = None) -> PrivateKey:
    """A new private key: ``rsa`` (2048, 3072, 4096 bits), ``ec`` (256, 384, 521), ``ed25519``
    or ``ed448``.
    """
    if kind == "rsa":
        bits = size or 2048
        if bits not in (2048, 3072, 4096):
            raise CryptoError("RSA keys can have 2048, 3072 or 4096 bits.")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if kind == "ec":
        curve = _EC_CURVES.get(size or 256)
        if curve is None:
            raise CryptoError("EC keys can have 256, 384 or 521 bits.")
        return ec.generate_private_key(curve)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise CryptoError("The key type must be RSA, EC, Ed25519 or Ed448.")


def openssh_public_key(cert: x509.Certificate, comment: str) -> bytes:
    """The certificate's public key as one OpenSSH `authorized_keys` line, with `comment`."""
    try:
        line = cert.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError):
        raise CryptoError(
            "SSH public keys are RSA, EC (P-256, P-384, P-521) or Ed25519 keys; this key is none."
        )
    return line + b" " + " ".join(comment.split()).encode("utf-8") + b"\n"
