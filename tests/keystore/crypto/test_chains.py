"""Tests of keystore.crypto.chains: ordering and verifying chains."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from keystore import crypto
from keystore.crypto import CryptoError, chains, signatures
from tests import pki

# --------------------------------------------------------------------------- chains


def test_order_chain_sorts_a_shuffled_chain_and_drops_duplicates(chain_a):
    shuffled = [chain_a.root, chain_a.leaf, chain_a.inter, chain_a.root]

    assert crypto.order_chain(shuffled) == chain_a.chain


def test_order_chain_accepts_a_chain_without_its_root(chain_a):
    assert crypto.order_chain([chain_a.inter, chain_a.leaf]) == [chain_a.leaf, chain_a.inter]
    assert crypto.order_chain([chain_a.leaf]) == [chain_a.leaf]


def test_order_chain_rejects_an_unrelated_certificate(chain_a, chain_b):
    with pytest.raises(CryptoError, match="Beta Root CA") as caught:
        crypto.order_chain([*chain_a.chain, chain_b.root])

    assert "do not form one chain" in str(caught.value)


def test_order_chain_rejects_a_gap_in_the_middle(chain_a):
    with pytest.raises(CryptoError, match="not linked"):
        crypto.order_chain([chain_a.leaf, chain_a.root])


def test_order_chain_rejects_nothing():
    with pytest.raises(CryptoError):
        crypto.order_chain([])


def test_verify_chain_accepts_a_good_chain(chain_a):
    crypto.verify_chain(chain_a.chain)
    crypto.verify_chain([chain_a.leaf, chain_a.inter])


def test_verify_chain_detects_a_forged_link(chain_a):
    forger_key = pki.make_key(fresh=True)
    forged_leaf = pki.make_cert("Forged Leaf", chain_a.leaf_key, chain_a.inter, forger_key)

    with pytest.raises(CryptoError, match="Link 1 .*signature of 'Forged Leaf' does not verify"):
        crypto.verify_chain([forged_leaf, chain_a.inter, chain_a.root])
    with pytest.raises(CryptoError, match="not linked"):
        crypto.order_chain([forged_leaf, chain_a.inter, chain_a.root])


def test_verify_chain_detects_a_wrong_issuer_name(chain_a):
    with pytest.raises(CryptoError, match="Link 2 .*issued by 'CN=Alpha Root CA"):
        crypto.verify_chain([chain_a.leaf, chain_a.inter, chain_a.leaf])


def test_verify_chain_detects_a_forged_root_self_signature(chain_a):
    fake_root = pki.make_cert(
        "Alpha Root CA", chain_a.root_key, issuer_key=pki.make_key(fresh=True), ca=True
    )

    with pytest.raises(CryptoError, match="self-signature of the root"):
        crypto.verify_chain([fake_root])


def test_root_certificate(chain_a):
    assert crypto.root_certificate(chain_a.chain) is chain_a.root
    assert crypto.root_certificate([chain_a.leaf]) is chain_a.leaf
    with pytest.raises(CryptoError):
        crypto.root_certificate([])


# --------------------------------------------------------------------------- namesake issuers
#
# Only a certificate whose subject is a certificate's issuer name can have signed it; when
# several share that name, key identifiers choose, and only what is left is tried by signature.


def bare_cert(
    common_name: str, key, issuer: x509.Certificate | None = None, issuer_key=None
) -> x509.Certificate:
    """A certificate without key identifiers (pki.make_cert always writes them)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(issuer_key or key, hashes.SHA256())
    )


def counted_checks(monkeypatch) -> Counter:
    """Count the signature checks made, by outcome (True: the link holds); a pair whose names
    do not match is answered without one."""
    outcomes: Counter = Counter()
    real = signatures.signed_by

    def signed_by(child, parent):
        verdict = real(child, parent)
        if child.issuer == parent.subject:
            outcomes[verdict] += 1
        return verdict

    monkeypatch.setattr(signatures, "signed_by", signed_by)
    return outcomes


def renewed_ca(bare: bool) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """A CA renewed under its old name with a new key, and a leaf of each: (CAs, leaves)."""
    make = bare_cert if bare else pki.make_cert
    old_key, new_key = pki.make_key("ec", fresh=True), pki.make_key("ec", fresh=True)
    old, new = make("Renewed CA", old_key), make("Renewed CA", new_key)
    leaves = [
        make("Old Leaf", pki.make_key("ec", fresh=True), old, old_key),
        make("New Leaf", pki.make_key("ec", fresh=True), new, new_key),
    ]
    return [old, new], leaves


def test_key_identifiers_choose_among_namesake_issuers_without_trying_any(monkeypatch):
    cas, (old_leaf, new_leaf) = renewed_ca(bare=False)
    checks = counted_checks(monkeypatch)

    assert crypto.order_chain([cas[1], new_leaf]) == [new_leaf, cas[1]]
    index = chains.IssuerIndex([*cas, *cas, old_leaf, new_leaf])
    assert index.candidates(new_leaf) == [cas[1]] and index.candidates(old_leaf) == [cas[0]]
    assert chains.chain_from(new_leaf, index) == [new_leaf, cas[1]]
    assert chains.chain_from(old_leaf, index) == [old_leaf, cas[0]]
    assert checks[False] == 0  # no issuer was tried in vain


def test_without_key_identifiers_namesake_issuers_are_tried_by_signature(monkeypatch):
    cas, (old_leaf, new_leaf) = renewed_ca(bare=True)
    checks = counted_checks(monkeypatch)
    index = chains.IssuerIndex([*cas, old_leaf, new_leaf])

    assert index.candidates(new_leaf) == cas
    assert chains.chain_from(new_leaf, index) == [new_leaf, cas[1]]
    assert chains.chain_from(old_leaf, index) == [old_leaf, cas[0]]
    assert checks[False] >= 1  # the old CA was tried for the new leaf
    with pytest.raises(CryptoError, match="'Renewed CA' is not linked"):
        crypto.order_chain([new_leaf, *cas])


def test_a_certificate_a_file_repeats_is_priced_and_checked_once(chain_a):
    """keytool stores each chain certificate once per key pair: the index holds it once."""
    index = chains.IssuerIndex([*chain_a.chain, chain_a.inter, chain_a.root, chain_a.root])

    assert index.certs == chain_a.chain
    # leaf: the intermediate (RSA-2048, 1); intermediate: the root (1); root: itself (1)
    assert index.price() == 3
    assert index.is_linear()


def test_checks_are_priced_by_the_issuers_key():
    weights = {
        ("rsa", 2048): 1,
        ("rsa", 4096): 4,
        ("ec", 256): 2,
        ("ec", 384): 12,
        ("ed25519", None): 3,
        ("dsa", 2048): 8,
    }
    for (kind, size), weight in weights.items():
        cert = pki.make_cert(f"{kind} {size}", pki.make_key(kind, size))
        assert signatures.check_weight(cert) == weight, (kind, size)


def test_ordering_many_namesakes_is_refused_before_any_signature_is_checked(monkeypatch):
    """80 P-384 certificates that name themselves as issuer but are signed by another key fit
    in a 64 KiB PEM upload; ordering them would check each against all the others (6,400
    P-384 signatures, about 4 s here)."""
    key, other = pki.make_key("ec", 384), pki.make_key("ec", 384, fresh=True)
    namesakes = [bare_cert("Namesake", key, issuer_key=other) for _ in range(80)]
    data = pki.pem(*namesakes)
    assert len(data) <= crypto.MAX_CERTIFICATE_BYTES
    checks = counted_checks(monkeypatch)

    with pytest.raises(CryptoError) as refused:
        crypto.order_chain(crypto.load_certificates(data))

    assert str(refused.value) == (
        f"Putting the certificates in chains needs {80 * 80 * 12:,} signature checks "
        "(weighted by key size); the limit is 50,000. Too many of them share an issuer's name."
    )
    assert sum(checks.values()) == 0
