"""Tests of keystore.crypto.chains: ordering and verifying chains."""

from __future__ import annotations

import pytest

from keystore import crypto
from keystore.crypto import CryptoError
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
