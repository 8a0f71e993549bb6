"""Tests of keystore.crypto.facts: the certificate facts stored in indexed columns."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes

from keystore import crypto
from tests import pki

# --------------------------------------------------------------------------- facts


def test_facts_of_an_rsa_leaf():
    root_key = pki.make_key()
    root = pki.make_cert("Facts Root", root_key, ca=True)
    start = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    end = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    leaf = pki.make_cert(
        "facts.example.com",
        pki.make_key(),
        root,
        root_key,
        serial=0x1A2B,
        not_before=start,
        not_after=end,
    )

    facts = crypto.certificate_facts(leaf)

    assert facts.subject == "CN=facts.example.com,O=SAP SE"
    assert facts.issuer == "CN=Facts Root,O=SAP SE"
    assert facts.subject_cn == "facts.example.com"
    assert facts.issuer_cn == "Facts Root"
    assert facts.serial == "1A2B"
    assert facts.not_before == start
    assert facts.not_after == end
    assert facts.not_before.utcoffset() == timedelta(0)
    assert facts.key_type == "RSA"
    assert facts.key_size == 2048
    assert facts.signature_algorithm == "sha256WithRSAEncryption"
    digest = hashlib.sha256(crypto.to_der(leaf)).hexdigest().upper()
    assert facts.fingerprint_sha256.replace(":", "") == digest
    assert facts.fingerprint_sha256.count(":") == 31
    assert facts.self_signed is False
    assert crypto.certificate_facts(root).self_signed is True


@pytest.mark.parametrize(
    ("kind", "size", "key_type", "key_size", "algorithm"),
    [
        ("ec", 256, "EC", 256, "ecdsa-with-SHA256"),
        ("ec", 384, "EC", 384, "ecdsa-with-SHA384"),
        ("ed25519", None, "Ed25519", 256, "ed25519"),
        ("ed448", None, "Ed448", 456, "ed448"),
        ("rsa", 3072, "RSA", 3072, "sha384WithRSAEncryption"),
    ],
)
def test_facts_key_type_size_and_signature(kind, size, key_type, key_size, algorithm):
    key = pki.make_key(kind, size)
    hash_alg = hashes.SHA384() if key_size in (384, 3072) else hashes.SHA256()
    cert = pki.make_cert("keyed", key, hash_alg=hash_alg)

    facts = crypto.certificate_facts(cert)

    assert (facts.key_type, facts.key_size, facts.signature_algorithm) == (
        key_type,
        key_size,
        algorithm,
    )
    assert facts.self_signed is True


def test_facts_without_org_and_of_a_self_issued_cert_signed_by_another_key():
    cert = pki.make_cert("ignored", pki.make_key(), org=None)
    impostor_key = pki.make_key(fresh=True)
    self_issued = pki.make_cert("Self Issued", pki.make_key(), issuer_key=impostor_key)

    assert crypto.certificate_facts(cert).subject == "CN=ignored"
    assert (
        crypto.certificate_facts(self_issued).subject
        == crypto.certificate_facts(self_issued).issuer
    )
    assert crypto.certificate_facts(self_issued).self_signed is False
