"""The keystore's public content (API and Keystore page): a JKS that keytool lists with every
certificate and no private key, chains split into alias, alias_1, ...; and the mass delete of
PUT /KeystoreResources('system'), all or nothing."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest
from django.urls import reverse

from keystore import services
from keystore.crypto import to_der
from keystore.models import KeystoreEntry
from tests import pki as pki_factory
from tests.conftest import client_for

keytool_needed = pytest.mark.skipif(pki_factory.KEYTOOL is None, reason="keytool is missing")


@pytest.fixture
def keystore(tenant, pki):
    p12 = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "secret-pw")
    services.import_key_pair(tenant, "client_key", p12, "secret-pw")
    services.import_certificate(tenant, "partner_root", to_der(pki.root))
    # A name the split would choose: the split goes around it.
    services.import_certificate(tenant, "client_key_1", to_der(pki.inter))
    return tenant


def listing(path, tmp_path) -> dict[str, str]:
    """alias -> entry kind, as keytool lists the file with the empty store password."""
    (tmp_path / "public.jks").write_bytes(path)
    printed = subprocess.run(
        [pki_factory.KEYTOOL, "-list", "-keystore", str(tmp_path / "public.jks"), "-storepass", ""],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return dict(re.findall(r"^([^,\n]+), .*, (\w+Entry),", printed, re.MULTILINE))


@keytool_needed
def test_the_api_gives_the_public_content_as_jks(keystore, api_caller, tmp_path):
    answer = api_caller("ReadOnly").get("/api/v1/KeystoreResources('system')")
    assert answer.status_code == 200
    body = answer.json()["d"]
    assert body["Name"] == "system" and body["Password"] is None
    entries = listing(base64.b64decode(body["Resource"]), tmp_path)
    assert entries == {
        "client_key": "trustedCertEntry",
        "client_key_1_": "trustedCertEntry",
        "client_key_2": "trustedCertEntry",
        "client_key_1": "trustedCertEntry",  # the issuing CA's own entry, and its root:
        "client_key_1_1": "trustedCertEntry",
        "partner_root": "trustedCertEntry",
    }


@keytool_needed
def test_the_keystore_page_offers_the_same_download(keystore, users, tmp_path):
    reader = client_for(users["ReadOnly"])
    page = reader.get(reverse("admin:keystore_keystoreentry_changelist")).content.decode()
    url = reverse("admin:keystore_keystoreentry_public_content", args=[keystore.pk])
    assert url in page and "Download public content" in page
    download = reader.get(url)
    assert download["Content-Disposition"].endswith('tenant-a_public.jks"')
    content = b"".join(download.streaming_content) if download.streaming else download.content
    assert set(listing(content, tmp_path)) >= {"client_key", "client_key_2", "partner_root"}


def test_mass_delete_is_all_or_nothing(keystore, tenant, sap_pki, api_caller):
    services.create_sap_entry(
        tenant, "sap_cloudintegrationcertificate", sap_pki.leaf_key, sap_pki.chain
    )
    caller = api_caller("Administrator")
    path = "/api/v1/KeystoreResources('system')?deleteEntries=true&returnKeystoreEntries=false"
    before = sorted(KeystoreEntry.objects.values_list("alias", flat=True))
    refused = caller.send(
        "PUT", path, json.dumps({"Aliases": "partner_root;sap_cloudintegrationcertificate"})
    )
    assert refused.status_code == 403
    assert sorted(KeystoreEntry.objects.values_list("alias", flat=True)) == before
    done = caller.send("PUT", path, json.dumps({"Aliases": "partner_root;client_key_1;nothing"}))
    assert done.status_code == 204
    assert sorted(KeystoreEntry.objects.values_list("alias", flat=True)) == [
        "client_key",
        "sap_cloudintegrationcertificate",
    ]
    assert caller.send("PUT", path, json.dumps({"Aliases": ""})).status_code == 400
    restore = caller.send(
        "PUT", "/api/v1/KeystoreResources('system')?retrieveBackup=backup_admin_system", b"{}"
    )
    # No server-side backup yet: the description's 404, and nothing changes.
    assert (
        restore.status_code == 404
        and "back up first" in restore.json()["error"]["message"]["value"]
    )
    assert KeystoreEntry.objects.filter(alias="client_key").exists()
    reader = api_caller("ReadOnly")
    assert reader.send("PUT", path, json.dumps({"Aliases": "client_key"})).status_code == 403
    assert KeystoreEntry.objects.filter(alias="client_key").exists()
