"""Writing PKCS#12 files: one key pair (an export) and a whole keystore (a backup), which
openssl and keytool read and our own reader restores within its key-derivation caps.

cryptography writes every bag and encrypts every key; what is assembled here is what it cannot
write: many key pairs in one file (it writes one key per file), all certificates in one
encrypted safe, Java's trusted-certificate attribute on trusted entries, and a MAC whose key
takes as many rounds as the keys (its own MAC always takes 2,048).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5652, rfc7292, rfc8018

from keystore.crypto import kdf
from keystore.crypto.asn1 import decode
from keystore.crypto.errors import CryptoError
from keystore.crypto.items import KeystoreItem
from keystore.crypto.keys import PrivateKey, private_key_matches
from keystore.crypto.pkcs12_import import pfx_parts

#: Key-derivation rounds for exported PKCS#12 files: PBKDF2-HMAC-SHA256 for the keys and
#: certificates (AES-256-CBC), and as many for the MAC's key. A backup of many key pairs takes
#: fewer (see to_pkcs12_keystore), never fewer than MIN_BACKUP_KDF_ROUNDS, keytool's default.
PKCS12_KDF_ROUNDS = 100_000
MIN_BACKUP_KDF_ROUNDS = 10_000


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
    return sealed_pfx(pfx_parts(data)[2], password, PKCS12_KDF_ROUNDS)


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
    the safe and the MAC all take the rounds of backup_rounds, so that our own reader can
    restore the file within MAX_KDF_WORK.
    """
    if not password:
        raise CryptoError("A password is required to write a keystore.")
    if not items:
        raise CryptoError("The keystore is empty: there is nothing to write.")
    rounds = backup_rounds(sum(1 for item in items if item.private_key is not None))
    encryption = _pkcs12_encryption(password, rounds)
    plain = serialization.NoEncryption()
    cert_bags: list[Any] = []
    key_bags: list[Any] = []
    for item in items:
        name = item.alias.encode("utf-8")
        if item.private_key is None:
            trusted = pkcs12.PKCS12Certificate(item.chain[0], name)
            cert_bags.extend(bags_of(pkcs12.serialize_java_truststore([trusted], plain)))
            continue
        if not private_key_matches(item.private_key, item.chain[0]):
            raise CryptoError(f"{item.alias}: the private key does not match the certificate.")
        [shrouded] = bags_of(
            pkcs12.serialize_key_and_certificates(name, item.private_key, None, None, encryption)
        )
        cas = list(item.chain[1:]) or None
        for bag in bags_of(
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
        contents.append(plain_safe(key_bags))
    return sealed_pfx(contents, password, rounds)


#: The share of MAX_KDF_WORK a backup may take: the rest is room for the reader's pricing to
#: grow more careful without making existing backups unreadable.
_BACKUP_KDF_SHARE = 0.95


def backup_rounds(key_pairs: int) -> int:
    """The rounds of a backup of ``key_pairs`` key pairs: PKCS12_KDF_ROUNDS while the reader's
    price of the whole file stays within its share of MAX_KDF_WORK, else as many as fit, in
    thousands (about 75,000 for 300 key pairs, 11,000 for 2,000), never below keytool's
    MIN_BACKUP_KDF_ROUNDS.

    The MAC takes the rounds of the keys: a password is guessed through the cheapest
    derivation in the file, so more rounds for some parts than for others would buy nothing.
    """
    budget = int(kdf.MAX_KDF_WORK * _BACKUP_KDF_SHARE)
    fitting = budget // backup_kdf_cost(1, key_pairs) // 1000 * 1000
    if fitting < MIN_BACKUP_KDF_ROUNDS:
        base = backup_kdf_cost(MIN_BACKUP_KDF_ROUNDS, 0)
        most = (budget - base) // (backup_kdf_cost(MIN_BACKUP_KDF_ROUNDS, 1) - base)
        raise CryptoError(
            f"The keystore has {key_pairs:,} key pairs; a backup can hold at most {most:,}, "
            f"so that restoring it stays within the key-derivation limit for one file "
            f"({kdf.MAX_KDF_WORK:,} PBKDF2-equivalent iterations)."
        )
    return min(PKCS12_KDF_ROUNDS, fitting)


def backup_kdf_cost(rounds: int, key_pairs: int) -> int:
    """What the reader prices a backup at (see keystore.crypto.kdf): each key and the
    certificates' safe one PBKDF2-HMAC-SHA256 block of 32 bytes (AES-256) per round, the MAC
    the PKCS#12 key derivation with SHA-256, computed in Python."""
    _, pbkdf2_weight = kdf.PBKDF2_WEIGHTS[rfc8018.id_hmacWithSHA256]
    return rounds * ((key_pairs + 1) * pbkdf2_weight + kdf.PYTHON_HASH_WEIGHTS["sha256"])


def bags_of(data: bytes) -> list[Any]:
    """The bags of the unencrypted safes of a PKCS#12 file that cryptography wrote."""
    bags: list[Any] = []
    for content_info in pfx_parts(data)[2]:
        if content_info["contentType"] == rfc5652.id_data:
            plain = bytes(decode(bytes(content_info["content"]), univ.OctetString()))
            bags.extend(decode(plain, rfc7292.SafeContents()))
    return bags


def plain_safe(bags: list[Any]) -> Any:
    """An unencrypted (id-data) ContentInfo of these bags."""
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
    kdf_params = rfc8018.PBKDF2_params()
    kdf_params["salt"]["specified"] = salt
    kdf_params["iterationCount"] = rounds
    kdf_params["prf"]["algorithm"] = rfc8018.id_hmacWithSHA256
    kdf_params["prf"]["parameters"] = der_encoder.encode(univ.Null(""))
    params = rfc8018.PBES2_params()
    params["keyDerivationFunc"]["algorithm"] = rfc8018.id_PBKDF2
    params["keyDerivationFunc"]["parameters"] = der_encoder.encode(kdf_params)
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


def sealed_pfx(contents: list[Any], password: str, rounds: int) -> bytes:
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
    mac_key = kdf.pkcs12_kdf(
        kdf.bmp_secrets(password)[0],
        bytes(mac_data["macSalt"]),
        rounds,
        purpose=3,
        size=32,
        digest="sha256",
    )
    mac_data["mac"]["digest"] = hmac.new(mac_key, content, hashlib.sha256).digest()
    encoded: bytes = der_encoder.encode(pfx)
    return encoded
