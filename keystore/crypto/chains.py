"""Certificate chains: put certificates in order from the leaf to the root, verify the links,
and find the issuers of a keystore's key pairs among the file's certificates."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cryptography import x509

from keystore.crypto.errors import CryptoError
from keystore.crypto.facts import describe
from keystore.crypto.signatures import is_self_signed, signed_by


def by_subject(pool: Sequence[x509.Certificate]) -> dict[x509.Name, list[x509.Certificate]]:
    """The pool's certificates by subject, in pool order: a certificate's possible issuers."""
    found: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in pool:
        found.setdefault(cert.subject, []).append(cert)
    return found


def chain_from(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate] | dict[x509.Name, list[x509.Certificate]],
) -> list[x509.Certificate]:
    """Follow issuers from ``leaf`` through ``pool`` (or its `by_subject` index) until a
    self-signed root or a gap."""
    issuers = pool if isinstance(pool, dict) else by_subject(pool)
    chain = [leaf]
    while not is_self_signed(chain[-1]):
        # Only a certificate whose subject is the issuer's name can have signed it.
        parent = next(
            (
                candidate
                for candidate in issuers.get(chain[-1].issuer, ())
                if all(candidate != member for member in chain) and signed_by(chain[-1], candidate)
            ),
            None,
        )
        if parent is None:
            break
        chain.append(parent)
    return chain


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
        if is_self_signed(child):
            continue  # a root ends the chain even when a cross-certificate could extend it
        for parent_index, parent in enumerate(unique):
            if parent_index != child_index and signed_by(child, parent):
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
        left_over = [describe(unique[i]) for i in range(len(unique)) if i not in best]
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
                f"Link {number} of the chain is broken: '{describe(child)}' was issued by "
                f"'{child.issuer.rfc4514_string()}', not by '{describe(parent)}'."
            )
        if not signed_by(child, parent):
            raise CryptoError(
                f"Link {number} of the chain is broken: the signature of '{describe(child)}' "
                f"does not verify with the key of '{describe(parent)}'."
            )
    top = chain[-1]
    if top.issuer == top.subject and not signed_by(top, top):
        raise CryptoError(f"The self-signature of the root '{describe(top)}' does not verify.")


def root_certificate(chain: list[x509.Certificate]) -> x509.Certificate:
    """The certificate at the top of the chain: its self-signed root, or the certificate itself
    for a one-element chain. When a chain stops short of its root, this is the topmost
    certificate there is (``certificate_facts(...).self_signed`` tells the two apart).
    """
    if not chain:
        raise CryptoError("There are no certificates.")
    return chain[-1]
