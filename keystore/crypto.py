"""Pure cryptography for the tenant keystore: parse, check, order and write keys and certificates.

Nothing here knows about Django, tenants or the database, so it can be tested and benchmarked
alone. Everything that reads untrusted bytes (``load_*``) raises :class:`CryptoError` and nothing
else; its message is a short sentence for an operator and never contains a password or key bytes.

Formats:

* certificates: PEM (one block or a bundle), DER (``.cer``), PKCS#7 certs-only (``.p7b``);
* keystores: PKCS#12 (``.p12``/``.pfx``, any number of key pairs and trusted certificates)
  and Java JKS / JCEKS (read through pyjks).

Why there is a PKCS#12 reader of our own: ``cryptography``'s ``pkcs12.load_pkcs12`` returns a
single private key and turns every other entry into an anonymous "additional certificate".
A keystore holds many key pairs, so :func:`load_pkcs12` walks the PKCS#12 structure itself to
read every SafeBag with its friendlyName (the alias) and localKeyId (which certificate belongs
to which key). Walking it first also prices every key derivation the file asks for (MAC,
encrypted safes, shrouded keys at any depth; JKS and JCEKS keys likewise) and refuses a file
that asks too much before any of that work is done.

Private keys from files are loaded without cryptography's RSA validation, whose primality tests
cost more than any other step (84 s for a 1 MiB file of RSA-4096 key pairs): an RSA key above
MAX_RSA_KEY_BITS is refused before it is used, and every other one proves its consistency with
a few multiplications and one signature (see _prove_key).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jks
from Cryptodome.Cipher import ARC2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.padding import PSS, PKCS1v15
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import base, char, univ
from pyasn1_modules import rfc5652, rfc5958, rfc7292, rfc7914, rfc8018

MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_KEYSTORE_BYTES = 1024 * 1024

#: Key-derivation rounds for exported PKCS#12 files: PBKDF2-HMAC-SHA256 for the keys and
#: certificates (AES-256-CBC), and as many for the MAC's key. A backup of many key pairs takes
#: fewer (see to_pkcs12_keystore), never fewer than MIN_BACKUP_KDF_ROUNDS, keytool's default.
PKCS12_KDF_ROUNDS = 100_000
MIN_BACKUP_KDF_ROUNDS = 10_000

# Key-derivation work that an uploaded file may ask for, in PBKDF2-equivalent iterations (one
# PBKDF2-HMAC-SHA256 iteration in OpenSSL; see "key-derivation cost" below), so that a hostile
# file cannot keep a worker busy for minutes.

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

#: The largest RSA key an uploaded file may hold. A private-key operation costs about the cube
#: of the size (2 to 5 ms at 4096 bits, eight times as much for each doubling), and
#: cryptography's validation of a key, skipped for uploads (see _prove_key), 0.3 s at 4096 bits
#: and seconds beyond.
MAX_RSA_KEY_BITS = 4096
#: The smallest: the proof of consistency signs a SHA-256 digest, which needs 496 bits.
MIN_RSA_KEY_BITS = 512

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"


class CryptoError(ValueError):
    """A clean, user-facing message (never contains key material or passwords)."""


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


@dataclass(frozen=True)
class KeystoreItem:
    """One entry read from a keystore file.

    ``alias`` is the PKCS#12 friendlyName or the JKS alias; it is ``""`` when a PKCS#12 file
    names neither the key nor its certificate (the caller decides what to call it).
    ``private_key`` is ``None`` for a trusted certificate entry, whose ``chain`` is ``[cert]``;
    for a key pair, ``chain`` runs from the key's own certificate (first) towards the root.
    ``problem`` says why an entry cannot be taken (a DSA key, a key under another password);
    such an item has neither key nor chain.
    """

    alias: str
    private_key: PrivateKey | None
    chain: list[x509.Certificate]
    problem: str = ""


# --------------------------------------------------------------------------- facts


def certificate_facts(cert: x509.Certificate) -> CertificateFacts:
    """The derived facts of a certificate, as stored in indexed columns."""
    key_type, key_size = _key_type_and_size(cert)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        subject_cn=_common_name(cert.subject),
        issuer_cn=_common_name(cert.issuer),
        serial=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_algorithm_name(cert),
        fingerprint_sha256=":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)),
        self_signed=_is_self_signed(cert),
    )


def _common_name(name: x509.Name) -> str:
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


def _describe(cert: x509.Certificate) -> str:
    """A short name for messages: the CN, or the whole subject when there is no CN."""
    return _common_name(cert.subject) or cert.subject.rfc4514_string() or "(empty subject)"


# --------------------------------------------------------------------------- signatures


def _is_self_signed(cert: x509.Certificate) -> bool:
    return _signed_by(cert, cert)


# A keystore's key pairs share their issuers, and parsing, ordering, verifying and describing a
# chain each ask again: each (certificate, issuer) signature is verified once. Certificates are
# immutable and compare (and hash) by their DER bytes.
@functools.lru_cache(maxsize=2048)
def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
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


# --------------------------------------------------------------------------- certificate files


_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_UTF8_BOM = b"\xef\xbb\xbf"
_NOT_A_CERTIFICATE = "Not a certificate: the file is neither PEM nor DER X.509."


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Read a PEM file (one or many CERTIFICATE blocks) or a DER certificate.

    A PEM file must hold only CERTIFICATE blocks separated by whitespace: any other text, any
    other block type (a private key above all) or a damaged block rejects the whole file.
    """
    data = _checked_size(data, MAX_CERTIFICATE_BYTES, "64 KiB", "a certificate file")
    try:
        return _load_certificates(data)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The certificate file could not be read; it may be damaged.") from None


def _load_certificates(data: bytes) -> list[x509.Certificate]:
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if not data.strip():
        raise CryptoError("The file is empty.")
    if b"-----BEGIN" not in data:
        return [_parse_der_certificate(data, "The file", invalid=_NOT_A_CERTIFICATE)]
    return [_parse_pem_block(number, label, body) for number, label, body in _pem_blocks(data)]


def _pem_blocks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a PEM file into (number, label, body); reject any text outside the blocks."""
    blocks: list[tuple[int, bytes, bytes]] = []
    position = 0
    while True:
        number = len(blocks) + 1
        begin = _PEM_BEGIN.search(data, position)
        if begin is None:
            if data[position:].strip():
                raise CryptoError(
                    "The file has unexpected text after the last PEM block; "
                    "only CERTIFICATE blocks are allowed."
                    if blocks
                    else _NOT_A_CERTIFICATE
                )
            return blocks
        if data[position : begin.start()].strip():
            raise CryptoError(
                f"The file has unexpected text before PEM block {number}; "
                "only CERTIFICATE blocks are allowed."
            )
        label = begin.group(1)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, begin.end())
        next_begin = data.find(b"-----BEGIN", begin.end())
        if end < 0 or 0 <= next_begin < end:
            raise CryptoError(
                f"PEM block {number} has no END line; the file may be truncated or damaged."
            )
        blocks.append((number, label, data[begin.end() : end]))
        position = end + len(end_line)


def _parse_pem_block(number: int, label: bytes, body: bytes) -> x509.Certificate:
    if b"PRIVATE KEY" in label:
        raise CryptoError(
            f"PEM block {number} is a private key. Only certificates are accepted here; "
            "upload a key pair as a password-protected PKCS#12 file."
        )
    if label not in _CERTIFICATE_LABELS:
        raise CryptoError(
            f"PEM block {number} is a {label.decode('ascii')} block, not a certificate."
        )
    compact = b"".join(body.split())
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        der = b""
    if not der or base64.b64encode(der) != compact:
        raise CryptoError(
            f"PEM block {number} contains text that is not Base64; the file is damaged."
        )
    return _parse_der_certificate(der, f"PEM block {number}")


def _parse_der_certificate(der: bytes, what: str, invalid: str | None = None) -> x509.Certificate:
    """Parse one DER certificate and touch the fields we rely on, which are parsed lazily."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _touched = (
            cert.subject.rfc4514_string(),
            cert.issuer.rfc4514_string(),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.signature_algorithm_oid,
        )
    except Exception:
        raise CryptoError(invalid or f"{what} is not a valid X.509 certificate.") from None
    try:
        cert.public_key()
    except Exception:
        raise CryptoError(f"{what} uses a public key algorithm that is not supported.") from None
    return cert


def _checked_size(data: bytes, limit: int, limit_text: str, kind: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CryptoError("The upload is not a file.")
    if len(data) > limit:
        raise CryptoError(f"The file is larger than {limit_text}, the limit for {kind}.")
    return bytes(data)


# --------------------------------------------------------------------------- keystores


def load_keystore(data: bytes, password: str) -> list[KeystoreItem]:
    """Read a JKS/JCEKS keystore (recognised by its magic number) or a PKCS#12 file, to be
    merged entry by entry: an entry that cannot be taken (a DSA key, a key under another
    password, a key of an unsupported type) comes back as an item with its ``problem``.
    """
    data = _checked_size(data, MAX_KEYSTORE_BYTES, "1 MiB", "a keystore file")
    if not data:
        raise CryptoError("The file is empty.")
    if data[:4] in (JKS_MAGIC, JCEKS_MAGIC):
        return load_jks(data, password, entry_problems=True)
    return load_pkcs12(data, password, entry_problems=True)


def _without_problems(items: list[KeystoreItem]) -> list[KeystoreItem]:
    for item in items:
        if item.problem:
            raise CryptoError(item.problem)
    return items


def load_jks(data: bytes, password: str, *, entry_problems: bool = False) -> list[KeystoreItem]:
    """Read a Java JKS or JCEKS keystore: its key pairs and trusted certificates.

    Secret (symmetric) key entries of a JCEKS file are skipped. Each private key must be
    protected by the keystore password, which is how keytool writes them by default. A key that
    cannot be taken refuses the file, or with ``entry_problems`` becomes an item with a problem.
    """
    data = _checked_size(data, MAX_KEYSTORE_BYTES, "1 MiB", "a keystore file")
    if not data:
        raise CryptoError("The file is empty.")
    if data[:4] not in (JKS_MAGIC, JCEKS_MAGIC):
        raise CryptoError("Not a JKS or JCEKS keystore.")
    try:
        items = _load_jks(data, password)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The Java keystore could not be read; it may be damaged.") from None
    return items if entry_problems else _without_problems(items)


def _load_jks(data: bytes, password: str) -> list[KeystoreItem]:
    try:
        store = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise CryptoError("Wrong password or damaged Java keystore.") from None
    except Exception:
        raise CryptoError(
            "The Java keystore could not be read; it may be damaged or truncated."
        ) from None
    costs = {
        alias: _jks_key_cost(entry)
        for alias, entry in store.entries.items()
        if isinstance(entry, jks.PrivateKeyEntry)
    }
    budget = _KdfBudget()
    budget.plan(costs.values())
    items: list[KeystoreItem] = []
    for alias, entry in store.entries.items():
        if isinstance(entry, jks.PrivateKeyEntry):
            budget.spend(costs[alias])
            key, problem = _jks_private_key(alias, entry, password)
            if key is None:
                items.append(KeystoreItem(alias=alias, private_key=None, chain=[], problem=problem))
                continue
            chain = [
                _parse_der_certificate(der, f"A certificate of '{alias}'")
                for cert_type, der in entry.cert_chain
                if cert_type == "X.509"
            ]
            if not chain:
                raise CryptoError(f"The key '{alias}' has no certificate in the keystore.")
            if not private_key_matches(key, chain[0]):
                raise CryptoError(f"The key '{alias}' does not match its certificate.")
            try:
                _prove_key(key, chain[0], f"The key '{alias}'")
            except CryptoError as error:
                items.append(
                    KeystoreItem(alias=alias, private_key=None, chain=[], problem=str(error))
                )
                continue
            items.append(KeystoreItem(alias=alias, private_key=key, chain=chain))
        elif isinstance(entry, jks.TrustedCertEntry):
            if entry.type != "X.509":
                continue
            cert = _parse_der_certificate(entry.cert, f"The certificate '{alias}'")
            items.append(KeystoreItem(alias=alias, private_key=None, chain=[cert]))
    return items


def _jks_private_key(alias: str, entry: Any, password: str) -> tuple[PrivateKey | None, str]:
    """The entry's key, or None and the reason it cannot be taken."""
    what = f"The key '{alias}'"
    try:
        entry.decrypt(password)
    except jks.util.DecryptionFailureException:
        return None, (
            f"{what} is protected by a password other than the keystore password; "
            "give it the keystore password and try again."
        )
    except jks.util.UnexpectedAlgorithmException:
        return None, f"{what} is protected by an algorithm that is not supported."
    except Exception:
        return None, f"{what} could not be decrypted; it may be damaged."
    try:
        return _uploaded_key(_loaded_key(entry.pkey_pkcs8, what), what), ""
    except CryptoError as error:
        return None, str(error)


_JKS_KEY_PROTECTOR = univ.ObjectIdentifier("1.3.6.1.4.1.42.2.17.1.1")
_JCEKS_KEY_PROTECTOR = univ.ObjectIdentifier("1.3.6.1.4.1.42.2.19.1")


def _jks_key_cost(entry: Any) -> int:
    """What pyjks will spend to decrypt the entry's key, read before it is asked to."""
    # pyjks keeps the protected key in a private attribute and offers no other way to see the
    # iteration count before its decrypt() spends it.
    info, _ = ber_decoder.decode(
        bytes(entry._encrypted), asn1Spec=rfc5958.EncryptedPrivateKeyInfo()
    )
    algorithm = info["encryptionAlgorithm"]
    if algorithm["algorithm"] == _JCEKS_KEY_PROTECTOR:
        parameters = bytes(algorithm["parameters"]) if algorithm["parameters"].isValue else b""
        params, _ = ber_decoder.decode(parameters, asn1Spec=rfc8018.PBEParameter())
        return int(params["iterationCount"]) * _JCEKS_WEIGHT
    if algorithm["algorithm"] == _JKS_KEY_PROTECTOR:
        # one SHA-1 of the password per 20 bytes of key stream, and one to check the result
        return (len(bytes(info["encryptedData"])) // 20 + 2) * _PYTHON_HASH_WEIGHTS["sha1"]
    return 0  # pyjks refuses other algorithms without deriving anything


# ---- key-derivation cost
#
# A password-protected file tells the reader how much work its keys take to derive: iteration
# counts, scrypt's N, r and p. A hostile file asks for minutes of work in a kilobyte, so every
# derivation is priced before anything is derived, each one against MAX_KDF_ITERATIONS and the
# whole file against MAX_KDF_WORK. The unit is one iteration of PBKDF2-HMAC-SHA256 in OpenSSL
# (0.15 µs on the 2-core machine these figures were measured on); the weights below turn the
# other derivations into that unit, per iteration and per output block of the hash.

_PBKDF2_WEIGHTS: dict[univ.ObjectIdentifier, tuple[int, int]] = {  # PRF -> (block bytes, weight)
    rfc8018.id_hmacWithSHA1: (20, 1),
    rfc8018.id_hmacWithSHA224: (28, 1),
    rfc8018.id_hmacWithSHA256: (32, 1),
    rfc8018.id_hmacWithSHA384: (48, 4),
    rfc8018.id_hmacWithSHA512: (64, 4),
}
#: The PKCS#12 key derivation hashes once per iteration and block: in Python (our decryption and
#: MAC check) that costs about three PBKDF2 iterations, in cryptography's Rust about two.
_PYTHON_HASH_WEIGHTS = {"sha1": 3, "sha224": 3, "sha256": 3, "sha384": 6, "sha512": 6}
_PBKDF1_WEIGHT = 2  # PKCS#5 PBES1 (MD5 or SHA-1 with DES or RC2), in cryptography
_SCRYPT_WEIGHT = 4  # per N * r * p
_JCEKS_WEIGHT = 11  # per iteration: two MD5 hashes in pyjks's Python loop
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


class _KdfBudget:
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


def _kdf_cost(algorithm: Any) -> int:
    """The cost of deriving the key of a password-based encryption scheme.

    A scheme that cannot be priced is refused: an uncounted derivation is how scrypt once
    passed as free.
    """
    oid = str(algorithm["algorithm"])
    parameters = bytes(algorithm["parameters"]) if algorithm["parameters"].isValue else b""
    if oid == str(rfc8018.id_PBES2):
        params = _decode(parameters, rfc8018.PBES2_params())
        key_length = _PBES2_KEY_LENGTHS.get(str(params["encryptionScheme"]["algorithm"]), 32)
        return _pbes2_kdf_cost(params["keyDerivationFunc"], key_length)
    if oid.startswith(_PKCS12_PBE) and oid[len(_PKCS12_PBE) :] in _PKCS12_PBE_SCHEMES:
        cipher_name, key_length, _ = _PKCS12_PBE_SCHEMES[oid[len(_PKCS12_PBE) :]]
        iterations = int(_decode(parameters, rfc7292.Pkcs_12PbeParams())["iterations"])
        blocks = -(-key_length // 20) + (0 if cipher_name == "rc4" else 1)  # key, then IV
        return iterations * blocks * _PYTHON_HASH_WEIGHTS["sha1"]
    if oid in _PBES1_OIDS:
        return int(_decode(parameters, rfc8018.PBEParameter())["iterationCount"]) * _PBKDF1_WEIGHT
    raise CryptoError("The PKCS#12 file uses an encryption algorithm that is not supported.")


def _pbes2_kdf_cost(kdf: Any, key_length: int) -> int:
    if kdf["algorithm"] == rfc8018.id_PBKDF2:
        params = _decode(bytes(kdf["parameters"]), rfc8018.PBKDF2_params())
        if params["keyLength"].isValue:
            key_length = int(params["keyLength"])
        # an unknown PRF is refused when it is used; until then it counts like SHA-512 blocks
        block, weight = _PBKDF2_WEIGHTS.get(params["prf"]["algorithm"], (20, 4))
        return int(params["iterationCount"]) * -(-key_length // block) * weight
    if kdf["algorithm"] == rfc7914.id_scrypt:
        params = _decode(bytes(kdf["parameters"]), rfc7914.Scrypt_params())
        n, r, p = (int(params[name]) for name in _SCRYPT_PARAMETERS)
        memory = 128 * r * (n + p + 2)  # as OpenSSL counts it against its own maxmem
        if memory > MAX_SCRYPT_MEMORY:
            raise CryptoError(
                f"A key derivation in the file needs {-(-memory // _MiB):,} MiB of memory "
                f"(scrypt); the limit is {MAX_SCRYPT_MEMORY // _MiB} MiB."
            )
        return n * r * p * _SCRYPT_WEIGHT
    raise CryptoError("The PKCS#12 file uses a key derivation that is not supported.")


_SCRYPT_PARAMETERS = ("costParameter", "blockSize", "parallelizationParameter")


# ---- PKCS#12


_ORACLE_TRUSTED_KEY_USAGE = univ.ObjectIdentifier("2.16.840.1.113894.746875.1.1")
_X509_CERTIFICATE_TYPE = univ.ObjectIdentifier("1.2.840.113549.1.9.22.1")
_MAX_NESTING = 4


class _DamagedError(Exception):
    """An internal signal: the structure is not what PKCS#12 prescribes."""


@dataclass
class _KeyBag:
    key: object | None  # as cryptography loaded it (any type), None when unreadable
    name: str | None
    local_key_id: bytes | None


@dataclass
class _CertBag:
    cert: x509.Certificate
    name: str | None
    local_key_id: bytes | None
    trusted: bool


def load_pkcs12(data: bytes, password: str, *, entry_problems: bool = False) -> list[KeystoreItem]:
    """Read every key pair and certificate of a PKCS#12 file.

    Each private key becomes one item under its friendlyName (else its certificate's, else
    ``""``) with its own chain: the certificate with the same localKeyId (or else the same
    public key) first, then its issuers found among the file's certificates. Certificates
    marked as trusted by Java, and certificates that belong to no key's chain, become
    certificate items. CRL and secret bags are ignored. A key that cannot be taken (DSA, an
    unsupported type, undecryptable) refuses the file, or with ``entry_problems`` becomes an
    item with a problem.
    """
    data = _checked_size(data, MAX_KEYSTORE_BYTES, "1 MiB", "a keystore file")
    if not data:
        raise CryptoError("The file is empty.")
    try:
        items = _load_pkcs12(data, password)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The PKCS#12 file could not be read; it may be damaged.") from None
    return items if entry_problems else _without_problems(items)


def _load_pkcs12(data: bytes, password: str) -> list[KeystoreItem]:
    try:
        mac_data, content, contents = _pfx_parts(data)
        # Unencrypted SafeContents (where keytool keeps the shrouded keys) are decoded once,
        # for pricing and for reading: decoding is the slow part of a large file.
        plain = [_plain_bags(content_info) for content_info in contents]
        safes = [
            _decode(bytes(content_info["content"]), rfc5652.EncryptedData())
            for content_info, bags in zip(contents, plain, strict=True)
            if bags is None and content_info["contentType"] == rfc5652.id_encryptedData
        ]
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("Not a PKCS#12 file, or the file is damaged or truncated.") from None
    budget = _KdfBudget()
    budget.plan(
        [
            _mac_cost(mac_data),
            *(
                _kdf_cost(safe["encryptedContentInfo"]["contentEncryptionAlgorithm"])
                for safe in safes
            ),
            *(cost for bags in plain if bags is not None for _, cost in bags),
        ]
    )
    _verify_mac(mac_data, content, password, budget)
    bags = []
    for content_info, plain_bags in zip(contents, plain, strict=True):
        if plain_bags is None:
            plain_bags = _priced(_leaf_bags(_safe_contents(content_info, password, budget)))
        bags.extend(plain_bags)
    # Keys inside encrypted safes are priced now that they can be seen, before any is derived.
    budget.plan(cost for _, cost in bags)
    keys: list[_KeyBag] = []
    certs: list[_CertBag] = []
    for bag, cost in bags:
        _read_bag(bag, cost, password, budget, keys, certs)
    return _pkcs12_items(keys, certs)


def _pfx_parts(data: bytes) -> tuple[Any, bytes, list[Any]]:
    """The MAC data, the MAC'd content and the ContentInfos of a PKCS#12 file."""
    pfx, _ = ber_decoder.decode(data, asn1Spec=rfc7292.PFX())
    if pfx["authSafe"]["contentType"] != rfc5652.id_data:
        raise CryptoError(
            "The PKCS#12 file is protected by a public key instead of a password; "
            "this is not supported."
        )
    content = bytes(_decode(bytes(pfx["authSafe"]["content"]), univ.OctetString()))
    return pfx["macData"], content, list(_decode(content, rfc7292.AuthenticatedSafe()))


def _plain_bags(content_info: Any) -> list[tuple[Any, int]] | None:
    """The priced bags of an unencrypted (id-data) content, None for any other content type."""
    if content_info["contentType"] != rfc5652.id_data:
        return None
    plain = bytes(_decode(bytes(content_info["content"]), univ.OctetString()))
    return _priced(_leaf_bags(_decode(plain, rfc7292.SafeContents())))


def _leaf_bags(bags: Iterable[Any], depth: int = 0) -> list[Any]:
    """The bags, with the bags of nested safeContents bags in their place."""
    found = []
    for bag in bags:
        if bag["bagId"] != rfc7292.id_safeContentsBag:
            found.append(bag)
            continue
        if depth >= _MAX_NESTING:
            raise _DamagedError("nested too deep")
        found.extend(_leaf_bags(_decode(bytes(bag["bagValue"]), rfc7292.SafeContents()), depth + 1))
    return found


def _priced(bags: list[Any]) -> list[tuple[Any, int]]:
    """Each bag with what decrypting it costs (0 for all but shrouded keys)."""
    priced = []
    for bag in bags:
        cost = 0
        if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
            info = _decode(bytes(bag["bagValue"]), rfc5958.EncryptedPrivateKeyInfo())
            cost = _kdf_cost(info["encryptionAlgorithm"])
        priced.append((bag, cost))
    return priced


def _decode(data: bytes, spec: base.Asn1Type) -> Any:
    value, rest = ber_decoder.decode(data, asn1Spec=spec)
    if rest:
        raise _DamagedError("trailing data")
    return value


# ---- the MAC


_MAC_HASHES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_HMAC_HASHES = {
    rfc8018.id_hmacWithSHA1: "sha1",
    rfc8018.id_hmacWithSHA224: "sha224",
    rfc8018.id_hmacWithSHA256: "sha256",
    rfc8018.id_hmacWithSHA384: "sha384",
    rfc8018.id_hmacWithSHA512: "sha512",
}
_UNSUPPORTED_MAC = "The PKCS#12 file uses a MAC algorithm that is not supported."


def _mac_cost(mac_data: Any) -> int:
    if not mac_data.isValue:
        return 0
    algorithm = mac_data["mac"]["digestAlgorithm"]
    if algorithm["algorithm"] == rfc8018.id_PBMAC1:
        params = _decode(bytes(algorithm["parameters"]), rfc8018.PBMAC1_params())
        return _pbes2_kdf_cost(params["keyDerivationFunc"], 32)
    digest = _MAC_HASHES.get(str(algorithm["algorithm"]))
    if digest is None:
        raise CryptoError(_UNSUPPORTED_MAC)
    return int(mac_data["iterations"]) * _PYTHON_HASH_WEIGHTS[digest]


def _verify_mac(mac_data: Any, content: bytes, password: str, budget: _KdfBudget) -> None:
    """Check the password against the MAC, which is how a wrong password shows reliably.

    A file without a MAC is read as OpenSSL reads it; a wrong password then shows when the
    keys are decrypted.
    """
    if not mac_data.isValue:
        return
    algorithm = mac_data["mac"]["digestAlgorithm"]
    expected = bytes(mac_data["mac"]["digest"])
    cost = _mac_cost(mac_data)
    if algorithm["algorithm"] == rfc8018.id_PBMAC1:
        # RFC 9579: PBKDF2 over the password as UTF-8, then HMAC; macSalt and iterations unused
        params = _decode(bytes(algorithm["parameters"]), rfc8018.PBMAC1_params())
        digest = _HMAC_HASHES.get(params["messageAuthScheme"]["algorithm"])
        if digest is None or params["keyDerivationFunc"]["algorithm"] != rfc8018.id_PBKDF2:
            raise CryptoError(_UNSUPPORTED_MAC)
        budget.spend(cost)
        key = _pbkdf2_key(params["keyDerivationFunc"], password.encode("utf-8"), None)
        if hmac.compare_digest(hmac.new(key, content, digest).digest(), expected):
            return
    else:
        digest = _MAC_HASHES[str(algorithm["algorithm"])]
        salt, iterations = bytes(mac_data["macSalt"]), int(mac_data["iterations"])
        for secret in _bmp_secrets(password):
            budget.spend(cost)
            size = hashlib.new(digest).digest_size
            key = _pkcs12_kdf(secret, salt, iterations, purpose=3, size=size, digest=digest)
            if hmac.compare_digest(hmac.new(key, content, digest).digest(), expected):
                return
    raise CryptoError("Wrong password or damaged PKCS#12 file.")


def _bmp_secrets(password: str) -> list[bytes]:
    """The password as the PKCS#12 key derivation takes it: BMPString bytes with a terminating
    zero. An empty password has two encodings in the wild (two zero bytes, or nothing)."""
    secrets = [password.encode("utf-16-be") + b"\x00\x00"]
    if not password:
        secrets.append(b"")
    return secrets


# ---- SafeContents and bags


def _safe_contents(content_info: Any, password: str, budget: _KdfBudget) -> list[Any]:
    content_type = content_info["contentType"]
    if content_type == rfc5652.id_encryptedData:
        encrypted = _decode(bytes(content_info["content"]), rfc5652.EncryptedData())
        info = encrypted["encryptedContentInfo"]
        if not info["encryptedContent"].isValue:
            return []
        algorithm = info["contentEncryptionAlgorithm"]
        return list(
            _first_that_decodes(
                _pbe_decrypt(algorithm, bytes(info["encryptedContent"]), password, budget),
                rfc7292.SafeContents(),
            )
        )
    if content_type == rfc5652.id_envelopedData:
        raise CryptoError(
            "Part of the PKCS#12 file is encrypted for a recipient's public key; "
            "this is not supported."
        )
    raise _DamagedError("unknown content type")


def _first_that_decodes(candidates: Iterable[bytes], spec: base.Asn1Type) -> Any:
    for plain in candidates:
        decoded = _decode_or_none(plain, spec.clone())
        if decoded is not None:
            return decoded
    raise CryptoError("Wrong password or damaged PKCS#12 file.")


def _decode_or_none(data: bytes, spec: base.Asn1Type) -> Any:
    try:
        return _decode(data, spec)
    except Exception:
        return None


def _read_bag(
    bag: Any,
    cost: int,
    password: str,
    budget: _KdfBudget,
    keys: list[_KeyBag],
    certs: list[_CertBag],
) -> None:
    bag_id = bag["bagId"]
    value = bytes(bag["bagValue"])
    name, local_key_id, trusted = _bag_attributes(bag)
    if bag_id == rfc7292.id_keyBag:
        keys.append(_KeyBag(_private_key_or_none(value, None), name, local_key_id))
    elif bag_id == rfc7292.id_pkcs8ShroudedKeyBag:
        key = _decrypt_shrouded_key(value, cost, password, budget)
        keys.append(_KeyBag(key, name, local_key_id))
    elif bag_id == rfc7292.id_certBag:
        cert_bag = _decode(value, rfc7292.CertBag())
        if cert_bag["certId"] != _X509_CERTIFICATE_TYPE:
            return
        der = bytes(_decode(bytes(cert_bag["certValue"]), univ.OctetString()))
        cert = _parse_der_certificate(der, "A certificate in the PKCS#12 file")
        certs.append(_CertBag(cert, name, local_key_id, trusted))
    # CRL bags and secret bags (symmetric keys) have no place in this keystore.


def _bag_attributes(bag: Any) -> tuple[str | None, bytes | None, bool]:
    name: str | None = None
    local_key_id: bytes | None = None
    trusted = False
    attributes = bag["bagAttributes"]
    if not attributes.isValue:
        return name, local_key_id, trusted
    for attribute in attributes:
        attribute_type = attribute["attrType"]
        values = list(attribute["attrValues"])
        if attribute_type == _ORACLE_TRUSTED_KEY_USAGE:
            trusted = True
        elif not values:
            continue
        elif attribute_type == rfc7292.pkcs_9_at_friendlyName:
            name = str(_decode(bytes(values[0]), char.BMPString()))
        elif attribute_type == rfc7292.pkcs_9_at_localKeyId:
            local_key_id = bytes(_decode(bytes(values[0]), univ.OctetString()))
    return name, local_key_id, trusted


def _loaded_key(der: bytes, what: str) -> object:
    try:
        return _untrusted_key(der, None)
    except Exception:
        raise CryptoError(f"{what} could not be read; the file may be damaged.") from None


def _untrusted_key(der: bytes, password: bytes | None) -> object:
    """A private key from an uploaded file, loaded without cryptography's validation of RSA
    keys: its primality tests cost 0.3 s per 4096-bit key (84 s for a 1 MiB keystore) and
    seconds for one larger key, whatever the file's other limits. _uploaded_key and _prove_key
    do the work of that validation at the cost of one signature."""
    return serialization.load_der_private_key(
        der, password=password, unsafe_skip_rsa_key_validation=True
    )


def _supported_key(key: object, what: str) -> PrivateKey:
    if isinstance(key, dsa.DSAPrivateKey):
        raise CryptoError(f"{what} is a DSA key; DSA keys are not supported.")
    if not isinstance(key, _PRIVATE_KEY_TYPES):
        raise CryptoError(f"{what} is of a type that is not supported (RSA, EC, Ed25519, Ed448).")
    return key


def _uploaded_key(key: object, what: str) -> PrivateKey:
    """A supported key of a size whose use is cheap, refused before it is ever used.

    Only for keys from uploads: keys sealed before the size limit existed must still open.
    """
    key = _supported_key(key, what)
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


def _prove_key(key: PrivateKey, cert: x509.Certificate, what: str) -> None:
    """Stand in for the RSA validation that _untrusted_key skips, once ``key`` is known to match
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
    if not _rsa_parameters_fit(key.private_numbers()):
        raise CryptoError(f"{what} is damaged: its RSA private parameters do not fit together.")
    try:
        signature = key.sign(_PROOF_MESSAGE, PKCS1v15(), hashes.SHA256())
        cert.public_key().verify(signature, _PROOF_MESSAGE, PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        # ValueError: OpenSSL will not use the key at all (a public exponent over 64 bits)
        raise CryptoError(
            f"{what} is damaged: a signature made with it does not verify with its certificate."
        ) from None


def _rsa_parameters_fit(numbers: rsa.RSAPrivateNumbers) -> bool:
    """OpenSSL's RSA_check_key without its primality tests: a few multiplications and
    remainders, microseconds at any size that _uploaded_key lets through."""
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


def _decrypt_shrouded_key(
    der: bytes, cost: int, password: str, budget: _KdfBudget
) -> object | None:
    """Decrypt a pkcs8ShroudedKeyBag (None when the password does not open it).

    cryptography knows PBES2 and PBES1; our own decryption adds the PKCS#12 schemes it lacks
    (two-key 3DES, 128-bit RC2, 40-bit RC4) and the second encoding of an empty password.
    For anything else a second attempt would only derive the same key again.
    """
    budget.spend(cost)
    key = _private_key_or_none(der, password.encode("utf-8"))
    if key is not None:
        return key
    info = _decode(der, rfc5958.EncryptedPrivateKeyInfo())
    algorithm = info["encryptionAlgorithm"]
    if not str(algorithm["algorithm"]).startswith(_PKCS12_PBE):
        return None
    for plain in _pbe_decrypt(algorithm, bytes(info["encryptedData"]), password, budget):
        key = _private_key_or_none(plain, None)
        if key is not None:
            return key
    return None


def _private_key_or_none(der: bytes, password: bytes | None) -> object | None:
    try:
        return _untrusted_key(der, password)
    except Exception:
        return None


def _pkcs12_items(keys: list[_KeyBag], certs: list[_CertBag]) -> list[KeystoreItem]:
    # Indexes built once keep a keystore of many key pairs linear, not quadratic.
    issuers = _by_subject([bag.cert for bag in certs])
    cert_index = _CertIndex(certs)
    positions: dict[x509.Certificate, list[int]] = {}
    for index, bag in enumerate(certs):
        positions.setdefault(bag.cert, []).append(index)
    in_a_chain: set[int] = set()
    items: list[KeystoreItem] = []
    for key_bag in keys:
        if key_bag.key is None:
            items.append(_unreadable_key_item(key_bag, certs, cert_index, in_a_chain))
            continue
        leaf_index = _leaf_for_key(key_bag, cert_index)
        if leaf_index is None:
            what = f"The key '{key_bag.name}'" if key_bag.name else "A key"
            raise CryptoError(f"{what} in the PKCS#12 file has no matching certificate.")
        leaf_bag = certs[leaf_index]
        chain = _chain_from(leaf_bag.cert, issuers)
        in_a_chain.add(leaf_index)
        # keytool stores a chain certificate once per key pair that uses it
        for member in chain:
            in_a_chain.update(positions.get(member, ()))
        alias = key_bag.name or leaf_bag.name or ""
        try:
            key = _uploaded_key(key_bag.key, _key_name(alias))
            _prove_key(key, leaf_bag.cert, _key_name(alias))
        except CryptoError as error:
            items.append(KeystoreItem(alias=alias, private_key=None, chain=[], problem=str(error)))
            continue
        items.append(KeystoreItem(alias=alias, private_key=key, chain=chain))
    for index, cert_bag in enumerate(certs):
        # Java marks trusted-certificate entries explicitly; such an entry stays an entry even
        # when the same certificate also serves in a key pair's chain.
        if cert_bag.trusted or index not in in_a_chain:
            items.append(
                KeystoreItem(alias=cert_bag.name or "", private_key=None, chain=[cert_bag.cert])
            )
    return items


def _key_name(alias: str) -> str:
    return f"The key '{alias}'" if alias else "A private key in the PKCS#12 file"


def _unreadable_key_item(
    key_bag: _KeyBag, certs: list[_CertBag], index: _CertIndex, in_a_chain: set[int]
) -> KeystoreItem:
    """The item of a key that could not be decrypted or read. Its certificate (same localKeyId,
    else same name) is taken with it, so that it does not come back as a trusted certificate
    under the key's alias."""
    alias = key_bag.name or ""
    if key_bag.local_key_id is not None:
        found = index.by_local_key_id.get(key_bag.local_key_id, [])
    else:
        found = index.by_name.get(alias, []) if alias else []
    for position in found:
        in_a_chain.add(position)
        alias = alias or certs[position].name or ""
    return KeystoreItem(
        alias=alias,
        private_key=None,
        chain=[],
        problem=f"{_key_name(alias)} could not be read: the file's password does not open it, "
        "or it is damaged or of an unsupported kind.",
    )


class _CertIndex:
    """A file's certificates (positions in file order) by what its keys are matched with.

    Comparing each key with every certificate took 32 s for a 1 MiB file of EC key pairs
    without localKeyIds: a public key is encoded once here, not once per pair.
    """

    def __init__(self, certs: list[_CertBag]) -> None:
        self.public_keys: list[bytes | None] = []
        self.by_local_key_id: dict[bytes, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        self.untrusted_by_public_key: dict[bytes, list[int]] = {}
        for position, bag in enumerate(certs):
            public_key = _public_key_der(bag.cert)
            self.public_keys.append(public_key)
            if bag.local_key_id is not None:
                self.by_local_key_id.setdefault(bag.local_key_id, []).append(position)
            if bag.name:
                self.by_name.setdefault(bag.name, []).append(position)
            if public_key is not None and not bag.trusted:
                self.untrusted_by_public_key.setdefault(public_key, []).append(position)


def _public_key_der(holder: Any) -> bytes | None:
    """The SubjectPublicKeyInfo of a certificate or a private key, as private_key_matches
    compares them; None when there is none to compare."""
    try:
        public_key = holder.public_key()
        return public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:
        return None


def _leaf_for_key(key_bag: _KeyBag, index: _CertIndex) -> int | None:
    """The key's certificate: the one with its localKeyId and public key, else the first
    untrusted certificate with its public key."""
    public_key = _public_key_der(key_bag.key)
    if public_key is None:
        return None
    if key_bag.local_key_id is not None:
        for position in index.by_local_key_id.get(key_bag.local_key_id, ()):
            if index.public_keys[position] == public_key:
                return position
    found = index.untrusted_by_public_key.get(public_key)
    return found[0] if found else None


def _by_subject(pool: Sequence[x509.Certificate]) -> dict[x509.Name, list[x509.Certificate]]:
    """The pool's certificates by subject, in pool order: a certificate's possible issuers."""
    found: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in pool:
        found.setdefault(cert.subject, []).append(cert)
    return found


def _chain_from(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate] | dict[x509.Name, list[x509.Certificate]],
) -> list[x509.Certificate]:
    """Follow issuers from ``leaf`` through ``pool`` (or its `_by_subject` index) until a
    self-signed root or a gap."""
    issuers = pool if isinstance(pool, dict) else _by_subject(pool)
    chain = [leaf]
    while not _is_self_signed(chain[-1]):
        # Only a certificate whose subject is the issuer's name can have signed it.
        parent = next(
            (
                candidate
                for candidate in issuers.get(chain[-1].issuer, ())
                if all(candidate != member for member in chain) and _signed_by(chain[-1], candidate)
            ),
            None,
        )
        if parent is None:
            break
        chain.append(parent)
    return chain


# ---- password-based decryption (PKCS#5 PBES2 and the legacy PKCS#12 PBE schemes)


_PKCS12_PBE = "1.2.840.113549.1.12.1."
# OID suffix -> (cipher, key bytes, effective RC2 key bits)
_PKCS12_PBE_SCHEMES: dict[str, tuple[str, int, int]] = {
    "1": ("rc4", 16, 0),
    "2": ("rc4", 5, 0),
    "3": ("3des", 24, 0),
    "4": ("3des", 16, 0),
    "5": ("rc2", 16, 128),
    "6": ("rc2", 5, 40),
}
_PBKDF2_PRFS: dict[univ.ObjectIdentifier, hashes.HashAlgorithm] = {
    rfc8018.id_hmacWithSHA1: hashes.SHA1(),  # noqa: S303 - the PBKDF2 default, read-only
    rfc8018.id_hmacWithSHA224: hashes.SHA224(),
    rfc8018.id_hmacWithSHA256: hashes.SHA256(),
    rfc8018.id_hmacWithSHA384: hashes.SHA384(),
    rfc8018.id_hmacWithSHA512: hashes.SHA512(),
}
_PBES2_CIPHERS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.1.2": ("aes", 16),
    "2.16.840.1.101.3.4.1.22": ("aes", 24),
    "2.16.840.1.101.3.4.1.42": ("aes", 32),
    "1.2.840.113549.3.7": ("3des", 24),
}


def _pbe_decrypt(algorithm: Any, data: bytes, password: str, budget: _KdfBudget) -> list[bytes]:
    """Candidate plaintexts (one per password encoding) of password-encrypted data.

    PKCS#12 PBE turns the password into BMPString bytes (see _bmp_secrets), PBES2 into UTF-8.
    Undecryptable data gives ``[]``. Each derivation is paid for from ``budget`` first.
    """
    oid = str(algorithm["algorithm"])
    parameters = bytes(algorithm["parameters"]) if algorithm["parameters"].isValue else b""
    cost = _kdf_cost(algorithm)  # also refuses the schemes we cannot price
    if oid == str(rfc8018.id_PBES2):
        budget.spend(cost)
        plain = _pbes2_decrypt(parameters, data, password.encode("utf-8"))
        return [plain] if plain is not None else []
    if oid.startswith(_PKCS12_PBE) and oid[len(_PKCS12_PBE) :] in _PKCS12_PBE_SCHEMES:
        scheme = _PKCS12_PBE_SCHEMES[oid[len(_PKCS12_PBE) :]]
        params = _decode(parameters, rfc7292.Pkcs_12PbeParams())
        salt, iterations = bytes(params["salt"]), int(params["iterations"])
        results = []
        for secret in _bmp_secrets(password):
            budget.spend(cost)
            plain = _pkcs12_pbe_decrypt(scheme, secret, salt, iterations, data)
            if plain is not None:
                results.append(plain)
        return results
    raise CryptoError("The PKCS#12 file uses an encryption algorithm that is not supported.")


def _pbes2_decrypt(parameters: bytes, data: bytes, secret: bytes) -> bytes | None:
    params = _decode(parameters, rfc8018.PBES2_params())
    scheme = params["encryptionScheme"]
    cipher_name, key_length = _PBES2_CIPHERS.get(str(scheme["algorithm"]), ("", 0))
    if not cipher_name:
        raise CryptoError("The PKCS#12 file uses an encryption algorithm that is not supported.")
    kdf = params["keyDerivationFunc"]
    if kdf["algorithm"] == rfc8018.id_PBKDF2:
        key = _pbkdf2_key(kdf, secret, key_length)
    elif kdf["algorithm"] == rfc7914.id_scrypt:
        scrypt = _decode(bytes(kdf["parameters"]), rfc7914.Scrypt_params())
        n, r, p = (int(scrypt[name]) for name in _SCRYPT_PARAMETERS)
        key = Scrypt(salt=bytes(scrypt["salt"]), length=key_length, n=n, r=r, p=p).derive(secret)
    else:
        raise CryptoError("The PKCS#12 file uses a key derivation that is not supported.")
    iv = bytes(_decode(bytes(scheme["parameters"]), univ.OctetString()))
    block = algorithms.AES(key) if cipher_name == "aes" else TripleDES(key)
    return _cbc_decrypt(block, iv, data)


def _pbkdf2_key(kdf: Any, secret: bytes, key_length: int | None) -> bytes:
    """PBKDF2 as its parameters say; with `key_length` None the parameters must name the
    length (PBMAC1 requires it there)."""
    params = _decode(bytes(kdf["parameters"]), rfc8018.PBKDF2_params())
    salt = params["salt"]
    if salt.getName() != "specified":
        raise _DamagedError("PBKDF2 salt from another source")
    if key_length is None:
        if not params["keyLength"].isValue:
            raise _DamagedError("PBKDF2 key length missing")
        key_length = int(params["keyLength"])
    prf_oid = params["prf"]["algorithm"]
    if prf_oid not in _PBKDF2_PRFS:
        raise CryptoError("The PKCS#12 file uses a key derivation that is not supported.")
    return PBKDF2HMAC(
        algorithm=_PBKDF2_PRFS[prf_oid],
        length=key_length,
        salt=bytes(salt["specified"]),
        iterations=int(params["iterationCount"]),
    ).derive(secret)


def _cbc_decrypt(block: algorithms.AES | TripleDES, iv: bytes, data: bytes) -> bytes | None:
    if len(iv) * 8 != block.block_size or not data or len(data) % len(iv):
        return None
    decryptor = Cipher(block, modes.CBC(iv)).decryptor()
    return _unpad(decryptor.update(data) + decryptor.finalize(), block.block_size)


def _unpad(plain: bytes, block_bits: int) -> bytes | None:
    unpadder = padding.PKCS7(block_bits).unpadder()
    try:
        return unpadder.update(plain) + unpadder.finalize()
    except ValueError:
        return None


def _pkcs12_pbe_decrypt(
    scheme: tuple[str, int, int], secret: bytes, salt: bytes, iterations: int, data: bytes
) -> bytes | None:
    cipher_name, key_length, rc2_bits = scheme
    key = _pkcs12_kdf(secret, salt, iterations, purpose=1, size=key_length)
    if cipher_name == "rc4":
        decryptor = Cipher(ARC4(key), mode=None).decryptor()
        return decryptor.update(data) + decryptor.finalize()
    iv = _pkcs12_kdf(secret, salt, iterations, purpose=2, size=8)
    if cipher_name == "3des":
        # two-key 3DES is K1 K2 K1; spelled out because the 16-byte form is deprecated
        return _cbc_decrypt(TripleDES(key if len(key) == 24 else key + key[:8]), iv, data)
    if not data or len(data) % 8:
        return None
    # Legacy (OpenSSL 1.x / Windows) files encrypt certificates with RC2; we only decrypt.
    rc2 = ARC2.new(key, ARC2.MODE_CBC, iv=iv, effective_keylen=rc2_bits)  # noqa: S304
    return _unpad(rc2.decrypt(data), 64)


def _pkcs12_kdf(
    secret: bytes, salt: bytes, iterations: int, purpose: int, size: int, digest: str = "sha1"
) -> bytes:
    """The PKCS#12 key derivation (RFC 7292, appendix B.2): with SHA-1 for the legacy
    encryption schemes, with the MAC's own hash for the MAC key."""
    hash_function = getattr(hashlib, digest)  # looked up once: the loop below is hot
    u, v = hash_function().digest_size, hash_function().block_size  # output, input bytes

    def fill(value: bytes) -> bytes:
        if not value:
            return b""
        length = v * ((len(value) + v - 1) // v)
        return (value * (length // len(value) + 1))[:length]

    diversifier = bytes([purpose]) * v
    i_block = fill(salt) + fill(secret)
    output = b""
    while len(output) < size:
        a = hash_function(diversifier + i_block).digest()
        for _ in range(iterations - 1):
            a = hash_function(a).digest()
        output += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        i_block = b"".join(
            ((int.from_bytes(i_block[j : j + v], "big") + b) % (1 << (8 * v))).to_bytes(v, "big")
            for j in range(0, len(i_block), v)
        )
    return output[:size]


# --------------------------------------------------------------------------- keys and chains


def private_key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` carries the public half of ``key``."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return key.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ) == cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    except Exception:
        return False


def order_chain(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """Order certificates from the leaf to the root by issuer and signature.

    Duplicates are dropped. The certificates must form one unbroken chain; it may stop short
    of its root (a gap at the top), but no certificate may be left over.
    """
    unique: list[x509.Certificate] = []
    for cert in certs:
        if all(cert != seen for seen in unique):
            unique.append(cert)
    if not unique:
        raise CryptoError("There are no certificates.")
    parents: dict[int, int] = {}
    for child_index, child in enumerate(unique):
        if _is_self_signed(child):
            continue  # a root ends the chain even when a cross-certificate could extend it
        for parent_index, parent in enumerate(unique):
            if parent_index != child_index and _signed_by(child, parent):
                parents[child_index] = parent_index
                break
    issuers = set(parents.values())
    chains: list[list[int]] = []
    for leaf in (index for index in range(len(unique)) if index not in issuers):
        walk = [leaf]
        while walk[-1] in parents and parents[walk[-1]] not in walk:
            walk.append(parents[walk[-1]])
        chains.append(walk)
    if not chains:
        raise CryptoError(
            "The certificates do not form a chain: they certify each other in a loop."
        )
    best = max(chains, key=len)
    if len(best) != len(unique):
        left_over = [_describe(unique[i]) for i in range(len(unique)) if i not in best]
        raise CryptoError(
            "The certificates do not form one chain: "
            + ", ".join(f"'{name}'" for name in left_over)
            + (" is" if len(left_over) == 1 else " are")
            + " not linked to the others (unrelated, or a certificate in between is missing)."
        )
    return [unique[i] for i in best]


def verify_chain(chain: list[x509.Certificate]) -> None:
    """Check that each certificate was signed by the next one; raise on the first broken link."""
    if not chain:
        raise CryptoError("There are no certificates.")
    for number, (child, parent) in enumerate(itertools.pairwise(chain), start=1):
        if child.issuer != parent.subject:
            raise CryptoError(
                f"Link {number} of the chain is broken: '{_describe(child)}' was issued by "
                f"'{child.issuer.rfc4514_string()}', not by '{_describe(parent)}'."
            )
        if not _signed_by(child, parent):
            raise CryptoError(
                f"Link {number} of the chain is broken: the signature of '{_describe(child)}' "
                f"does not verify with the key of '{_describe(parent)}'."
            )
    top = chain[-1]
    if top.issuer == top.subject and not _signed_by(top, top):
        raise CryptoError(f"The self-signature of the root '{_describe(top)}' does not verify.")


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


def check_strength(chain: list[x509.Certificate]) -> list[str]:
    """Reject weak keys and signatures in a chain; return warnings that do not block.

    Refused: RSA keys under 2048 bits, elliptic curves under 256 bits, DSA keys, and SHA-1 or
    MD5 signatures. The one exception is the self-signature of the root at the top of the
    chain: nobody checks it (the root is trusted as such), so it only yields a warning.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for index, cert in enumerate(chain):
        name = _describe(cert)
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
        if index == len(chain) - 1 and _is_self_signed(cert):
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


def root_certificate(chain: list[x509.Certificate]) -> x509.Certificate:
    """The certificate at the top of the chain: its self-signed root, or the certificate itself
    for a one-element chain. When a chain stops short of its root, this is the topmost
    certificate there is (``certificate_facts(...).self_signed`` tells the two apart).
    """
    if not chain:
        raise CryptoError("There are no certificates.")
    return chain[-1]


# --------------------------------------------------------------------------- writing


def to_der(cert: x509.Certificate) -> bytes:
    """The certificate as DER (a ``.cer`` file)."""
    return cert.public_bytes(serialization.Encoding.DER)


def to_pem_chain(chain: Sequence[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks, in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)


def to_p7b(chain: Sequence[x509.Certificate]) -> bytes:
    """A DER PKCS#7 certs-only bundle (a ``.p7b`` file) of the given certificates."""
    if not chain:
        raise CryptoError("There are no certificates.")
    return pkcs7.serialize_certificates(list(chain), serialization.Encoding.DER)


def load_p7b(data: bytes) -> list[x509.Certificate]:
    """The certificates of a DER or PEM PKCS#7 bundle, in the order stored (see order_chain)."""
    data = _checked_size(data, MAX_CERTIFICATE_BYTES, "64 KiB", "a certificate file")
    if not data.strip():
        raise CryptoError("The file is empty.")
    try:
        with warnings.catch_warnings():
            # openssl crl2pkcs7 writes its SET of certificates unsorted (BER, not DER):
            # cryptography reads it and warns, but such files are what CAs hand out.
            warnings.simplefilter("ignore", UserWarning)
            if data.lstrip().startswith(b"-----BEGIN"):
                certs = pkcs7.load_pem_pkcs7_certificates(data)
            else:
                certs = pkcs7.load_der_pkcs7_certificates(data)
    except Exception:
        raise CryptoError("Not a PKCS#7 certificate bundle, or the file is damaged.") from None
    if not certs:
        raise CryptoError("The PKCS#7 bundle holds no certificates.")
    return [_parse_der_certificate(to_der(cert), "A certificate in the bundle") for cert in certs]


def to_pkcs12(
    alias: str, key: PrivateKey, chain: Sequence[x509.Certificate], password: str
) -> bytes:
    """One key pair as a PKCS#12 file: AES-256-CBC with PBKDF2-SHA256 and an HMAC-SHA256 MAC,
    each key derived with PKCS12_KDF_ROUNDS iterations."""
    if not password:
        raise CryptoError("A password is required to export a key pair.")
    if not chain:
        raise CryptoError("The key pair has no certificate.")
    if not private_key_matches(key, chain[0]):
        raise CryptoError("The private key does not match the certificate.")
    data = pkcs12.serialize_key_and_certificates(
        name=alias.encode("utf-8") or None,
        key=key,
        cert=chain[0],
        cas=list(chain[1:]) or None,
        encryption_algorithm=_pkcs12_encryption(password, PKCS12_KDF_ROUNDS),
    )
    return _sealed_pfx(_pfx_parts(data)[2], password, PKCS12_KDF_ROUNDS)


def _pkcs12_encryption(password: str, rounds: int) -> serialization.KeySerializationEncryption:
    return (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(rounds)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode("utf-8"))
    )


def to_pkcs12_keystore(items: Sequence[KeystoreItem], password: str) -> bytes:
    """A whole keystore as one PKCS#12 file, laid out as keytool lays it out: every key pair
    (with its chain) and every trusted certificate under its alias (friendlyName), each key
    encrypted on its own, all certificates in one encrypted safe (AES-256-CBC, PBKDF2-SHA256),
    an HMAC-SHA256 MAC over the whole. Trusted certificates carry Java's trusted-certificate
    attribute, so keytool lists them as trusted entries.

    cryptography writes one key per file, so it writes each key (encrypted) and each entry's
    certificates (with their attributes, unencrypted) alone, and the pieces are joined here.
    One safe for all certificates keeps a restore to one key derivation per key pair. The keys,
    the safe and the MAC all take the rounds of _backup_rounds, so that our own reader can
    restore the file within MAX_KDF_WORK.
    """
    if not password:
        raise CryptoError("A password is required to write a keystore.")
    if not items:
        raise CryptoError("The keystore is empty: there is nothing to write.")
    rounds = _backup_rounds(sum(1 for item in items if item.private_key is not None))
    encryption = _pkcs12_encryption(password, rounds)
    plain = serialization.NoEncryption()
    cert_bags: list[Any] = []
    key_bags: list[Any] = []
    for item in items:
        name = item.alias.encode("utf-8")
        if item.private_key is None:
            trusted = pkcs12.PKCS12Certificate(item.chain[0], name)
            cert_bags.extend(_bags_of(pkcs12.serialize_java_truststore([trusted], plain)))
            continue
        if not private_key_matches(item.private_key, item.chain[0]):
            raise CryptoError(f"{item.alias}: the private key does not match the certificate.")
        [shrouded] = _bags_of(
            pkcs12.serialize_key_and_certificates(name, item.private_key, None, None, encryption)
        )
        cas = list(item.chain[1:]) or None
        for bag in _bags_of(
            pkcs12.serialize_key_and_certificates(name, item.private_key, item.chain[0], cas, plain)
        ):
            if bag["bagId"] == rfc7292.id_keyBag:
                # its friendlyName and localKeyId tie the encrypted key to its certificate
                shrouded["bagAttributes"] = bag["bagAttributes"]
            else:
                cert_bags.append(bag)
        key_bags.append(shrouded)
    contents = [_encrypted_safe(cert_bags, password, rounds)]
    if key_bags:
        contents.append(_plain_safe(key_bags))
    return _sealed_pfx(contents, password, rounds)


#: The share of MAX_KDF_WORK a backup may take: the rest is room for the reader's pricing to
#: grow more careful without making existing backups unreadable.
_BACKUP_KDF_SHARE = 0.95


def _backup_rounds(key_pairs: int) -> int:
    """The rounds of a backup of ``key_pairs`` key pairs: PKCS12_KDF_ROUNDS while the reader's
    price of the whole file stays within its share of MAX_KDF_WORK, else as many as fit, in
    thousands (about 75,000 for 300 key pairs, 11,000 for 2,000), never below keytool's
    MIN_BACKUP_KDF_ROUNDS.

    The MAC takes the rounds of the keys: a password is guessed through the cheapest
    derivation in the file, so more rounds for some parts than for others would buy nothing.
    """
    budget = int(MAX_KDF_WORK * _BACKUP_KDF_SHARE)
    fitting = budget // _backup_kdf_cost(1, key_pairs) // 1000 * 1000
    if fitting < MIN_BACKUP_KDF_ROUNDS:
        base = _backup_kdf_cost(MIN_BACKUP_KDF_ROUNDS, 0)
        most = (budget - base) // (_backup_kdf_cost(MIN_BACKUP_KDF_ROUNDS, 1) - base)
        raise CryptoError(
            f"The keystore has {key_pairs:,} key pairs; a backup can hold at most {most:,}, "
            f"so that restoring it stays within the key-derivation limit for one file "
            f"({MAX_KDF_WORK:,} PBKDF2-equivalent iterations)."
        )
    return min(PKCS12_KDF_ROUNDS, fitting)


def _backup_kdf_cost(rounds: int, key_pairs: int) -> int:
    """What the reader prices a backup at (see "key-derivation cost"): each key and the
    certificates' safe one PBKDF2-HMAC-SHA256 block of 32 bytes (AES-256) per round, the MAC
    the PKCS#12 key derivation with SHA-256, computed in Python."""
    _, pbkdf2_weight = _PBKDF2_WEIGHTS[rfc8018.id_hmacWithSHA256]
    return rounds * ((key_pairs + 1) * pbkdf2_weight + _PYTHON_HASH_WEIGHTS["sha256"])


def _bags_of(data: bytes) -> list[Any]:
    """The bags of the unencrypted safes of a PKCS#12 file that cryptography wrote."""
    bags: list[Any] = []
    for content_info in _pfx_parts(data)[2]:
        if content_info["contentType"] == rfc5652.id_data:
            plain = bytes(_decode(bytes(content_info["content"]), univ.OctetString()))
            bags.extend(_decode(plain, rfc7292.SafeContents()))
    return bags


def _plain_safe(bags: list[Any]) -> Any:
    safe = rfc7292.SafeContents()
    safe.extend(bags)
    content_info = rfc5652.ContentInfo()
    content_info["contentType"] = rfc5652.id_data
    content_info["content"] = der_encoder.encode(univ.OctetString(der_encoder.encode(safe)))
    return content_info


_AES_256_CBC = univ.ObjectIdentifier("2.16.840.1.101.3.4.1.42")


def _encrypted_safe(bags: list[Any], password: str, rounds: int) -> Any:
    """The bags in one safe encrypted as cryptography encrypts certificates: PBES2 with
    PBKDF2-HMAC-SHA256 at ``rounds``, AES-256-CBC."""
    safe = rfc7292.SafeContents()
    safe.extend(bags)
    salt, iv = os.urandom(16), os.urandom(16)
    kdf = rfc8018.PBKDF2_params()
    kdf["salt"]["specified"] = salt
    kdf["iterationCount"] = rounds
    kdf["prf"]["algorithm"] = rfc8018.id_hmacWithSHA256
    kdf["prf"]["parameters"] = der_encoder.encode(univ.Null(""))
    params = rfc8018.PBES2_params()
    params["keyDerivationFunc"]["algorithm"] = rfc8018.id_PBKDF2
    params["keyDerivationFunc"]["parameters"] = der_encoder.encode(kdf)
    params["encryptionScheme"]["algorithm"] = _AES_256_CBC
    params["encryptionScheme"]["parameters"] = der_encoder.encode(univ.OctetString(iv))
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=rounds).derive(
        password.encode("utf-8")
    )
    padder = padding.PKCS7(128).padder()
    plain = padder.update(der_encoder.encode(safe)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = rfc5652.EncryptedData()
    encrypted["version"] = 0
    info = encrypted["encryptedContentInfo"]
    info["contentType"] = rfc5652.id_data
    info["contentEncryptionAlgorithm"]["algorithm"] = rfc8018.id_PBES2
    info["contentEncryptionAlgorithm"]["parameters"] = der_encoder.encode(params)
    info["encryptedContent"] = encryptor.update(plain) + encryptor.finalize()
    content_info = rfc5652.ContentInfo()
    content_info["contentType"] = rfc5652.id_encryptedData
    content_info["content"] = der_encoder.encode(encrypted)
    return content_info


_SHA256_OID = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


def _sealed_pfx(contents: list[Any], password: str, rounds: int) -> bytes:
    """A PFX of these safes under an HMAC-SHA256 MAC whose key takes ``rounds`` iterations, as
    many as the keys'. cryptography's own MAC always takes 2,048 whatever kdf_rounds says, which
    would make guessing the password through the MAC 50 times cheaper than through the keys."""
    safe = rfc7292.AuthenticatedSafe()
    safe.extend(contents)
    content = der_encoder.encode(safe)
    pfx = rfc7292.PFX()
    pfx["version"] = 3
    pfx["authSafe"]["contentType"] = rfc5652.id_data
    pfx["authSafe"]["content"] = der_encoder.encode(univ.OctetString(content))
    mac_data = pfx["macData"]
    mac_data["mac"]["digestAlgorithm"]["algorithm"] = _SHA256_OID
    mac_data["mac"]["digestAlgorithm"]["parameters"] = der_encoder.encode(univ.Null(""))
    mac_data["macSalt"] = os.urandom(16)
    mac_data["iterations"] = rounds
    mac_key = _pkcs12_kdf(
        _bmp_secrets(password)[0],
        bytes(mac_data["macSalt"]),
        rounds,
        purpose=3,
        size=32,
        digest="sha256",
    )
    mac_data["mac"]["digest"] = hmac.new(mac_key, content, hashlib.sha256).digest()
    return der_encoder.encode(pfx)


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
    return _supported_key(key, "The private key")


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


# --------------------------------------------------------------------------- signing requests

MAX_SUBJECT_LENGTH = 1024


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


def load_certificate_response(data: bytes) -> list[x509.Certificate]:
    """A certificate authority's answer to a signing request: the certificate alone or with its
    chain, as PEM, DER (.cer, .crt) or PKCS#7 (.p7b, .p7c, PEM or DER)."""
    if b"-----BEGIN PKCS7-----" in data[:MAX_CERTIFICATE_BYTES]:
        return load_p7b(data)
    try:
        return load_certificates(data)
    except CryptoError as error:
        if b"-----BEGIN" in data:
            raise
        try:
            return load_p7b(data)  # DER: a certificate failed, a bundle may not
        except CryptoError:
            raise error from None
