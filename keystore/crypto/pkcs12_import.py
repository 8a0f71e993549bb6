"""Reading PKCS#12 keystores (``.p12``/``.pfx``): every key pair and trusted certificate, each
under its alias, with every key derivation and signature check priced before it is made.

Why a reader of our own, around cryptography: ``pkcs12.load_pkcs12`` returns a single private
key and turns every other key pair into anonymous "additional certificates"; it keeps neither
the localKeyId that ties a key to its certificate nor Java's trusted-certificate attribute; and
it checks the MAC and decrypts every safe and key itself, so nothing it derives can be priced
first (one kilobyte can ask it for minutes of work). So the walk over the PFX, its safes and
bags (RFC 7292) is ours, and so is every derivation only that walk can reach: the MAC (the
PKCS#12 key derivation), encrypted safes, and keys inside them or under the PKCS#12 schemes
cryptography's key loader lacks (keystore.crypto.pbe). What cryptography does do is every
shrouded key under PBES1 and PBES2 and the usual PKCS#12 schemes
(``load_der_private_key(bag, password)``, after its derivation was paid for), every cipher and
PBKDF2, and parsing every key and certificate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc5652, rfc5958, rfc7292, rfc8018

from keystore.crypto import chains, kdf, keys, pbe
from keystore.crypto.asn1 import DamagedError, decode
from keystore.crypto.certfiles import parse_der_certificate
from keystore.crypto.errors import CryptoError
from keystore.crypto.items import KeystoreItem, keystore_bytes, without_problems

_ORACLE_TRUSTED_KEY_USAGE = univ.ObjectIdentifier("2.16.840.1.113894.746875.1.1")
_X509_CERTIFICATE_TYPE = univ.ObjectIdentifier("1.2.840.113549.1.9.22.1")
_MAX_NESTING = 4
_WRONG_PASSWORD = "Wrong password or damaged PKCS#12 file."


_Attributes = tuple[str | None, bytes | None, bool]  # friendlyName, localKeyId, trusted


@dataclass
class _KeyBag:
    key: PrivateKeyTypes | None  # as cryptography loaded it (any type), None when unreadable
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
    data = keystore_bytes(data)
    try:
        items = _load_pkcs12(data, password)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The PKCS#12 file could not be read; it may be damaged.") from None
    return items if entry_problems else without_problems(items)


def _load_pkcs12(data: bytes, password: str) -> list[KeystoreItem]:
    try:
        mac_data, content, contents = pfx_parts(data)
        # Unencrypted SafeContents (where keytool keeps the shrouded keys) are decoded once,
        # for pricing and for reading: decoding is the slow part of a large file.
        plain = [plain_bags(content_info) for content_info in contents]
        safes = [
            decode(bytes(content_info["content"]), rfc5652.EncryptedData())
            for content_info, bags in zip(contents, plain, strict=True)
            if bags is None and content_info["contentType"] == rfc5652.id_encryptedData
        ]
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("Not a PKCS#12 file, or the file is damaged or truncated.") from None
    budget = kdf.KdfBudget()
    budget.plan(
        [
            _mac_cost(mac_data),
            *(
                kdf.kdf_cost(safe["encryptedContentInfo"]["contentEncryptionAlgorithm"])
                for safe in safes
            ),
            *(cost for bags in plain if bags is not None for _, cost in bags),
        ]
    )
    _verify_mac(mac_data, content, password, budget)
    bags = []
    for content_info, plain_bags_of_safe in zip(contents, plain, strict=True):
        found = plain_bags_of_safe
        if found is None:
            found = _priced(_leaf_bags(_safe_contents(content_info, password, budget)))
        bags.extend(found)
    # Keys inside encrypted safes are priced now that they can be seen, before any is derived.
    budget.plan(cost for _, cost in bags)
    attributes = [_bag_attributes(bag) for bag, _ in bags]
    certs = [
        cert_bag
        for (bag, _), found in zip(bags, attributes, strict=True)
        if (cert_bag := _read_cert_bag(bag, found)) is not None
    ]
    # The signature checks of the certificates' chains are priced before any key is derived.
    issuers = chains.IssuerIndex(cert_bag.cert for cert_bag in certs)
    work = chains.SignatureWork()
    work.add(issuers.price())
    key_bags = [
        _read_key_bag(bag, cost, name, local_key_id, password, budget)
        for (bag, cost), (name, local_key_id, _) in zip(bags, attributes, strict=True)
        if bag["bagId"] in (rfc7292.id_keyBag, rfc7292.id_pkcs8ShroudedKeyBag)
    ]
    items = _pkcs12_items(key_bags, certs, issuers)
    work.add_orderings((item.chain for item in items), built=True)
    return items


def pfx_parts(data: bytes) -> tuple[Any, bytes, list[Any]]:
    """The MAC data, the MAC'd content and the ContentInfos of a PKCS#12 file."""
    pfx, _ = ber_decoder.decode(data, asn1Spec=rfc7292.PFX())
    if pfx["authSafe"]["contentType"] != rfc5652.id_data:
        raise CryptoError(
            "The PKCS#12 file is protected by a public key instead of a password; "
            "this is not supported."
        )
    content = bytes(decode(bytes(pfx["authSafe"]["content"]), univ.OctetString()))
    return pfx["macData"], content, list(decode(content, rfc7292.AuthenticatedSafe()))


def plain_bags(content_info: Any) -> list[tuple[Any, int]] | None:
    """The priced bags of an unencrypted (id-data) content, None for any other content type."""
    if content_info["contentType"] != rfc5652.id_data:
        return None
    plain = bytes(decode(bytes(content_info["content"]), univ.OctetString()))
    return _priced(_leaf_bags(decode(plain, rfc7292.SafeContents())))


def _leaf_bags(bags: Iterable[Any], depth: int = 0) -> list[Any]:
    """The bags, with the bags of nested safeContents bags in their place."""
    found = []
    for bag in bags:
        if bag["bagId"] != rfc7292.id_safeContentsBag:
            found.append(bag)
            continue
        if depth >= _MAX_NESTING:
            raise DamagedError("nested too deep")
        found.extend(_leaf_bags(decode(bytes(bag["bagValue"]), rfc7292.SafeContents()), depth + 1))
    return found


def _priced(bags: list[Any]) -> list[tuple[Any, int]]:
    """Each bag with what decrypting it costs (0 for all but shrouded keys)."""
    priced = []
    for bag in bags:
        cost = 0
        if bag["bagId"] == rfc7292.id_pkcs8ShroudedKeyBag:
            info = decode(bytes(bag["bagValue"]), rfc5958.EncryptedPrivateKeyInfo())
            cost = kdf.kdf_cost(info["encryptionAlgorithm"])
        priced.append((bag, cost))
    return priced


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
        params = decode(bytes(algorithm["parameters"]), rfc8018.PBMAC1_params())
        return kdf.pbes2_kdf_cost(params["keyDerivationFunc"], 32)
    digest = _MAC_HASHES.get(str(algorithm["algorithm"]))
    if digest is None:
        raise CryptoError(_UNSUPPORTED_MAC)
    return int(mac_data["iterations"]) * kdf.PYTHON_HASH_WEIGHTS[digest]


def _verify_mac(mac_data: Any, content: bytes, password: str, budget: kdf.KdfBudget) -> None:
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
        params = decode(bytes(algorithm["parameters"]), rfc8018.PBMAC1_params())
        digest = _HMAC_HASHES.get(params["messageAuthScheme"]["algorithm"])
        if digest is None or params["keyDerivationFunc"]["algorithm"] != rfc8018.id_PBKDF2:
            raise CryptoError(_UNSUPPORTED_MAC)
        budget.spend(cost)
        key = kdf.pbkdf2_key(params["keyDerivationFunc"], password.encode("utf-8"), None)
        if hmac.compare_digest(hmac.new(key, content, digest).digest(), expected):
            return
    else:
        digest = _MAC_HASHES[str(algorithm["algorithm"])]
        salt, iterations = bytes(mac_data["macSalt"]), int(mac_data["iterations"])
        for secret in kdf.bmp_secrets(password):
            budget.spend(cost)
            size = hashlib.new(digest).digest_size
            key = kdf.pkcs12_kdf(secret, salt, iterations, purpose=3, size=size, digest=digest)
            if hmac.compare_digest(hmac.new(key, content, digest).digest(), expected):
                return
    raise CryptoError(_WRONG_PASSWORD)


# ---- SafeContents and bags


def _safe_contents(content_info: Any, password: str, budget: kdf.KdfBudget) -> list[Any]:
    content_type = content_info["contentType"]
    if content_type == rfc5652.id_encryptedData:
        encrypted = decode(bytes(content_info["content"]), rfc5652.EncryptedData())
        info = encrypted["encryptedContentInfo"]
        if not info["encryptedContent"].isValue:
            return []
        algorithm = info["contentEncryptionAlgorithm"]
        return list(
            _first_that_decodes(
                pbe.pbe_decrypt(algorithm, bytes(info["encryptedContent"]), password, budget)
            )
        )
    if content_type == rfc5652.id_envelopedData:
        raise CryptoError(
            "Part of the PKCS#12 file is encrypted for a recipient's public key; "
            "this is not supported."
        )
    raise DamagedError("unknown content type")


def _first_that_decodes(candidates: Iterable[bytes]) -> Any:
    """The first candidate plaintext that is a SafeContents (a wrong key gives garbage)."""
    for plain in candidates:
        decoded = _decode_or_none(plain)
        if decoded is not None:
            return decoded
    raise CryptoError(_WRONG_PASSWORD)


def _decode_or_none(data: bytes) -> Any:
    try:
        return decode(data, rfc7292.SafeContents())
    except Exception:
        return None


def _read_cert_bag(bag: Any, attributes: _Attributes) -> _CertBag | None:
    """The certificate of an X.509 certificate bag, None for any other bag."""
    if bag["bagId"] != rfc7292.id_certBag:
        return None  # CRL bags and secret bags (symmetric keys) have no place in this keystore
    cert_bag = decode(bytes(bag["bagValue"]), rfc7292.CertBag())
    if cert_bag["certId"] != _X509_CERTIFICATE_TYPE:
        return None
    der = bytes(decode(bytes(cert_bag["certValue"]), univ.OctetString()))
    cert = parse_der_certificate(der, "A certificate in the PKCS#12 file")
    return _CertBag(cert, *attributes)


def _read_key_bag(
    bag: Any,
    cost: int,
    name: str | None,
    local_key_id: bytes | None,
    password: str,
    budget: kdf.KdfBudget,
) -> _KeyBag:
    value = bytes(bag["bagValue"])
    if bag["bagId"] == rfc7292.id_keyBag:
        return _KeyBag(_private_key_or_none(value, None), name, local_key_id)
    return _KeyBag(_decrypt_shrouded_key(value, cost, password, budget), name, local_key_id)


def _bag_attributes(bag: Any) -> _Attributes:
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
            name = str(decode(bytes(values[0]), char.BMPString()))
        elif attribute_type == rfc7292.pkcs_9_at_localKeyId:
            local_key_id = bytes(decode(bytes(values[0]), univ.OctetString()))
    return name, local_key_id, trusted


def _decrypt_shrouded_key(
    der: bytes, cost: int, password: str, budget: kdf.KdfBudget
) -> PrivateKeyTypes | None:
    """Decrypt a pkcs8ShroudedKeyBag (None when the password does not open it).

    cryptography knows PBES2 and PBES1 and most PKCS#12 schemes; our own decryption adds the
    PKCS#12 schemes it lacks (two-key 3DES, 128-bit RC2, 40-bit RC4) and the second encoding of
    an empty password. For anything else a second attempt would only derive the same key again.
    """
    budget.spend(cost)
    key = _private_key_or_none(der, password.encode("utf-8"))
    if key is not None:
        return key
    info = decode(der, rfc5958.EncryptedPrivateKeyInfo())
    algorithm = info["encryptionAlgorithm"]
    if not pbe.is_pkcs12_pbe(algorithm):
        return None
    for plain in pbe.pbe_decrypt(algorithm, bytes(info["encryptedData"]), password, budget):
        key = _private_key_or_none(plain, None)
        if key is not None:
            return key
    return None


def _private_key_or_none(der: bytes, password: bytes | None) -> PrivateKeyTypes | None:
    try:
        return keys.untrusted_key(der, password)
    except Exception:
        return None


# ---- key pairs and their chains


def _pkcs12_items(
    key_bags: list[_KeyBag], certs: list[_CertBag], issuers: chains.IssuerIndex
) -> list[KeystoreItem]:
    # Indexes built once keep a keystore of many key pairs linear, not quadratic.
    cert_index = _CertIndex(certs)
    positions: dict[x509.Certificate, list[int]] = {}
    for index, bag in enumerate(certs):
        positions.setdefault(bag.cert, []).append(index)
    in_a_chain: set[int] = set()
    items: list[KeystoreItem] = []
    for key_bag in key_bags:
        if key_bag.key is None:
            items.append(_unreadable_key_item(key_bag, certs, cert_index, in_a_chain))
            continue
        leaf_index = _leaf_for_key(key_bag, cert_index)
        if leaf_index is None:
            what = f"The key '{key_bag.name}'" if key_bag.name else "A key"
            raise CryptoError(f"{what} in the PKCS#12 file has no matching certificate.")
        leaf_bag = certs[leaf_index]
        chain = chains.chain_from(leaf_bag.cert, issuers)
        in_a_chain.add(leaf_index)
        # keytool stores a chain certificate once per key pair that uses it
        for member in chain:
            in_a_chain.update(positions.get(member, ()))
        alias = key_bag.name or leaf_bag.name or ""
        try:
            key = keys.uploaded_key(key_bag.key, _key_name(alias))
            keys.prove_key(key, leaf_bag.cert, _key_name(alias))
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
            public_key = keys.public_key_der(bag.cert)
            self.public_keys.append(public_key)
            if bag.local_key_id is not None:
                self.by_local_key_id.setdefault(bag.local_key_id, []).append(position)
            if bag.name:
                self.by_name.setdefault(bag.name, []).append(position)
            if public_key is not None and not bag.trusted:
                self.untrusted_by_public_key.setdefault(public_key, []).append(position)


def _leaf_for_key(key_bag: _KeyBag, index: _CertIndex) -> int | None:
    """The key's certificate: the one with its localKeyId and public key, else the first
    untrusted certificate with its public key."""
    if key_bag.key is None:
        return None
    public_key = keys.public_key_der(key_bag.key)
    if public_key is None:
        return None
    if key_bag.local_key_id is not None:
        for position in index.by_local_key_id.get(key_bag.local_key_id, ()):
            if index.public_keys[position] == public_key:
                return position
    found = index.untrusted_by_public_key.get(public_key)
    return found[0] if found else None
