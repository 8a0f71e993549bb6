"""A key pair whose chain lacks its root (a signed response imported before its CA was
trusted) is completed when the CA certificates are added; until then its root download says
the root is not known instead of passing the leaf off as a root."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.urls import reverse

from keystore import merging, services
from keystore.crypto import to_der
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from keystore.services import KeystoreError
from tests import pki as pki_factory
from tests.conftest import client_for


@pytest.fixture
def leaf_only(tenant, pki):
    """A key pair stored with its own certificate only: the CA's answer without the chain."""
    data = pki_factory.make_pkcs12_single("client", pki.leaf_key, [pki.leaf], "secret-pw")
    entry = services.import_key_pair(tenant, "client_key", data, "secret-pw")
    assert entry.chain_length == 1 and not entry.root_known
    return entry


def test_the_root_download_of_an_incomplete_chain_says_the_root_is_unknown(leaf_only, pki):
    with pytest.raises(KeystoreError, match="root certificate of 'client_key' is not known"):
        services.public_download(leaf_only, "root")
    # What is known is still there.
    assert services.public_download(leaf_only, "cer").content == to_der(pki.leaf)


def test_adding_the_cas_completes_the_chain_step_by_step(tenant, pki, leaf_only):
    key_before = leaf_only.open_private_key()
    services.import_certificate(tenant, "issuing_ca", to_der(pki.inter))
    entry = KeystoreEntry.objects.get(pk=leaf_only.pk)
    assert entry.certificate_chain() == [pki.leaf, pki.inter] and not entry.root_known
    services.import_certificate(tenant, "root_ca", to_der(pki.root))
    entry = KeystoreEntry.objects.get(pk=leaf_only.pk)
    assert entry.certificate_chain() == [pki.leaf, pki.inter, pki.root] and entry.root_known
    root = services.public_download(entry, "root")
    assert x509.load_der_x509_certificate(root.content) == pki.root
    assert root.filename == "client_key_rootCA.cer"
    # The key and the leaf are untouched, and the private key still opens.
    assert entry.fingerprint_sha256 == leaf_only.fingerprint_sha256
    assert entry.open_private_key().private_numbers() == key_before.private_numbers()
    events = AuditEvent.objects.filter(action=AuditAction.CHAIN, alias="client_key")
    assert events.count() == 2
    assert "its root is still not known" in events.order_by("at", "pk").first().detail


def test_a_merge_with_the_root_completes_chains(tenant, pki, leaf_only):
    data = pki_factory.make_pkcs12(
        [("issuing_ca", None, [pki.inter]), ("root_ca", None, [pki.root])], "secret-pw"
    )
    summary = merging.import_keystore(tenant, data, "secret-pw")
    # The intermediate's own entry is completed with the root too.
    assert sorted(summary.chains_completed) == ["client_key", "issuing_ca"]
    assert sorted(summary.as_dict()["chains_completed"]) == ["client_key", "issuing_ca"]
    assert KeystoreEntry.objects.get(pk=leaf_only.pk).root_known


def test_an_unrelated_certificate_changes_no_chain(tenant, leaf_only):
    other = pki_factory.make_pki(prefix="Other")
    services.import_certificate(tenant, "other_root", to_der(other.root))
    entry = KeystoreEntry.objects.get(pk=leaf_only.pk)
    assert entry.chain_length == 1 and entry.version == leaf_only.version
    assert not AuditEvent.objects.filter(action=AuditAction.CHAIN).exists()


def test_the_admin_root_download_explains_instead_of_serving_the_leaf(users, leaf_only):
    client = client_for(users["ReadOnly"])
    url = reverse("admin:keystore_keystoreentry_download", args=[leaf_only.pk, "root"])
    response = client.get(url, follow=True)
    assert response.status_code == 200
    assert response.get("Content-Disposition") is None
    assert "root certificate of &#x27;client_key&#x27; is not known" in response.content.decode()
