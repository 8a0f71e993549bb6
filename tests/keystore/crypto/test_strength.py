"""Tests of keystore.crypto.strength: weak keys and signature hashes in a chain."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes

from keystore import crypto
from keystore.crypto import CryptoError
from tests import pki


def test_check_strength_accepts_a_modern_chain(chain_a):
    assert crypto.check_strength(chain_a.chain) == []


def test_check_strength_rejects_rsa_1024(chain_a):
    weak = pki.make_cert("Weak Leaf", pki.make_key("rsa", 1024), chain_a.inter, chain_a.inter_key)

    with pytest.raises(CryptoError, match="1024-bit RSA key; at least 2048"):
        crypto.check_strength([weak, chain_a.inter, chain_a.root])


def test_check_strength_rejects_a_small_curve():
    cert = pki.make_cert("P-192", pki.make_key("ec", 192))

    with pytest.raises(CryptoError, match="secp192r1 curve of 192 bits"):
        crypto.check_strength([cert])


def test_check_strength_rejects_dsa():
    cert = pki.make_cert("DSA Leaf", pki.make_key("dsa"))

    with pytest.raises(CryptoError, match="DSA key; DSA is no longer accepted"):
        crypto.check_strength([cert])


def test_check_strength_rejects_a_sha1_signed_leaf(chain_a):
    leaf = pki.make_cert(
        "SHA1 Leaf", pki.make_key(), chain_a.inter, chain_a.inter_key, hash_alg=hashes.SHA1()
    )

    assert crypto.certificate_facts(leaf).signature_algorithm == "sha1WithRSAEncryption"
    crypto.verify_chain([leaf, chain_a.inter, chain_a.root])  # the signature itself is fine
    with pytest.raises(CryptoError, match="'SHA1 Leaf' is signed with SHA-1"):
        crypto.check_strength([leaf, chain_a.inter, chain_a.root])


def test_check_strength_rejects_an_md5_signed_intermediate(chain_a):
    inter = pki.make_cert(
        "MD5 CA", chain_a.inter_key, chain_a.root, chain_a.root_key, ca=True, hash_alg=hashes.MD5()
    )
    leaf = pki.make_cert("Leaf", chain_a.leaf_key, inter, chain_a.inter_key)

    with pytest.raises(CryptoError, match="'MD5 CA' is signed with MD5"):
        crypto.check_strength([leaf, inter, chain_a.root])


def test_check_strength_only_warns_about_a_sha1_self_signed_root():
    root_key = pki.make_key()
    root = pki.make_cert("Old Root", root_key, ca=True, hash_alg=hashes.SHA1())
    leaf = pki.make_cert("Fine Leaf", pki.make_key(), root, root_key)

    assert crypto.certificate_facts(root).self_signed is True
    crypto.verify_chain([leaf, root])
    warnings = crypto.check_strength([leaf, root])
    assert len(warnings) == 1
    assert "Old Root" in warnings[0] and "SHA-1" in warnings[0]
    assert len(crypto.check_strength([root])) == 1


def test_check_strength_rejects_sha1_on_a_root_that_is_not_at_the_top(chain_a):
    root_key = pki.make_key()
    sha1_root = pki.make_cert("Middle Root", root_key, ca=True, hash_alg=hashes.SHA1())
    leaf = pki.make_cert("Leaf", pki.make_key(), sha1_root, root_key)

    with pytest.raises(CryptoError, match="SHA-1"):
        crypto.check_strength([leaf, sha1_root, chain_a.root])
