"""What every keystore reader returns (KeystoreItem), and what every reader checks first."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from keystore.crypto.errors import CryptoError, checked_size
from keystore.crypto.keys import PrivateKey

MAX_KEYSTORE_BYTES = 1024 * 1024


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


def keystore_bytes(data: bytes) -> bytes:
    """The upload as bytes, refused before any parsing when over the limit or empty."""
    data = checked_size(data, MAX_KEYSTORE_BYTES, "1 MiB", "a keystore file")
    if not data:
        raise CryptoError("The file is empty.")
    return data


def without_problems(items: list[KeystoreItem]) -> list[KeystoreItem]:
    """``items``, or a CryptoError with the first item's problem (a reader of one key pair)."""
    for item in items:
        if item.problem:
            raise CryptoError(item.problem)
    return items
