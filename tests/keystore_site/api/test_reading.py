"""Reading through the API as a Cloud Integration script does: entities with the description's
values, the query options, the downloads (bytes that parse back, an OpenSSH key that ssh-keygen
reads), New SAP Keys and SAP Key History, the keystore's properties, $metadata; a constant number
of queries however many entries."""

from __future__ import annotations

import shutil
import subprocess
from xml.etree import ElementTree

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keystore import services
from keystore.crypto import to_der
from keystore.models import KeystoreEntry
from renewals.activation import activate_pending_key, provision_sap_key
from tests import pki as pki_factory

SAP_ALIAS = "sap_cloudintegrationcertificate"


def hexed(alias: str) -> str:
    return alias.encode().hex().upper()


@pytest.fixture
def keystore(tenant, pki):
    """A tenant key pair with its chain, two trusted certificates."""
    p12 = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "secret-pw")
    services.import_key_pair(tenant, "client_key", p12, "secret-pw")
    services.import_certificate(tenant, "partner_root", to_der(pki.root))
    services.import_certificate(tenant, "issuing_ca", to_der(pki.inter))
    return tenant


@pytest.fixture
def sap_key(tenant, sap_pki):
    """The SAP key pair and a new SAP key waiting for it."""
    services.create_sap_entry(tenant, SAP_ALIAS, sap_pki.leaf_key, sap_pki.chain)
    provision_sap_key(
        tenant,
        SAP_ALIAS,
        valid_days=400,
        private_key=pki_factory.make_key(),
        ca=(sap_pki.inter_key, [sap_pki.inter, sap_pki.root]),
    )
    return tenant


def rows(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["d"]["results"]


def test_entries_carry_the_descriptions_values(keystore, pki, api_caller):
    caller = api_caller("ReadOnly")
    listed = {row["Alias"]: row for row in rows(caller.get("/api/v1/KeystoreEntries"))}
    assert list(listed) == ["client_key", "issuing_ca", "partner_root"]
    pair = listed["client_key"]
    leaf = pki.leaf
    assert pair["Hexalias"] == "636C69656E745F6B6579"
    assert (pair["Type"], pair["Owner"], pair["Status"]) == (
        "Key Pair",
        "Tenant Administrator",
        "unchanged",
    )
    assert pair["SerialNumber"] == f"0x{leaf.serial_number:X}"
    assert pair["SignatureAlgorithm"] == "SHA256withRSA"
    assert pair["ValidNotAfter"] == f"/Date({int(leaf.not_valid_after_utc.timestamp()) * 1000})/"
    assert pair["FingerprintSha1"] == leaf.fingerprint(hashes.SHA1()).hex(":").upper()  # noqa: S303
    assert pair["FingerprintSha512"] == leaf.fingerprint(hashes.SHA512()).hex(":").upper()
    assert pair["SubjectDN"].startswith("CN=") and ", O=" in pair["SubjectDN"]
    assert listed["partner_root"]["Type"] == "Certificate"


def test_query_options(keystore, api_caller):
    caller = api_caller("ReadOnly")
    only = rows(caller.get("/api/v1/KeystoreEntries?$select=Alias,Type"))
    assert only[0] == {"Alias": "client_key", "Type": "Key Pair"}
    certificates = rows(caller.get("/api/v1/KeystoreEntries?$filter=Type eq 'Certificate'"))
    assert [row["Alias"] for row in certificates] == ["issuing_ca", "partner_root"]
    both = caller.get(
        "/api/v1/KeystoreEntries?$filter=substringof('_ca',Alias) or Alias eq 'client_key'"
        "&$top=1&$skip=1&$inlinecount=allpages"
    )
    assert both.json()["d"]["__count"] == "2"
    assert [row["Alias"] for row in rows(both)] == ["issuing_ca"]
    for bad in (
        "$select=Password",
        "$filter=Alias gt 'a'",
        "$filter=Alias eq",
        "$filter=" + " and ".join(["Alias eq 'a'"] * 60),
        "$top=-1",
        "$inlinecount=some",
        "keystoreName=KeyHistory",
    ):
        answer = caller.get(f"/api/v1/KeystoreEntries?{bad}")
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "Bad Request"


def test_one_entry_by_hexalias(keystore, api_caller):
    caller = api_caller("ReadOnly")
    one = caller.get(f"/api/v1/KeystoreEntries('{hexed('Partner_Root')}')?$select=Alias")
    assert one.status_code == 200 and one.json() == {"d": {"Alias": "partner_root"}}
    missing = caller.get(f"/api/v1/KeystoreEntries('{hexed('nothing')}')")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == {
        "lang": "en",
        "value": "Alias 'nothing' not found in the keystore",
    }
    odd = caller.get("/api/v1/KeystoreEntries('ABC')")
    assert odd.status_code == 400 and "even-length" in odd.json()["error"]["message"]["value"]


def test_downloads_parse_back(keystore, pki, api_caller):
    caller = api_caller("ReadOnly")
    base = f"/api/v1/KeystoreEntries('{hexed('client_key')}')"
    certificate = caller.get(f"{base}/Certificate/$value")
    assert x509.load_der_x509_certificate(certificate.content) == pki.leaf
    root = caller.get(f"{base}/Certificate/$value?rootCA=true")
    assert x509.load_der_x509_certificate(root.content) == pki.root
    chain = caller.get(f"{base}/ChainResource/$value")
    assert chain["Content-Type"] == "application/pkcs7-mime"
    # A PKCS#7 bundle is a set: its order says nothing.
    assert set(pkcs7.load_der_pkcs7_certificates(chain.content)) == set(pki.chain)
    listed = rows(caller.get(f"{base}/ChainCertificates"))
    assert [row["Index"] for row in listed] == [0, 1, 2]
    fingerprints = [row["FingerprintSha256"] for row in listed]
    # The top CA first, the entry's own certificate last, as a PKI path.
    assert fingerprints == [
        c.fingerprint(hashes.SHA256()).hex(":").upper() for c in pki.chain[::-1]
    ]


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_the_openssh_public_key_is_read_by_ssh_keygen(keystore, pki, api_caller, tmp_path):
    caller = api_caller("ReadOnly")
    answer = caller.get(f"/api/v1/KeystoreEntries('{hexed('client_key')}')/Sshkey/$value")
    assert answer.status_code == 200 and answer["Content-Disposition"].endswith('client_key.pub"')
    path = tmp_path / "client_key.pub"
    path.write_bytes(answer.content)
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert printed.startswith("2048 SHA256:") and "(RSA)" in printed
    expected = pki.leaf_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert answer.content.startswith(expected)
    certificate = caller.get(f"/api/v1/KeystoreEntries('{hexed('partner_root')}')/Sshkey/$value")
    assert certificate.status_code == 400


def test_the_signing_request_needs_an_administrator(keystore, api_caller):
    path = f"/api/v1/KeystoreEntries('{hexed('client_key')}')/SigningRequest/$value"
    assert api_caller("IntegrationDeveloper").get(path).status_code == 403
    answer = api_caller("Administrator").get(path)
    assert answer.status_code == 200
    request = x509.load_pem_x509_csr(answer.content)
    assert request.is_signature_valid


def test_new_sap_keys_history_and_the_keystore(sap_key, api_caller):
    caller = api_caller("ReadOnly")
    waiting = rows(caller.get("/api/v1/KeystoreEntries?keystoreName=KeyRenewal"))
    assert [(row["Alias"], row["Owner"]) for row in waiting] == [(SAP_ALIAS, "SAP")]
    assert rows(caller.get("/api/v1/HistoryKeystoreEntries")) == []

    activate_pending_key(sap_key, SAP_ALIAS)
    [backup] = rows(caller.get("/api/v1/HistoryKeystoreEntries"))
    assert backup["Alias"] == f"[1]_{SAP_ALIAS}" and backup["OriginalAlias"] == SAP_ALIAS
    assert backup["ActivationSequenceNumber"] == 1
    assert backup["FingerprintSha256"] != waiting[0]["FingerprintSha256"]
    one = caller.get(f"/api/v1/HistoryKeystoreEntries('{hexed(backup['Alias'])}')")
    assert one.json()["d"]["ActiveUntil"] == backup["ActiveUntil"]
    current = KeystoreEntry.objects.get(alias=SAP_ALIAS)
    assert current.fingerprint_sha256 == waiting[0]["FingerprintSha256"]

    system = caller.get("/api/v1/Keystores('system')?$expand=Entries").json()["d"]
    assert system["Name"] == "system" and system["Size"] == 1
    assert [row["Alias"] for row in system["Entries"]["results"]] == [SAP_ALIAS]
    assert caller.get("/api/v1/Keystores('system')/Size/$value").content == b"1"
    assert caller.get("/api/v1/Keystores('KeyRenewal')/Size/$value").content == b"0"
    assert caller.get("/api/v1/Keystores('nope')").status_code == 400


def test_metadata_describes_the_entity_sets(tenant, api_caller):
    answer = api_caller("ReadOnly").get("/api/v1/$metadata")
    assert answer["Content-Type"] == "application/xml"
    document = ElementTree.fromstring(answer.content)  # noqa: S314  our own document
    names = {
        element.get("Name") for element in document.iter() if element.tag.endswith("EntitySet")
    }
    assert {"KeystoreEntries", "HistoryKeystoreEntries", "Keystores"} <= names


def test_a_list_costs_the_same_queries_at_any_size(tenant, pki, api_caller):
    caller = api_caller("ReadOnly")
    caller.get("/api/v1/KeystoreEntries")  # the first call records the client's last use

    def queries(count: int) -> int:
        for number in range(KeystoreEntry.objects.count(), count):
            services.import_certificate(tenant, f"partner_{number}", to_der(pki.root))
        with CaptureQueriesContext(connection) as captured:
            assert len(rows(caller.get("/api/v1/KeystoreEntries"))) == count
        return len(captured)

    assert queries(3) == queries(30)


def test_the_where_used_extension(keystore, api_caller):
    import io

    from renewals.whereused.importing import import_flow_exports
    from tests.renewals import flowfactory

    xml = flowfactory.iflw(
        flowfactory.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": "client_key"},
            receiver="ERP_PROD",
        )
    )
    data = flowfactory.flow_zip("com.example.orders", xml, bundle_name="Orders")
    [result] = import_flow_exports(keystore, [("orders.zip", io.BytesIO(data))])
    assert result.ok, result.message
    answer = api_caller("ReadOnly").get(
        f"/api/v1/KeystoreEntries('{hexed('client_key')}')/WhereUsed"
    )
    report = answer.json()["d"]
    assert report["alias"] == "client_key" and report["counts"]["uses"] == 1
    assert report["uses"][0]["backend"]["system"] == "ERP_PROD"
    assert report["restart_after_activation"] == ["Orders"]
