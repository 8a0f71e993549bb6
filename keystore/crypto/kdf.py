"""Key derivation for password-protected keystores: what each derivation a file asks for costs,
the caps on one derivation and on a whole file, and the derivations themselves.

A password-protected file tells the reader how much work its keys take to derive: iteration
counts, scrypt's N, r and p. A hostile file asks for minutes of work in a kilobyte, so every
derivation is priced before anything is derived, each one against MAX_KDF_ITERATIONS and the
whole file against MAX_KDF_WORK, whoever runs it: our own code (the PKCS#12 MAC and key
derivation, PBES2 safes), cryptography (shrouded keys, through keystore.crypto.keys.untrusted_key)
or pyjks (JKS and JCEKS keys). The unit is one iteration of PBKDF2-HMAC-SHA256 in OpenSSL
(0.15 µs on the 2-core machine these figures were measured on); the weights below turn the
other derivations into that unit, per iteration and per output block of the hash.

Every derivation of a reader runs through this module (pbkdf2_key, scrypt_key, pkcs12_kdf), or
through cryptography after KdfBudget.spend; tests replace these to prove that nothing is
derived before the price was paid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pyasn1.type import univ
from pyasn1_modules import rfc7292, rfc7914, rfc8018

from keystore.crypto.asn1 import DamagedError, decode, parameters_of
from keystore.crypto.errors import CryptoError

#: One derivation: about 0.75 s. Real files ask for 2,048 (OpenSSL) to 600,000 (OWASP's advice
#: for PBKDF2-SHA256); a JCEKS key at keytool's 200,000 iterations costs 2,200,000.
MAX_KDF_ITERATIONS = 5_000_000
#: A whole file: about 3.6 s. A keystore that keytool writes with its defaults costs 10,000 per
#: key pair (PBES2, PBKDF2-SHA256, 10,000 iterations) plus about 40,000 for the certificates
#: and the MAC: 2,000 key pairs need 20,040,000.
MAX_KDF_WORK = 24_000_000
#: scrypt's memory (128 * r * (N + p + 2) bytes): OpenSSL's own default ceiling, twice what
#: ``openssl pkcs8 -scrypt`` uses.
MAX_SCRYPT_MEMORY = 32 * 1024 * 1024

PBKDF2_WEIGHTS: dict[univ.ObjectIdentifier, tuple[int, int]] = {  # PRF -> (block bytes, weight)
    rfc8018.id_hmacWithSHA1: (20, 1),
    rfc8018.id_hmacWithSHA224: (28, 1),
    rfc8018.id_hmacWithSHA256: (32, 1),
    rfc8018.id_hmacWithSHA384: (48, 4),
    rfc8018.id_hmacWithSHA512: (64, 4),
}
#: The PKCS#12 key derivation hashes once per iteration and block: in Python (our decryption and
#: MAC check) that costs about three PBKDF2 iterations, in cryptography's Rust about two.
PYTHON_HASH_WEIGHTS = {"sha1": 3, "sha224": 3, "sha256": 3, "sha384": 6, "sha512": 6}
_PBKDF1_WEIGHT = 2  # PKCS#5 PBES1 (MD5 or SHA-1 with DES or RC2), in cryptography
_SCRYPT_WEIGHT = 4  # per N * r * p
JCEKS_WEIGHT = 11  # per iteration: two MD5 hashes in pyjks's Python loop
_PBES1_OIDS = {f"1.2.840.113549.1.5.{n}" for n in (1, 3, 4, 6, 10, 11)}
_PBES2_KEY_LENGTHS = {
    "2.16.840.1.101.3.4.1.2": 16,  # AES-128-CBC
    "2.16.840.1.101.3.4.1.22": 24,  # AES-192-CBC
    "2.16.840.1.101.3.4.1.42": 32,  # AES-256-CBC
    "1.2.840.113549.3.7": 24,  # DES-EDE3-CBC
    "1.2.840.113549.3.2": 16,  # RC2-CBC
    "1.3.14.3.2.7": 8,  # DES-CBC
}
_MiB = 1024 * 1024

#: The PKCS#12 password-based encryption schemes (RFC 7292, appendix C), by OID suffix:
#: (cipher, key bytes, effective RC2 key bits).
PKCS12_PBE = "1.2.840.113549.1.12.1."
PKCS12_PBE_SCHEMES: dict[str, tuple[str, int, int]] = {
    "1": ("rc4", 16, 0),
    "2": ("rc4", 5, 0),
    "3": ("3des", 24, 0),
    "4": ("3des", 16, 0),
    "5": ("rc2", 16, 128),
    "6": ("rc2", 5, 40),
}
SCRYPT_PARAMETERS = ("costParameter", "blockSize", "parallelizationParameter")
UNSUPPORTED_ENCRYPTION = "The PKCS#12 file uses an encryption algorithm that is not supported."
UNSUPPORTED_KDF = "The PKCS#12 file uses a key derivation that is not supported."


class KdfBudget:
    """The key-derivation work one file may cost.

    ``plan`` is told the work still to come and refuses the file before any of it is spent;
    ``spend`` is called right before each derivation, so that work the plan could not foresee
    (a second password encoding, a retry) can never exceed the limit either.
    """

    def __init__(self) -> None:
        self.spent = 0

    def plan(self, costs: Iterable[int]) -> None:
        total = self.spent
        for cost in costs:
            if cost > MAX_KDF_ITERATIONS:
                raise CryptoError(
                    f"A key derivation in the file needs {cost:,} PBKDF2-equivalent iterations; "
                    f"the limit is {MAX_KDF_ITERATIONS:,}."
                )
            total += cost
        if total > MAX_KDF_WORK:
            raise CryptoError(
                f"The file needs more key-derivation work than allowed ({total:,} "
                f"PBKDF2-equivalent iterations in total; the limit is {MAX_KDF_WORK:,})."
            )

    def spend(self, cost: int) -> None:
        self.plan([cost])
        self.spent += cost


def kdf_cost(algorithm: Any) -> int:
    """The cost of deriving the key of a password-based encryption scheme (an
    AlgorithmIdentifier as pyasn1 decoded it).

    A scheme that cannot be priced is refused: an uncounted derivation is how scrypt once
    passed as free.
    """
    oid = str(algorithm["algorithm"])
    parameters = parameters_of(algorithm)
    if oid == str(rfc8018.id_PBES2):
        params = decode(parameters, rfc8018.PBES2_params())
        key_length = _PBES2_KEY_LENGTHS.get(str(params["encryptionScheme"]["algorithm"]), 32)
        return pbes2_kdf_cost(params["keyDerivationFunc"], key_length)
    if oid.startswith(PKCS12_PBE) and oid[len(PKCS12_PBE) :] in PKCS12_PBE_SCHEMES:
        cipher_name, key_length, _ = PKCS12_PBE_SCHEMES[oid[len(PKCS12_PBE) :]]
        iterations = int(decode(parameters, rfc7292.Pkcs_12PbeParams())["iterations"])
        blocks = -(-key_length // 20) + (0 if cipher_name == "rc4" else 1)  # key, then IV
        return iterations * blocks * PYTHON_HASH_WEIGHTS["sha1"]
    if oid in _PBES1_OIDS:
        return int(decode(parameters, rfc8018.PBEParameter())["iterationCount"]) * _PBKDF1_WEIGHT
    raise CryptoError(UNSUPPORTED_ENCRYPTION)


def pbes2_kdf_cost(kdf: Any, key_length: int) -> int:
    """The cost of a PBES2 key derivation function (PBKDF2 or scrypt) for ``key_length`` bytes,
    unless its parameters name their own length."""
    if kdf["algorithm"] == rfc8018.id_PBKDF2:
        params = decode(bytes(kdf["parameters"]), rfc8018.PBKDF2_params())
        if params["keyLength"].isValue:
            key_length = int(params["keyLength"])
        # an unknown PRF is refused when it is used; until then it counts like SHA-512 blocks
        block, weight = PBKDF2_WEIGHTS.get(params["prf"]["algorithm"], (20, 4))
        return int(params["iterationCount"]) * -(-key_length // block) * weight
    if kdf["algorithm"] == rfc7914.id_scrypt:
        params = decode(bytes(kdf["parameters"]), rfc7914.Scrypt_params())
        n, r, p = (int(params[name]) for name in SCRYPT_PARAMETERS)
        memory = 128 * r * (n + p + 2)  # as OpenSSL counts it against its own maxmem
        if memory > MAX_SCRYPT_MEMORY:
            raise CryptoError(
                f"A key derivation in the file needs {-(-memory // _MiB):,} MiB of memory "
                f"(scrypt); the limit is {MAX_SCRYPT_MEMORY // _MiB} MiB."
            )
        return n * r * p * _SCRYPT_WEIGHT
    raise CryptoError(UNSUPPORTED_KDF)


# ---- the derivations


_PBKDF2_PRFS: dict[univ.ObjectIdentifier, hashes.HashAlgorithm] = {
    rfc8018.id_hmacWithSHA1: hashes.SHA1(),  # noqa: S303 - the PBKDF2 default, read-only
    rfc8018.id_hmacWithSHA224: hashes.SHA224(),
    rfc8018.id_hmacWithSHA256: hashes.SHA256(),
    rfc8018.id_hmacWithSHA384: hashes.SHA384(),
    rfc8018.id_hmacWithSHA512: hashes.SHA512(),
}


def pbkdf2_key(kdf: Any, secret: bytes, key_length: int | None) -> bytes:
    """PBKDF2 as its parameters (a PBES2 keyDerivationFunc) say; with ``key_length`` None the
    parameters must name the length (PBMAC1 requires it there)."""
    params = decode(bytes(kdf["parameters"]), rfc8018.PBKDF2_params())
    salt = params["salt"]
    if salt.getName() != "specified":
        raise DamagedError("PBKDF2 salt from another source")
    if key_length is None:
        if not params["keyLength"].isValue:
            raise DamagedError("PBKDF2 key length missing")
        key_length = int(params["keyLength"])
    prf_oid = params["prf"]["algorithm"]
    if prf_oid not in _PBKDF2_PRFS:
        raise CryptoError(UNSUPPORTED_KDF)
    return PBKDF2HMAC(
        algorithm=_PBKDF2_PRFS[prf_oid],
        length=key_length,
        salt=bytes(salt["specified"]),
        iterations=int(params["iterationCount"]),
    ).derive(secret)


def scrypt_key(kdf: Any, secret: bytes, key_length: int) -> bytes:
    """scrypt as its parameters (a PBES2 keyDerivationFunc) say."""
    params = decode(bytes(kdf["parameters"]), rfc7914.Scrypt_params())
    n, r, p = (int(params[name]) for name in SCRYPT_PARAMETERS)
    return Scrypt(salt=bytes(params["salt"]), length=key_length, n=n, r=r, p=p).derive(secret)


def bmp_secrets(password: str) -> list[bytes]:
    """The password as the PKCS#12 key derivation takes it: BMPString bytes with a terminating
    zero. An empty password has two encodings in the wild (two zero bytes, or nothing)."""
    secrets = [password.encode("utf-16-be") + b"\x00\x00"]
    if not password:
        secrets.append(b"")
    return secrets


def pkcs12_kdf(
    secret: bytes, salt: bytes, iterations: int, purpose: int, size: int, digest: str = "sha1"
) -> bytes:
    """The PKCS#12 key derivation (RFC 7292, appendix B.2): with SHA-1 for the legacy
    encryption schemes, with the MAC's own hash for the MAC key. cryptography has it inside
    its PKCS#12 reader only, which derives every key of a file with no price asked."""
    hash_function = getattr(hashlib, digest)  # looked up once: the loop below is hot
    u: int = hash_function().digest_size  # output bytes
    v: int = hash_function().block_size  # input bytes

    def fill(value: bytes) -> bytes:
        if not value:
            return b""
        length = v * ((len(value) + v - 1) // v)
        return (value * (length // len(value) + 1))[:length]

    diversifier = bytes([purpose]) * v
    i_block = fill(salt) + fill(secret)
    output = b""
    while len(output) < size:
        a: bytes = hash_function(diversifier + i_block).digest()
        for _ in range(iterations - 1):
            a = hash_function(a).digest()
        output += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        i_block = b"".join(
            ((int.from_bytes(i_block[j : j + v], "big") + b) % (1 << (8 * v))).to_bytes(v, "big")
            for j in range(0, len(i_block), v)
        )
    return output[:size]
