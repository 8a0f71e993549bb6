"""Reading Java keystores (JKS and JCEKS) through pyjks: key pairs and trusted certificates,
each key's derivation priced before pyjks spends it, and the signature checks that ordering
their chains will cost priced before the entries are handed on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jks
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.type import univ
from pyasn1_modules import rfc5958, rfc8018

from keystore.crypto import chains, kdf, keys
from keystore.crypto.asn1 import parameters_of
from keystore.crypto.certfiles import parse_der_certificate
from keystore.crypto.errors import CryptoError
from keystore.crypto.items import KeystoreItem, keystore_bytes, without_problems
from keystore.crypto.keys import PrivateKey

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"


def load_jks(data: bytes, password: str, *, entry_problems: bool = False) -> list[KeystoreItem]:
    """Read a Java JKS or JCEKS keystore: its key pairs and trusted certificates.

    Secret (symmetric) key entries of a JCEKS file are skipped. Each private key must be
    protected by the keystore password, which is how keytool writes them by default. A key that
    cannot be taken refuses the file, or with ``entry_problems`` becomes an item with a problem.
    """
    data = keystore_bytes(data)
    if data[:4] not in (JKS_MAGIC, JCEKS_MAGIC):
        raise CryptoError("Not a JKS or JCEKS keystore.")
    try:
        items = _load_jks(data, password)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The Java keystore could not be read; it may be damaged.") from None
    return items if entry_problems else without_problems(items)


def _load_jks(data: bytes, password: str) -> list[KeystoreItem]:
    try:
        store = jks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except jks.util.KeystoreSignatureException:
        raise CryptoError("Wrong password or damaged Java keystore.") from None
    except Exception:
        raise CryptoError(
            "The Java keystore could not be read; it may be damaged or truncated."
        ) from None
    protected = {
        alias: _protected_key(entry)
        for alias, entry in store.entries.items()
        if isinstance(entry, jks.PrivateKeyEntry)
    }
    budget = kdf.KdfBudget()
    budget.plan(key.cost for key in protected.values())
    items: list[KeystoreItem] = []
    for alias, entry in store.entries.items():
        if isinstance(entry, jks.PrivateKeyEntry):
            budget.spend(protected[alias].cost)
            key, problem = _jks_private_key(alias, protected[alias], store.store_type, password)
            if key is None:
                items.append(KeystoreItem(alias=alias, private_key=None, chain=[], problem=problem))
                continue
            chain = [
                parse_der_certificate(der, f"A certificate of '{alias}'")
                for cert_type, der in entry.cert_chain
                if cert_type == "X.509"
            ]
            if not chain:
                raise CryptoError(f"The key '{alias}' has no certificate in the keystore.")
            if not keys.private_key_matches(key, chain[0]):
                raise CryptoError(f"The key '{alias}' does not match its certificate.")
            try:
                keys.prove_key(key, chain[0], f"The key '{alias}'")
            except CryptoError as error:
                items.append(
                    KeystoreItem(alias=alias, private_key=None, chain=[], problem=str(error))
                )
                continue
            items.append(KeystoreItem(alias=alias, private_key=key, chain=chain))
        elif isinstance(entry, jks.TrustedCertEntry):
            if entry.type != "X.509":
                continue
            cert = parse_der_certificate(entry.cert, f"The certificate '{alias}'")
            items.append(KeystoreItem(alias=alias, private_key=None, chain=[cert]))
    # A Java keystore stores each key's chain as it is; the caller orders and verifies each one,
    # so that work is this file's too.
    chains.SignatureWork().add_orderings((item.chain for item in items), built=False)
    return items


@dataclass(frozen=True)
class _ProtectedKey:
    """A private key entry's protection as the file states it, read once: for pricing and for
    decrypting."""

    algorithm: univ.ObjectIdentifier
    encrypted: bytes
    salt: bytes = b""
    iterations: int = 0
    cost: int = 0


_JKS_KEY_PROTECTOR = univ.ObjectIdentifier("1.3.6.1.4.1.42.2.17.1.1")
_JCEKS_KEY_PROTECTOR = univ.ObjectIdentifier("1.3.6.1.4.1.42.2.19.1")


def _protected_key(entry: Any) -> _ProtectedKey:
    """The entry's protected key and what decrypting it will spend, read before any of it is
    spent. pyjks keeps the protected key in a private attribute and offers no other way to see
    the iteration count before its decrypt() spends it."""
    # Decoded as pyjks decodes it, trailing bytes allowed.
    info, _ = ber_decoder.decode(
        bytes(entry._encrypted), asn1Spec=rfc5958.EncryptedPrivateKeyInfo()
    )
    algorithm = info["encryptionAlgorithm"]["algorithm"]
    encrypted = bytes(info["encryptedData"])
    if algorithm == _JCEKS_KEY_PROTECTOR:
        parameters = parameters_of(info["encryptionAlgorithm"])
        params, _ = ber_decoder.decode(parameters, asn1Spec=rfc8018.PBEParameter())
        iterations = int(params["iterationCount"])
        cost = iterations * kdf.JCEKS_WEIGHT
        return _ProtectedKey(algorithm, encrypted, bytes(params["salt"]), iterations, cost)
    if algorithm == _JKS_KEY_PROTECTOR:
        # one SHA-1 of the password per 20 bytes of key stream, and one to check the result
        cost = (len(encrypted) // 20 + 2) * kdf.PYTHON_HASH_WEIGHTS["sha1"]
        return _ProtectedKey(algorithm, encrypted, cost=cost)
    return _ProtectedKey(algorithm, encrypted)  # refused below without deriving anything


def _jks_private_key(
    alias: str, protected: _ProtectedKey, store_type: str, password: str
) -> tuple[PrivateKey | None, str]:
    """The entry's key, or None and the reason it cannot be taken.

    The decryption is pyjks's (Java's key protector, and JCEKS's PBEWithMD5AndTripleDES), fed
    with what _protected_key read: pyjks's own decrypt() would decode the entry again, and the
    decrypted PKCS#8 too, which cryptography parses anyway.
    """
    what = f"The key '{alias}'"
    try:
        if protected.algorithm == _JKS_KEY_PROTECTOR:
            plain = jks.sun_crypto.jks_pkey_decrypt(protected.encrypted, password)
        elif protected.algorithm == _JCEKS_KEY_PROTECTOR and store_type == "jceks":
            plain = jks.sun_crypto.jce_pbe_decrypt(
                protected.encrypted, password, protected.salt, protected.iterations
            )
        else:
            return None, f"{what} is protected by an algorithm that is not supported."
    except (jks.util.BadHashCheckException, jks.util.BadPaddingException):
        return None, (
            f"{what} is protected by a password other than the keystore password; "
            "give it the keystore password and try again."
        )
    except Exception:
        return None, f"{what} could not be decrypted; it may be damaged."
    try:
        return keys.uploaded_key(keys.loaded_key(plain, what), what), ""
    except CryptoError as error:
        return None, str(error)
