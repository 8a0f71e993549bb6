"""The public content of a keystore as a JKS file: every certificate as a trusted-certificate
entry, no private key. A chain is split as Cloud Integration does it: `alias` holds the entry's
own certificate, `alias_1`, `alias_2`, ... the rest of its chain; where such a name is taken, an
underscore is added until it is free. The store password is empty (keytool -storepass ""): the
file holds nothing secret."""

from __future__ import annotations

from collections.abc import Iterable

import jks
from cryptography import x509

from keystore.crypto.certfiles import to_der

#: The password the file is written with (keytool checks the file's integrity with it).
PUBLIC_STORE_PASSWORD = ""


def public_aliases(
    entries: Iterable[tuple[str, list[x509.Certificate]]],
) -> list[tuple[str, x509.Certificate]]:
    """(alias, certificate) for every certificate of every chain, named as described above;
    aliases compare ignoring case, as in Java keystores."""
    entries = list(entries)
    taken = {alias.lower() for alias, _chain in entries}
    named: list[tuple[str, x509.Certificate]] = []
    for alias, chain in entries:
        named.append((alias, chain[0]))
        for number, cert in enumerate(chain[1:], start=1):
            name = f"{alias}_{number}"
            while name.lower() in taken:
                name += "_"
            taken.add(name.lower())
            named.append((name, cert))
    return named


def public_jks(entries: Iterable[tuple[str, list[x509.Certificate]]]) -> bytes:
    """The JKS file of `entries` ((alias, chain) pairs, chains leaf first)."""
    store = [
        jks.TrustedCertEntry.new(alias.lower(), to_der(cert))
        for alias, cert in public_aliases(entries)
    ]
    data: bytes = jks.KeyStore.new("jks", store).saves(PUBLIC_STORE_PASSWORD)
    return data
