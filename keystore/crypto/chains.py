"""Certificate chains: put certificates in order from the leaf to the root, verify the links,
and find the issuers of a keystore's key pairs among the file's certificates, at a price that an
uploaded file cannot drive up.

Only a certificate whose subject is a certificate's issuer name can have signed it, so issuers
are looked up by name (:class:`IssuerIndex`), each certificate once however often a keystore
repeats it (keytool stores each chain certificate once per key pair). When several certificates
share that name (a renewed CA, or a hostile file), the child's authority key identifier picks
those whose subject key identifier matches or is absent (a mismatch rules a certificate out, as
in OpenSSL's issuer check); only what is left is tried by its signature. A file can still make
many candidates share a name and carry no key identifiers, so every signature check that
ordering or building its chains may cost is priced first, weighted by the issuer's key
(keystore.crypto.signatures.check_weight), and a file over MAX_SIGNATURE_WORK is refused with
one line before any check is made.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from cryptography import x509

from keystore.crypto import signatures
from keystore.crypto.errors import CryptoError
from keystore.crypto.facts import describe
from keystore.crypto.signatures import is_self_signed

#: The signature checks one file (or one call of order_chain) may cost, in checks with an
#: RSA-2048 key (about 50 µs each on the machine of docs/performance.md, so about 2.5 s).
#: The dearest legitimate files are P-384 key pairs under a P-384 CA (OpenSSL checks P-384
#: signatures 12 times slower than RSA-2048): 1 MiB of them prices at 13,332 (1,110 key pairs
#: converted by keytool) or 10,212 (850 key pairs, each with its chain, in a JKS file). 500 EC
#: key pairs whose issuers share one name and carry no key identifiers price at 1,000,000.
MAX_SIGNATURE_WORK = 50_000


def too_much_signature_work(price: int) -> CryptoError:
    return CryptoError(
        f"Putting the certificates in chains needs {price:,} signature checks (weighted by key "
        f"size); the limit is {MAX_SIGNATURE_WORK:,}. Too many of them share an issuer's name."
    )


def _key_identifier(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_class(kind).value
    except Exception:  # absent, or extensions cryptography cannot parse: no identifier
        return None
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.key_identifier
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier
    return None


class _Namesakes:
    """The certificates of an index that share one subject name, in the index's order."""

    def __init__(self) -> None:
        self.certs: list[x509.Certificate] = []
        # Filled when first asked for: a chain's own list rarely needs them.
        self.weight = 0
        self.by_key_id: dict[bytes | None, list[x509.Certificate]] = {}
        self.weight_by_key_id: dict[bytes | None, int] = {}
        self.known = False


class IssuerIndex:
    """Certificates (each once, in the order given) by the names and key identifiers that make
    them possible issuers, with the signature checks made among them remembered."""

    def __init__(self, certs: Iterable[x509.Certificate]) -> None:
        # Certificates compare (and hash) by their DER bytes.
        self.certs: list[x509.Certificate] = list(dict.fromkeys(certs))
        # cryptography builds a Name each time one is asked for: each is read once here.
        self._subjects = {id(cert): cert.subject for cert in self.certs}
        self._issuers = {id(cert): cert.issuer for cert in self.certs}
        self._weights: dict[int, int] = {}
        self._namesakes: dict[x509.Name, _Namesakes] = {}
        for cert in self.certs:
            self._namesakes.setdefault(self._subjects[id(cert)], _Namesakes()).certs.append(cert)
        # Keyed by the certificates' ids: the index holds them, and a certificate hashes its DER.
        self._checked: dict[tuple[int, int], bool] = {}

    def _weight(self, cert: x509.Certificate) -> int:
        weight = self._weights.get(id(cert))
        if weight is None:
            weight = self._weights[id(cert)] = signatures.check_weight(cert)
        return weight

    def _group(self, child: x509.Certificate) -> _Namesakes | None:
        """The namesakes of ``child``'s issuer, their weights and key identifiers known."""
        group = self._namesakes.get(self._issuer(child))
        if group is not None and not group.known:
            group.known = True
            group.weight = sum(self._weight(cert) for cert in group.certs)
            if len(group.certs) > 1:
                for cert in group.certs:
                    key_id = _key_identifier(cert, x509.SubjectKeyIdentifier)
                    group.by_key_id.setdefault(key_id, []).append(cert)
                    weights = group.weight_by_key_id
                    weights[key_id] = weights.get(key_id, 0) + self._weight(cert)
        return group

    def _issuer(self, cert: x509.Certificate) -> x509.Name:
        name = self._issuers.get(id(cert))
        return cert.issuer if name is None else name

    def _self_named(self, cert: x509.Certificate) -> bool:
        subject = self._subjects.get(id(cert))
        return self._issuer(cert) == (cert.subject if subject is None else subject)

    def candidates(self, child: x509.Certificate) -> list[x509.Certificate]:
        """The certificates that may have issued ``child``, in the index's order (``child``
        itself among them when it names itself as issuer)."""
        group = self._group(child)
        if group is None:
            return []
        key_id = self._authority_key_id(child, group)
        if key_id is None:
            return group.certs
        chosen = set(group.by_key_id.get(key_id, ())) | set(group.by_key_id.get(None, ()))
        return [cert for cert in group.certs if cert in chosen]

    def _authority_key_id(self, child: x509.Certificate, group: _Namesakes) -> bytes | None:
        """The identifier that chooses among ``group``, None when there is nothing to choose."""
        if len(group.certs) < 2:
            return None
        return _key_identifier(child, x509.AuthorityKeyIdentifier)

    def _choice(self, child: x509.Certificate) -> tuple[int, int, bool]:
        """How many candidates ``child`` has, what checking them all costs, and whether
        ``child`` itself is among them, without listing them."""
        group = self._group(child)
        if group is None:
            return 0, 0, False
        self_named = self._self_named(child)
        key_id = self._authority_key_id(child, group)
        if key_id is None:
            return len(group.certs), group.weight, self_named
        count = len(group.by_key_id.get(key_id, ())) + len(group.by_key_id.get(None, ()))
        weight = group.weight_by_key_id.get(key_id, 0) + group.weight_by_key_id.get(None, 0)
        own_key_id = _key_identifier(child, x509.SubjectKeyIdentifier)
        return count, weight, self_named and own_key_id in (key_id, None)

    def search_price(self, child: x509.Certificate) -> int:
        """What finding ``child``'s issuer may cost: its self-signature when it names itself as
        issuer, and each other candidate's signature."""
        _, weight, chosen = self._choice(child)
        if not chosen and self._self_named(child):
            # the self-signature is checked whether or not the key identifiers choose the child
            weight += self._weight(child)
        return weight

    def price(self) -> int:
        """What finding the issuer of every certificate of the index may cost."""
        return sum(self.search_price(cert) for cert in self.certs)

    def is_linear(self) -> bool:
        """Whether no certificate has more than one candidate issuer besides itself: ordering
        such a list checks each link once."""
        for cert in self.certs:
            count, _, chosen = self._choice(cert)
            if count - chosen > 1:
                return False
        return True

    def links(self) -> Iterable[tuple[x509.Certificate, x509.Certificate, int]]:
        """Every (certificate, candidate issuer, price) a search may check, self-signatures
        included."""
        for cert in self.certs:
            if self._self_named(cert):
                yield cert, cert, self._weight(cert)
            for candidate in self.candidates(cert):
                if candidate != cert:
                    yield cert, candidate, self._weight(candidate)

    def signed(self, child: x509.Certificate, parent: x509.Certificate) -> bool:
        """signatures.signed_by, remembered for the index's lifetime, so that the price of the
        index bounds its checks however often the shared cache forgets."""
        pair = (id(child), id(parent))
        verdict = self._checked.get(pair)
        if verdict is None:
            verdict = self._checked[pair] = signatures.signed_by(child, parent)
        return verdict

    def self_signed(self, cert: x509.Certificate) -> bool:
        return self.signed(cert, cert)


class SignatureWork:
    """The signature checks an uploaded file may cause, priced before any is made: the search
    for its key pairs' issuers, and the ordering of each chain the file yields, which the caller
    does next (services order and verify each entry's chain)."""

    def __init__(self) -> None:
        self.total = 0
        self._links: set[tuple[x509.Certificate, x509.Certificate]] = set()

    def add(self, price: int) -> None:
        self.total += price
        if self.total > MAX_SIGNATURE_WORK:
            raise too_much_signature_work(self.total)

    def add_orderings(self, chains: Iterable[Sequence[x509.Certificate]], *, built: bool) -> None:
        """The price of ordering each of ``chains`` again. A linear chain checks its links once,
        and links that several chains share are checked once (the cache of signatures.signed_by
        remembers them); when the chains were ``built`` from an index already priced, their
        links are that index's checks. Any other chain is priced whole, for every chain."""
        price = 0
        for chain in chains:
            index = IssuerIndex(chain)
            if not index.is_linear():
                price += index.price()
            elif not built:
                for child, parent, weight in index.links():
                    if (child, parent) not in self._links:
                        self._links.add((child, parent))
                        price += weight
        self.add(price)


def chain_from(leaf: x509.Certificate, index: IssuerIndex) -> list[x509.Certificate]:
    """Follow issuers from ``leaf`` through ``index`` until a self-signed root or a gap."""
    chain = [leaf]
    while not index.self_signed(chain[-1]):
        parent = next(
            (
                candidate
                for candidate in index.candidates(chain[-1])
                if all(candidate != member for member in chain)
                and index.signed(chain[-1], candidate)
            ),
            None,
        )
        if parent is None:
            break
        chain.append(parent)
    return chain


def extend_chain(chain: Sequence[x509.Certificate], trusted: IssuerIndex) -> list[x509.Certificate]:
    """``chain`` continued from its top certificate through ``trusted`` (a keystore's trusted
    certificates) until a self-signed root or a gap: a CA often answers with the signed
    certificate alone, and a JKS key entry may hold its leaf alone. The certificates of
    ``chain`` stay as they are; each link added is checked by its signature."""
    chain = list(chain)
    while not is_self_signed(chain[-1]):
        top = chain[-1]
        parent = next(
            (
                candidate
                for candidate in trusted.candidates(top)
                if all(candidate != member for member in chain)
                and signatures.signed_by(top, candidate)
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
    of its root (a gap at the top), but no certificate may be left over. Refused before any
    signature is checked when that may cost more than MAX_SIGNATURE_WORK.
    """
    index = IssuerIndex(certs)
    unique = index.certs
    if not unique:
        raise CryptoError("There are no certificates.")
    price = index.price()
    if price > MAX_SIGNATURE_WORK:
        raise too_much_signature_work(price)
    position = {cert: number for number, cert in enumerate(unique)}
    parents: dict[int, int] = {}
    for child_index, child in enumerate(unique):
        if index.self_signed(child):
            continue  # a root ends the chain even when a cross-certificate could extend it
        for parent in index.candidates(child):
            if parent != child and index.signed(child, parent):
                parents[child_index] = position[parent]
                break
    issuers = set(parents.values())
    chains: list[list[int]] = []
    for leaf in (number for number in range(len(unique)) if number not in issuers):
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
        if not signatures.signed_by(child, parent):
            raise CryptoError(
                f"Link {number} of the chain is broken: the signature of '{describe(child)}' "
                f"does not verify with the key of '{describe(parent)}'."
            )
    top = chain[-1]
    if top.issuer == top.subject and not signatures.signed_by(top, top):
        raise CryptoError(f"The self-signature of the root '{describe(top)}' does not verify.")


def root_certificate(chain: list[x509.Certificate]) -> x509.Certificate:
    """The certificate at the top of the chain: its self-signed root, or the certificate itself
    for a one-element chain. When a chain stops short of its root, this is the topmost
    certificate there is (``certificate_facts(...).self_signed`` tells the two apart).
    """
    if not chain:
        raise CryptoError("There are no certificates.")
    return chain[-1]
