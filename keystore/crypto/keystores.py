"""The keystore upload's one entry point: a Java keystore (by its magic number) or PKCS#12,
read entry by entry."""

from __future__ import annotations

from keystore.crypto.items import KeystoreItem, keystore_bytes
from keystore.crypto.jks_import import JCEKS_MAGIC, JKS_MAGIC, load_jks
from keystore.crypto.pkcs12_import import load_pkcs12


def load_keystore(data: bytes, password: str) -> list[KeystoreItem]:
    """Read a JKS/JCEKS keystore (recognised by its magic number) or a PKCS#12 file, to be
    merged entry by entry: an entry that cannot be taken (a DSA key, a key under another
    password, a key of an unsupported type) comes back as an item with its ``problem``.
    """
    data = keystore_bytes(data)
    if data[:4] in (JKS_MAGIC, JCEKS_MAGIC):
        return load_jks(data, password, entry_problems=True)
    return load_pkcs12(data, password, entry_problems=True)
