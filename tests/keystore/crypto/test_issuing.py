"""Tests of keystore.crypto.issuing: certificates the site issues itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from keystore import crypto


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_issue_certificate_builds_a_chain_that_verifies(kind):

    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = crypto.generate_key_pair(kind)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA")])
    ca = crypto.issue_certificate(
        ca_name, ca_key, not_before=now, not_after=now + timedelta(days=30), ca=True
    )
    leaf_key = crypto.generate_key_pair("rsa")
    names = x509.SubjectAlternativeName([x509.DNSName("tenant.example")])
    leaf = crypto.issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
        leaf_key,
        issuer=(ca, ca_key),
        not_before=now,
        not_after=now + timedelta(days=10),
        server_auth=True,
        alternative_names=names,
    )
    crypto.verify_chain([leaf, ca])
    assert crypto.private_key_matches(leaf_key, leaf)
    assert crypto.certificate_facts(ca).self_signed
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == names
