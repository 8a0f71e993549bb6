"""SAP's Python OData client, pyodata, against a live server on 127.0.0.1: it reads $metadata and
lists KeystoreEntries and HistoryKeystoreEntries as it does against Cloud Integration."""

from __future__ import annotations

import pyodata
import pytest
import requests

from keystore import services
from keystore.crypto import to_der
from keystore.models import KeystoreEntry
from keystore_site.api import clients
from keystore_site.api.odata import hexalias
from renewals import activation
from renewals.models import SapKeyBackup
from tests.keystore_site.api.test_writing import SAP_ALIAS, provide_sap_key


@pytest.fixture
def session():
    """Closed before the live server stops: a kept-alive connection would otherwise end in the
    server's thread after the test gave back its database connection."""
    with requests.Session() as http:
        yield http


@pytest.mark.django_db(transaction=True)
def test_pyodata_lists_keystore_and_history_entries(
    live_server, session, tenant, other_tenant, sap_entry, sap_pki, key_pair_entry, cert_entry
):
    # A key activated once: SAP Key History holds the previous one as "[1]_<alias>".
    provide_sap_key(tenant, sap_pki)
    activation.activate_pending_key(tenant, SAP_ALIAS)
    # Tenant B's entries are never listed for tenant A's client.
    services.import_certificate(other_tenant, "b_only", to_der(sap_pki.root))

    client, secret = clients.create_api_client(tenant, "pyodata", "ReadOnly")
    session.auth = (client.client_id, secret)
    # The live server listens on IPv4 "localhost"; the test speaks to 127.0.0.1 by number.
    base = live_server.url.replace("//localhost:", "//127.0.0.1:")
    assert base.startswith("http://127.0.0.1:")
    service = pyodata.Client(base + "/api/v1", session)

    entry_type = service.schema.entity_type("KeystoreEntry")
    assert [key.name for key in entry_type.key_proprties] == ["Hexalias"]
    assert service.schema.entity_set("HistoryKeystoreEntries").entity_type.name == (
        "HistoryKeystoreEntry"
    )

    listed = service.entity_sets.KeystoreEntries.get_entities().execute()
    stored = KeystoreEntry.objects.filter(tenant=tenant).order_by("alias")
    assert sorted((e.Alias, e.Hexalias, e.FingerprintSha256) for e in listed) == [
        (row.alias, hexalias(row.alias), row.fingerprint_sha256) for row in stored
    ]
    sap = next(e for e in listed if e.Alias == SAP_ALIAS)
    assert sap.Owner == "SAP" and sap.Type == "Key Pair"
    assert sap.ValidNotAfter is not None  # Edm.DateTime read back from /Date(ms)/

    one = service.entity_sets.KeystoreEntries.get_entity(hexalias(SAP_ALIAS)).execute()
    # The key as OData clients also write it, with the property's name.
    named = service.entity_sets.KeystoreEntries.get_entity(Hexalias=hexalias(SAP_ALIAS)).execute()
    assert named.Alias == one.Alias
    assert one.FingerprintSha256 == KeystoreEntry.objects.get(alias=SAP_ALIAS).fingerprint_sha256

    history = service.entity_sets.HistoryKeystoreEntries.get_entities().execute()
    [backup] = SapKeyBackup.objects.filter(tenant=tenant)
    assert [(e.Alias, e.Hexalias, e.FingerprintSha256, e.OriginalAlias) for e in history] == [
        (
            f"[1]_{SAP_ALIAS}",
            hexalias(f"[1]_{SAP_ALIAS}"),
            backup.fingerprint_sha256,
            SAP_ALIAS,
        )
    ]
    assert history[0].ActivationSequenceNumber == 1

    filtered = (
        service.entity_sets.KeystoreEntries.get_entities()
        .filter(f"Alias eq '{cert_entry.alias}'")
        .select("Alias,FingerprintSha256")
        .execute()
    )
    assert [(e.Alias, e.FingerprintSha256) for e in filtered] == [
        (cert_entry.alias, cert_entry.fingerprint_sha256)
    ]
